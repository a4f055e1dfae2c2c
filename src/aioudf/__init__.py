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

Running: :func:`main` (a script's command line), :func:`run` (a process UDF),
:func:`serve` and ``UnixServer`` (a socket UDF, :mod:`aioudf.server`), and the
``aioudf`` command for ``module:Class``; they load on first use.

Also here: the messages (``Point``, ``BeginBatch``, ``EndBatch``,
``InitRequest``, ``InfoResponse``, ``EdgeType``, ``ValueType``),
``BaseHandler``, the errors (:mod:`aioudf.errors` draws the tree; a handler
raises ``InitError`` or ``RestoreError``) and the toolkit of docs/authoring.md
(``BatchHandler``, ``PointBatch``, ``per_group``, ``GroupState``, ``Codec``,
``JsonCodec``, ``TimeWindow``, ``CountWindow``, ``startup``, ``number_field``,
``clear_fields``). :mod:`aioudf.testing` drives a UDF as Kapacitor would;
:mod:`aioudf.lowlevel` holds the wire and the agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

# What runs a handler is the serving stack (the command line, the process
# runner, the socket server with its hand-over, metrics and supervisor): it
# loads on first use, so that a handler module, its tests and the tools that
# only import it do not pay for it. mypy reads the imports below; at run
# time __getattr__ resolves the same names.
if TYPE_CHECKING:
    from .cli import main
    from .process import run
    from .server import UnixServer as UnixServer
    from .server import serve

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

# name -> the submodule that defines it, imported when the name is first used
_LAZY = {
    "main": "cli",
    "run": "process",
    "serve": "server",
    "UnixServer": "server",
    "Agent": "lowlevel",
    "FrameDecoder": "lowlevel",
    "LoopWatchdog": "lowlevel",
    "UDFConnection": "lowlevel",
    "encode_frame": "lowlevel",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that holds a lazily loaded name; see ``_LAZY``."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aioudf' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The names here, lazily loaded ones included (help() and completion list them)."""
    return sorted({*globals(), *_LAZY})
