"""``aioudf replay``: feed recorded data through a UDF, as one Kapacitor task would.

::

    aioudf replay examples/moving_avg.py:MovingAvg cpu.srpl \\
        --option field=usage_idle --option size=10 --group-by host
    aioudf replay --cmd 'python -u examples/outliers.py' cpu.brpl --option field=value
    aioudf replay --socket /tmp/mirror.sock --option "field=mirrored,1.0" < points.lp

The UDF is reached the three ways Kapacitor reaches one: a handler class run
in this process (``MODULE:CLASS`` or ``FILE.py:CLASS``), a socket UDF already
serving (``--socket``), or a process UDF spawned from a command line
(``--cmd``). It is driven through :mod:`aioudf.testing`: Info, Init with the
options, the data, and a stop that lets the UDF flush what it holds.

Input: stream recordings (``.srpl``), batch recordings (``.brpl``), and
InfluxDB line protocol from files (``.gz`` ones too) or stdin. What the UDF
emits goes to stdout, as line protocol or JSON lines; progress and the summary
go to stderr. An input error stops reading, but the points before it are
replayed and their output written before the error is reported.

Options are written as on a TICKscript line and typed by the UDF's own Info::

    --option field=usage_idle          .field('usage_idle')
    --option size=10                   .size(10)
    --option "field=mirrored,1.0"      .field('mirrored', 1.0)
    --option "tag='a,b'"               .tag('a,b')      quotes keep commas
    --option period=90s                .period(90s)
    --option verbose                   .verbose()       an option without values

Several values are separated by commas; a string value may be quoted with
single quotes (``\\'`` and ``\\\\`` escape inside them); repeating
``--option`` with the same name calls the method again.

Options are typed by :mod:`aioudf.toolkit`, the one table both sides of the
protocol use. The package, by concern: :mod:`~aioudf.replay`
(recordings and line protocol),
:mod:`~aioudf.replay` (groupBy), :mod:`~aioudf.replay` (the
UDF's output, the progress bar, the summary), :mod:`~aioudf.replay`
(the task itself) and :mod:`~aioudf.replay` (``aioudf replay`` from
the flags :mod:`aioudf.replay` parses).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

# The replay engine loads when it is first used: the aioudf command imports
# this package for its flags (``_flags``, argparse only), and a process UDF
# started with ``aioudf run`` must not pay for the engine.
if TYPE_CHECKING:
    from ..errors import ReplayError
    from ..wire._values import describe_options, parse_duration, parse_option_args
    from ._command import run
    from ._engine import replay
    from ._grouping import Grouping
    from ._inputs import open_input
    from ._output import Progress, ReplayStats

__all__ = [
    "Grouping",
    "Progress",
    "ReplayError",
    "ReplayStats",
    "describe_options",
    "open_input",
    "parse_duration",
    "parse_option_args",
    "replay",
    "run",
]

# name -> the module that defines it, imported when the name is first used
_LAZY = {
    "Grouping": "._grouping",
    "Progress": "._output",
    "ReplayError": "..errors",
    "ReplayStats": "._output",
    "describe_options": "..wire._values",
    "open_input": "._inputs",
    "parse_duration": "..wire._values",
    "parse_option_args": "..wire._values",
    "replay": "._engine",
    "run": "._command",
}
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
