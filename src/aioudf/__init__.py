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
    ConnectionFailed,
    FrameError,
    FrameTooLarge,
    InitError,
    OptionError,
    ProtocolError,
    RestoreError,
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
from .protocol import RequestDecoder
from .server import SocketPathError, UnixServer, serve
from .watchdog import LoopWatchdog

# isort: split
# ---- toolkit (issue 12): state, windows, whole batches, columnar, start-up ----
from .batches import BatchHandler, PointBatch
from .columnar import MissingExtra
from .points import clear_fields, number_field
from .startup import Startup, StartupError, startup
from .state import Codec, GroupState, JsonCodec, per_group
from .windows import CountWindow, TimeWindow

# ---- end toolkit ----


__all__ = [
    "Agent",
    "AioudfError",
    "BaseHandler",
    "BeginBatch",
    "BlockingHandler",
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
    "RequestDecoder",
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

# ---- toolkit (issue 12) ----
__all__ += [
    "BatchHandler",
    "Codec",
    "CountWindow",
    "GroupState",
    "JsonCodec",
    "MissingExtra",
    "PointBatch",
    "Startup",
    "StartupError",
    "TimeWindow",
    "clear_fields",
    "number_field",
    "per_group",
    "startup",
]
# ---- end toolkit ----
