"""The exceptions aioudf raises, in one family.

Everything derives from :class:`AioudfError`. Errors that end a connection
carry the text that goes into the ErrorResponse sent to Kapacitor, so the
message of each one is written for the person reading Kapacitor's task error.
"""

from __future__ import annotations

__all__ = [
    "ActivationError",
    "AioudfError",
    "ConfigError",
    "ConnectionFailed",
    "FrameError",
    "FrameTooLarge",
    "HandoverError",
    "InitError",
    "OptionError",
    "ProtocolError",
    "RestoreError",
    "StateError",
]


class AioudfError(Exception):
    """Base class of every error aioudf raises on purpose."""


class ProtocolError(AioudfError):
    """The peer broke the wire contract: bad framing, bad protobuf, bad order."""


class FrameError(ProtocolError):
    """The byte stream cannot be split into frames (bad or truncated header)."""


class FrameTooLarge(FrameError):
    """A frame header announced a body larger than the configured maximum."""

    def __init__(self, size: int, limit: int, *, at_least: bool = False) -> None:
        # ``at_least``: the header was not read to its end, ``size`` is what
        # its first bytes already announce.
        announced = f"at least {size}" if at_least else str(size)
        super().__init__(
            f"frame of {announced} bytes exceeds the maximum frame size of {limit} bytes"
        )
        self.size = size
        self.limit = limit


class ConfigError(AioudfError, ValueError):
    """A setting is unknown or has a value that cannot work (named in the message).

    Raised when the server, process UDF or agent is built, never later.
    """


class StateError(AioudfError):
    """A protocol object was asked for what its state does not allow.

    Our side's mistake, where :class:`ProtocolError` is the peer's: a reply
    nobody asked for, a connection state exported inside a batch, bytes that
    are not an exported state.
    """


class InitError(AioudfError):
    """Raise from ``Handler.init`` to answer Init with ``success=false``.

    The message becomes the InitResponse's ``error``, which Kapacitor shows as
    the task's error. Use it for invalid option combinations and the like.
    """


class OptionError(InitError):
    """Options sent with Init do not match what the handler declared."""


class RestoreError(AioudfError):
    """Raise from ``Handler.restore`` to answer Restore with ``success=false``."""


class ConnectionFailed(AioudfError):
    """A UDF connection ended with an error (after an ErrorResponse, if possible).

    ``reason`` is the text that was sent to Kapacitor in the ErrorResponse.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ActivationError(AioudfError):
    """The sockets a service manager passed (``LISTEN_FDS``) cannot be served."""


class HandoverError(AioudfError):
    """Taking over from, or handing over to, another server process failed."""
