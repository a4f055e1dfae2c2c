"""What a handler author writes against: this is what ``import aioudf`` loads.

- ``_options``: :class:`Option` declarations, checked at Init through the
  wire's option table.
- ``_handler``: :class:`Handler`, :class:`BlockingHandler`,
  :class:`BaseHandler`; declares the ``EmitSink`` it emits to, not the agent.
- ``_state``: per-group state (:func:`per_group`) and its versioned
  snapshot envelope.
- ``_startup``: :func:`startup`, a value loaded once per process.
- ``_batches``: :class:`PointBatch` and :class:`BatchHandler`.
- ``_columnar``: NumPy arrays and pandas DataFrames from points (the extras).
- ``_windows``: :class:`TimeWindow` and :class:`CountWindow`.
"""

from __future__ import annotations

from ._batches import (
    BatchHandler,
    BatchResult,
    PointBatch,
)
from ._columnar import (
    BatchParts,
    ColumnarBatch,
    MissingExtra,
    column,
    from_pandas,
    is_dataframe,
    require_numpy,
    require_pandas,
    times,
    to_pandas,
    values,
)
from ._handler import (
    BaseHandler,
    BatchOut,
    BlockingHandler,
    EmitSink,
    Handler,
)
from ._options import (
    Option,
    OptionSpec,
    OptionValues,
    parse_options,
)
from ._startup import (
    Startup,
    StartupError,
    declared_startups,
    install_startup,
    startup,
)
from ._state import (
    Codec,
    Groups,
    GroupState,
    JsonCodec,
    Stateful,
    declared_states,
    per_group,
    restore_states,
    snapshot_states,
)
from ._windows import (
    CountWindow,
    TimeWindow,
    align_time,
)

__all__ = [
    "BaseHandler",
    "BatchHandler",
    "BatchOut",
    "BatchParts",
    "BatchResult",
    "BlockingHandler",
    "Codec",
    "ColumnarBatch",
    "CountWindow",
    "EmitSink",
    "GroupState",
    "Groups",
    "Handler",
    "JsonCodec",
    "MissingExtra",
    "Option",
    "OptionSpec",
    "OptionValues",
    "PointBatch",
    "Startup",
    "StartupError",
    "Stateful",
    "TimeWindow",
    "align_time",
    "column",
    "declared_startups",
    "declared_states",
    "from_pandas",
    "install_startup",
    "is_dataframe",
    "parse_options",
    "per_group",
    "require_numpy",
    "require_pandas",
    "restore_states",
    "snapshot_states",
    "startup",
    "times",
    "to_pandas",
    "values",
]
