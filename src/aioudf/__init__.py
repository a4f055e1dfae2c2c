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

Running: :func:`main` (a script's command line), :func:`run` (a process
UDF), :func:`serve` and ``UnixServer`` (a socket UDF); they load on first use.

Also here: the messages (``Point``, ``BeginBatch``...), the enums,
``BaseHandler``, the errors (:mod:`aioudf.errors`) and the toolkit
(:mod:`aioudf.toolkit`, docs/authoring.md). :mod:`aioudf.testing` drives a
UDF as Kapacitor would; :mod:`aioudf.lowlevel` holds the wire and the agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_names
from ._version import __version__

# Also importable from here, and left out of __all__ so that help(aioudf)
# stays short (protobuf's generated classes alone print 2,000 lines): the
# message types, the enums, the rest of the error family, the handler base.
from .errors import AioudfError as AioudfError
from .errors import ConfigError as ConfigError
from .errors import ConnectionFailed as ConnectionFailed
from .errors import EmitError as EmitError
from .errors import FrameError as FrameError
from .errors import FrameTooLarge as FrameTooLarge
from .errors import InitError as InitError
from .errors import OptionError as OptionError
from .errors import ProtocolError as ProtocolError
from .errors import RestoreError as RestoreError
from .errors import SocketPathError as SocketPathError
from .errors import StateError as StateError
from .formats._points import make_point
from .toolkit._handler import BaseHandler as BaseHandler
from .toolkit._handler import BlockingHandler, Handler
from .toolkit._options import Option
from .wire._messages import BeginBatch as BeginBatch
from .wire._messages import EdgeType as EdgeType
from .wire._messages import EndBatch as EndBatch
from .wire._messages import InfoResponse as InfoResponse
from .wire._messages import InitRequest as InitRequest
from .wire._messages import Point as Point
from .wire._messages import ValueType as ValueType

# isort: split
# The authoring toolkit (docs/authoring.md): also importable from here and
# left out of __all__, like the message types, so help(aioudf) stays short.
from .errors import MissingExtra as MissingExtra
from .errors import StartupError as StartupError
from .formats._fields import clear_fields as clear_fields
from .formats._fields import number_field as number_field
from .toolkit._batches import BatchHandler as BatchHandler
from .toolkit._batches import PointBatch as PointBatch
from .toolkit._startup import Startup as Startup
from .toolkit._startup import startup as startup
from .toolkit._state import Codec as Codec
from .toolkit._state import GroupState as GroupState
from .toolkit._state import JsonCodec as JsonCodec
from .toolkit._state import per_group as per_group
from .toolkit._windows import CountWindow as CountWindow
from .toolkit._windows import TimeWindow as TimeWindow

# What runs a handler is the serving stack (the command line, the process
# runner, the socket server with its hand-over, metrics and supervisor): it
# loads on first use, so that a handler module, its tests and the tools that
# only import it do not pay for it. mypy reads the imports below; at run
# time __getattr__ resolves the same names.
if TYPE_CHECKING:
    from .cli import main
    from .serving._process import run
    from .serving._server import UnixServer as UnixServer
    from .serving._server import serve

    # isort: split
    # Names that used to live here and now live in aioudf.lowlevel.
    from .lowlevel import Agent as Agent
    from .lowlevel import FrameDecoder as FrameDecoder
    from .lowlevel import LoopWatchdog as LoopWatchdog
    from .lowlevel import UDFConnection as UDFConnection
    from .lowlevel import encode_frame as encode_frame

__all__ = [
    "BlockingHandler",
    "Handler",
    "Option",
    "__version__",
    "main",
    "make_point",
    "run",
    "serve",
]

# name -> the module that defines it, imported when the name is first used
_LAZY = {
    "main": ".cli",
    "run": ".serving._process",
    "serve": ".serving._server",
    "UnixServer": ".serving._server",
    "Agent": ".lowlevel",
    "FrameDecoder": ".lowlevel",
    "LoopWatchdog": ".lowlevel",
    "UDFConnection": ".lowlevel",
    "encode_frame": ".lowlevel",
}
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
