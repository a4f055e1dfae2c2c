"""aioudf: asyncio-native Kapacitor user-defined functions.

Write a :class:`Handler` (or a :class:`BlockingHandler` for code that blocks),
declare its :class:`Option` s and edge types, and run it::

    import aioudf

    class Scale(aioudf.Handler):
        factor = aioudf.Option(float, default=1.0)

        async def point(self, point: aioudf.Point) -> None:
            point.fieldsDouble["value"] *= self.factor
            await self.emit(point)

    if __name__ == "__main__":
        aioudf.main(Scale)   # process UDF; with --socket PATH a socket UDF

Running: :func:`main` (a script's command line), :func:`run` (process UDF on
stdin/stdout), :func:`serve` and :class:`UnixServer` (socket UDF); the
``aioudf`` command does the same for ``module:Class`` (``aioudf run``,
``aioudf serve``, ``aioudf replay``).

Also here (not listed below, to keep this page short): the messages a
handler receives and emits, Kapacitor's protobuf types ``Point``,
``BeginBatch``, ``EndBatch``, ``InitRequest``, ``InfoResponse`` (see
:mod:`aioudf.messages`; :func:`make_point` builds a Point); the enums
``EdgeType`` (``wants``/``provides``) and ``ValueType``; ``BaseHandler``; and
the errors (see :mod:`aioudf.errors`, which draws the tree): handlers raise
``InitError`` (refuse Init) and ``RestoreError`` (refuse a snapshot); all
that aioudf raises derives from ``AioudfError``: ``ProtocolError``,
``FrameError``, ``FrameTooLarge``, ``OptionError``, ``ConnectionFailed``,
``ConfigError`` (an unknown or invalid setting), ``SocketPathError``...

The authoring toolkit (docs/authoring.md) is here too: ``BatchHandler``,
``PointBatch``, ``per_group``, ``GroupState``, ``Codec``, ``JsonCodec``,
``TimeWindow``, ``CountWindow``, ``startup``, ``number_field``, ``clear_fields``.

Elsewhere: :mod:`aioudf.testing` drives a UDF as Kapacitor would (and gives
pytest a ``kapacitor`` fixture); :mod:`aioudf.lowlevel` holds the framing,
the sans-I/O protocol and the asyncio :class:`~aioudf.lowlevel.Agent`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .cli import main

# Also importable from here, and left out of __all__ so that help(aioudf)
# stays short (protobuf's generated classes alone print 2,000 lines): the
# message types, the enums, the rest of the error family, the handler base.
from .errors import AioudfError as AioudfError
from .errors import ConfigError as ConfigError
from .errors import ConnectionFailed as ConnectionFailed
from .errors import FrameError as FrameError
from .errors import FrameTooLarge as FrameTooLarge
from .errors import InitError as InitError
from .errors import OptionError as OptionError
from .errors import ProtocolError as ProtocolError
from .errors import RestoreError as RestoreError
from .errors import SocketPathError as SocketPathError
from .errors import StateError as StateError
from .handler import BaseHandler as BaseHandler
from .handler import BlockingHandler, Handler
from .messages import BeginBatch as BeginBatch
from .messages import EdgeType as EdgeType
from .messages import EndBatch as EndBatch
from .messages import InfoResponse as InfoResponse
from .messages import InitRequest as InitRequest
from .messages import Point as Point
from .messages import ValueType as ValueType
from .options import Option
from .points import make_point
from .process import run
from .server import UnixServer, serve

# isort: split
# The authoring toolkit (docs/authoring.md): also importable from here and
# left out of __all__, like the message types, so help(aioudf) stays short.
from .batches import BatchHandler as BatchHandler
from .batches import PointBatch as PointBatch
from .errors import MissingExtra as MissingExtra
from .errors import StartupError as StartupError
from .points import clear_fields as clear_fields
from .points import number_field as number_field
from .startup import Startup as Startup
from .startup import startup as startup
from .state import Codec as Codec
from .state import GroupState as GroupState
from .state import JsonCodec as JsonCodec
from .state import per_group as per_group
from .windows import CountWindow as CountWindow
from .windows import TimeWindow as TimeWindow

__all__ = [
    "BlockingHandler",
    "Handler",
    "Option",
    "UnixServer",
    "__version__",
    "main",
    "make_point",
    "run",
    "serve",
]

# Names that used to live here and now live in aioudf.lowlevel: still
# importable from here (typed for mypy), loaded only when asked for.
if TYPE_CHECKING:
    from .lowlevel import Agent as Agent
    from .lowlevel import FrameDecoder as FrameDecoder
    from .lowlevel import LoopWatchdog as LoopWatchdog
    from .lowlevel import UDFConnection as UDFConnection
    from .lowlevel import encode_frame as encode_frame

_LOWLEVEL = frozenset({"Agent", "FrameDecoder", "LoopWatchdog", "UDFConnection", "encode_frame"})


def __getattr__(name: str) -> Any:
    if name in _LOWLEVEL:
        from . import lowlevel

        return getattr(lowlevel, name)
    raise AttributeError(f"module 'aioudf' has no attribute {name!r}")
