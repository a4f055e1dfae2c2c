"""aioudf: asyncio-native Kapacitor user-defined functions.

Write a :class:`Handler`, declare its :class:`Option` s and edge types, and
run it as a process UDF (:func:`run`, ``aioudf run mod:Handler``) or a socket
UDF (:func:`serve`, :class:`UnixServer`, ``aioudf serve mod:Handler --socket``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .agent import Agent
from .cli import main
from .errors import (
    AioudfError,
    ConfigError,
    ConnectionFailed,
    FrameError,
    FrameTooLarge,
    InitError,
    OptionError,
    ProtocolError,
    RestoreError,
    StateError,
)
from .framing import FrameDecoder, encode_frame
from .handler import BaseHandler, BlockingHandler, Handler
from .messages import (
    BeginBatch,
    EdgeType,
    EndBatch,
    InfoResponse,
    InitRequest,
    Point,
    ValueType,
)
from .options import Option
from .process import run
from .protocol import UDFConnection
from .server import SocketPathError, UnixServer, serve
from .watchdog import LoopWatchdog

__all__ = [
    "Agent",
    "AioudfError",
    "BaseHandler",
    "BeginBatch",
    "BlockingHandler",
    "ConfigError",
    "ConnectionFailed",
    "EdgeType",
    "EndBatch",
    "FrameDecoder",
    "FrameError",
    "FrameTooLarge",
    "Handler",
    "InfoResponse",
    "InitError",
    "InitRequest",
    "LoopWatchdog",
    "Option",
    "OptionError",
    "Point",
    "ProtocolError",
    "StateError",
    "UDFConnection",
    "RestoreError",
    "SocketPathError",
    "UnixServer",
    "ValueType",
    "__version__",
    "encode_frame",
    "main",
    "run",
    "serve",
]
