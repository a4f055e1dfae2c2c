"""What the agent calls to be measured: an interface, and the one that does nothing.

The agent records into these hooks at fixed points (requests received,
keepalives answered, a handler call timed, the connection failed or refused);
what they record into is the serving layer's business: ``aioudf.serving``'s
Prometheus :class:`~aioudf.serving.Metrics` implements :class:`MetricsHooks`.
The interface lives here, below both, so the agent imports nothing of
serving and serving's metrics import the agent's types only to read its
queues. Nothing here runs once per point.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["NO_METRICS", "ConnectionHooks", "MetricsHooks"]


class ConnectionHooks(Protocol):
    """The hooks of one connection, called by its agent."""

    def sample(self) -> bool:
        """Whether the handler call about to run should be timed."""

    def received(self, requests: list[Any]) -> None:
        """A run of decoded requests arrived."""

    def bind(self, task: str, node: str) -> None:
        """Init named the task and node: label what follows with them."""

    def keepalive(self, sent_ns: int) -> None:
        """A keepalive sent at ``sent_ns`` (Kapacitor's clock) was answered."""

    def handled(self, request: str, seconds: float, count: int = 1) -> None:
        """``count`` requests of kind ``request`` took ``seconds`` in the handler."""

    def failed(self, reason: str) -> None:
        """The connection ended with an error of kind ``reason``."""

    def refused(self, kind: str) -> None:
        """A request of ``kind`` was answered with an error and the connection kept."""

    def publish(self) -> None:
        """Publish the counts gathered since the last call."""

    def close(self) -> None:
        """The connection is over."""


class MetricsHooks(Protocol):
    """What makes a connection's hooks: given to an agent as ``metrics=``."""

    def connection(self, emitter: Any, backlog: Any, output: Any) -> ConnectionHooks:
        """The hooks of one connection: its agent's emitter, backlog and output queue."""


class _NoMetrics:
    """What an agent calls when metrics are off: nothing."""

    def sample(self) -> bool:
        return False

    def received(self, requests: list[Any]) -> None:
        pass

    def bind(self, task: str, node: str) -> None:
        pass

    def keepalive(self, sent_ns: int) -> None:
        pass

    def handled(self, request: str, seconds: float, count: int = 1) -> None:
        pass

    def failed(self, reason: str) -> None:
        pass

    def refused(self, kind: str) -> None:
        pass

    def publish(self) -> None:
        pass

    def close(self) -> None:
        pass


#: The hooks of a connection whose agent was given no metrics.
NO_METRICS: ConnectionHooks = _NoMetrics()
