"""The machinery under :mod:`aioudf`, for those who build on the wire itself.

A handler author needs none of this (see :mod:`aioudf`). It is for running an
agent over a transport of your own, writing a Kapacitor-side tool, or testing
the protocol byte by byte. Three layers, from the bytes up:

Framing (sans-I/O)
    :class:`FrameDecoder`, :func:`encode_frame`, :func:`encode_uvarint`:
    Kapacitor's frames, a uvarint length and a protobuf body.
Protocol (sans-I/O)
    :class:`UDFConnection`: the UDF's side of one connection, every rule of
    the conversation next to its :class:`State`; bytes and EOF in, typed
    requests out, the handler's results in, bytes to send out; its whole
    state can be exported and continued in another process.
    :class:`KapacitorConnection`: Kapacitor's side, the mirror image
    (requests out, matched replies and assembled batches in, the keepalive
    clock). :func:`encode_response`, :func:`encode_data_frame`,
    :func:`encode_error`: responses to bytes.
The asyncio shell
    :class:`Agent` runs one handler on one connection over a
    :class:`ByteReader` / :class:`ByteWriter` pair; :func:`create_handler`
    builds the handler and :func:`refuse` answers a connection that cannot
    have one; :class:`LoopWatchdog` names the code that blocks the loop.

Every name here was importable from ``aioudf`` before; it still is, but new
code imports it from here.
"""

from __future__ import annotations

from .runtime._agent import Agent
from .runtime._handlers import create_handler, refuse
from .runtime._output import Emitter, OutputQueue
from .runtime._streams import ByteReader, ByteWriter
from .runtime._watchdog import LoopWatchdog
from .wire._frames import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame, encode_uvarint
from .wire._kapacitor import EmittedBatch, KapacitorConnection
from .wire._messages import (
    InfoRequest,
    InitResponse,
    KeepaliveRequest,
    OptionInfo,
    OptionValue,
    Request,
    RequestMessage,
    Response,
    RestoreRequest,
    SnapshotRequest,
    encode_data_frame,
    encode_error,
    encode_response,
)
from .wire._protocol import State, UDFConnection

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "Agent",
    "ByteReader",
    "ByteWriter",
    "EmittedBatch",
    "Emitter",
    "FrameDecoder",
    "InfoRequest",
    "InitResponse",
    "KapacitorConnection",
    "KeepaliveRequest",
    "LoopWatchdog",
    "OptionInfo",
    "OptionValue",
    "OutputQueue",
    "Request",
    "RequestMessage",
    "Response",
    "RestoreRequest",
    "SnapshotRequest",
    "State",
    "UDFConnection",
    "create_handler",
    "encode_data_frame",
    "encode_error",
    "encode_frame",
    "encode_response",
    "encode_uvarint",
    "refuse",
]
