"""``Handler``: the base class of a handler written for Kapacitor's Python agent.

Its methods take and return the protobuf messages of ``udf_pb2`` (aioudf's
own generated module): ``info()``, ``init(init_req)``, ``snapshot()`` and
``restore(restore_req)`` return a ``udf_pb2.Response`` carrying their answer;
``begin_batch``, ``point`` and ``end_batch`` return nothing and write their
output with the agent's ``write_response()``. Every method here does nothing
and returns None, as in Kapacitor's agent: a subclass implements what its
task needs.

Under aioudf the methods are called one at a time, in the order Kapacitor
sent the requests, on the thread of the handler's ``Agent`` (never on the
event loop, which answers keepalives meanwhile). What aioudf does with a
method left as it is here: ``snapshot()`` answers an empty snapshot,
``restore()`` refuses (so a reload leaves the connection where it is), and
the others end the connection with an ErrorResponse saying the method
returned None.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Handler"]


class Handler:
    """Override the methods the UDF answers; each gets the request message."""

    def info(self) -> Any:
        """A ``Response`` whose ``info`` says what the UDF wants, provides and takes."""

    def init(self, init_req: Any) -> Any:
        """A ``Response`` whose ``init`` accepts (``success``) or refuses (``error``)."""

    def snapshot(self) -> Any:
        """A ``Response`` whose ``snapshot.snapshot`` holds the state, as bytes."""

    def restore(self, restore_req: Any) -> Any:
        """A ``Response`` whose ``restore`` says whether ``restore_req.snapshot`` was loaded."""

    def begin_batch(self, begin_req: Any) -> None:
        """A batch starts (a BATCH edge); its points follow, then ``end_batch``."""

    def point(self, point: Any) -> None:
        """A point arrived; it is the handler's to keep (no later request overwrites it)."""

    def end_batch(self, end_req: Any) -> None:
        """The batch is complete."""


def inherited(handler: object, method: str) -> bool:
    """True if ``handler``'s ``method`` is this base class's own (not implemented)."""
    return getattr(type(handler), method, None) is getattr(Handler, method)
