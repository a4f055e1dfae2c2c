"""What a replay writes: the UDF's output, the progress bar and the summary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from ..errors import ProtocolError
from ..formats._lineprotocol import format_line
from ..formats._points import Batch, DataPoint, is_finite
from ..formats._recordings import batch_to_json, point_to_json
from ..testing.client import Emitted
from ..wire._kapacitor import EmittedBatch
from ..wire._messages import Point
from ._fastpath import LineFormatter, decode_point
from ._inputs import Input

__all__ = ["Output", "Progress", "ReplayStats"]


#: Seconds output may wait in memory before it is written: a slow UDF's
#: lines show as they come, and a reader that went away (``| head``) is
#: noticed at the next line instead of at the end of the replay.
FLUSH_INTERVAL = 0.1


class Output:
    """Writes what the UDF emits to a text stream, counting as it goes.

    When the stream's reader has gone (a broken pipe), :attr:`broken` is set
    and ``on_broken`` is called: the replay is then stopped, as ``yes | head``
    stops ``yes``.
    """

    def __init__(self, stream: TextIO, stats: ReplayStats, fmt: str, precision: str) -> None:
        self.stream = stream
        self.stats = stats
        self.format = fmt
        self.precision = precision
        self.broken = False
        self.before_write: Callable[[], None] | None = None
        self.on_broken: Callable[[], object] | None = None
        self._pending: list[str] = []
        self._pending_size = 0
        self._flushed_at = time.monotonic()
        self._format = LineFormatter(precision)

    def message(self, item: Point | EmittedBatch) -> None:
        """Write what the UDF emitted, as decoded from the wire."""
        if type(item) is not Point or self.format == "json":
            self(
                DataPoint.from_message(item)
                if isinstance(item, Point)
                else Batch.from_messages(item.begin, item.points, item.end)
            )
            return
        self.stats.points_out += 1
        try:
            text = self._format(item)
        except ValueError:
            self._add_line(DataPoint.from_message(item))
        else:
            self._pending.append(text)
            self._pending_size += len(text) + 1
        if self._pending_size >= 1 << 16 or time.monotonic() - self._flushed_at >= FLUSH_INTERVAL:
            self.flush()

    def points(self, points: list[bytes]) -> None:
        """Write Points the UDF emitted outside a batch, given as their bytes."""
        if self.format == "json":
            for data in points:
                self.message(decode_point(data))
            return
        raw = self._format.raw
        try:
            lines = list(map(raw, points))
        except (ValueError, ProtocolError):
            # A point line protocol cannot carry, or one that is not a Point
            # at all, is among them: one at a time, so that every line
            # before one that ends the replay is written.
            for data in points:
                try:
                    text = raw(data)
                except ValueError:
                    self.stats.points_out += 1
                    self._add_line(DataPoint.from_message(decode_point(data)))
                else:
                    self.stats.points_out += 1
                    self._add(text)
        else:
            self.stats.points_out += len(points)
            self._pending += lines
            self._pending_size += sum(map(len, lines)) + len(lines)
        if self._pending_size >= 1 << 16 or time.monotonic() - self._flushed_at >= FLUSH_INTERVAL:
            self.flush()

    def __call__(self, item: Emitted) -> None:
        stats = self.stats
        if isinstance(item, Batch):
            stats.batches_out += 1
            stats.points_out += len(item.points)
            if self.format == "json":
                self._add(json.dumps(batch_to_json(item), separators=(",", ":")))
            else:
                for point in item.points:
                    self._add_line(point)
        else:
            stats.points_out += 1
            if self.format == "json":
                self._add(json.dumps(point_to_json(item), separators=(",", ":")))
            else:
                self._add_line(item)
        if self._pending_size >= 1 << 16 or time.monotonic() - self._flushed_at >= FLUSH_INTERVAL:
            self.flush()

    def _add_line(self, point: DataPoint) -> None:
        try:
            self._add(format_line(point, precision=self.precision))
        except ValueError as exc:
            # What line protocol cannot say (no fields, NaN...): keep the rest.
            finite = {k: v for k, v in point.fields.items() if is_finite(v)}
            if finite and len(finite) < len(point.fields):
                with contextlib.suppress(ValueError):
                    self._add(format_line(point.replace(fields=finite), precision=self.precision))
                    self.stats.note_unwritable("non-finite field values were left out")
                    return
            self.stats.note_unwritable(str(exc))

    def _add(self, text: str) -> None:
        self._pending.append(text)
        self._pending_size += len(text) + 1

    def flush(self) -> None:
        if self.broken or not self._pending:
            return
        data = "\n".join(self._pending) + "\n"
        self._pending = []
        self._pending_size = 0
        self._flushed_at = time.monotonic()
        if self.before_write is not None:
            self.before_write()
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:
            self.broken = True
            if self.on_broken is not None:
                self.on_broken()


@dataclass
class ReplayStats:
    """Counts of one replay."""

    points_in: int = 0
    batches_in: int = 0
    points_out: int = 0
    batches_out: int = 0
    #: Seconds from Init to the UDF closing its side.
    elapsed: float = 0.0
    #: Emitted points that line protocol could not carry, by reason.
    unwritable: dict[str, int] = field(default_factory=dict)

    def note_unwritable(self, reason: str) -> None:
        reason = re.sub(r" \(.*\)$|: .*$", "", reason)
        self.unwritable[reason] = self.unwritable.get(reason, 0) + 1

    @property
    def rate(self) -> float:
        """Points in per second."""
        return self.points_in / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        def side(batches: int, points: int, verb: str) -> str:
            if batches:
                return f"{batches:,} batch{'es' if batches != 1 else ''} ({points:,} points) {verb}"
            return f"{points:,} point{'s' if points != 1 else ''} {verb}"

        text = (
            f"{side(self.batches_in, self.points_in, 'in')}, "
            f"{side(self.batches_out, self.points_out, 'out')} "
            f"in {self.elapsed:.2f} s ({self.rate:,.0f} points/s)"
        )
        for reason, count in self.unwritable.items():
            text += f"; {count:,} emitted point(s) not written: {reason} (use --format json)"
        return text


_BAR_FULL, _BAR_EMPTY = "█", "░"
_SPINNER = "|/-\\"


class Progress:
    """A one-line progress bar on a terminal, redrawn in place.

    Drawn only once the replay has run for ``delay`` seconds, so short inputs
    show nothing but the summary.
    """

    def __init__(self, stream: TextIO, stats: ReplayStats, *, delay: float = 0.3) -> None:
        self.stream = stream
        self.stats = stats
        self.delay = delay
        self.current: Input | None = None
        self.input_number = 0
        self.inputs = 0
        self.reading = True
        self.visible = False
        self._started = time.monotonic()
        self._ticks = 0
        encoding = (getattr(stream, "encoding", None) or "ascii").lower()
        self._unicode = encoding.replace("-", "") in ("utf8", "utf16", "utf32")

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        if columns <= 0:  # a terminal that does not know its size
            try:
                columns = int(os.environ.get("COLUMNS", "80"))
            except ValueError:
                columns = 80
        return max(columns, 20)

    def line(self) -> str:
        """The bar as it would be drawn now."""
        stats = self.stats
        elapsed = max(time.monotonic() - self._started, 1e-9)
        current = self.current
        label = current.label if current is not None else ""
        if self.inputs > 1:
            label += f" ({self.input_number}/{self.inputs})"
        label = os.path.basename(label) if len(label) > 30 else label
        counts = f"{stats.points_in:,} in, {stats.points_out:,} out"
        rate = f"{stats.points_in / elapsed:,.0f} points/s"
        size = current.size if current is not None else None
        width = self._width() - 1
        if size or not self.reading:
            if not self.reading:  # all sent: the UDF is working through it
                fraction, when = 1.0, "finishing"
            else:
                fraction = min(max(current.position / size, 0.0), 1.0) if current and size else 0.0
                done_rate = fraction / elapsed
                eta = (1 - fraction) / done_rate if done_rate > 0 else 0.0
                when = f"ETA {_duration(eta)}"
            tail = f" {fraction * 100:3.0f}%  {counts}  {rate}  {when}"
            room = width - len(label) - len(tail) - 3
            if room >= 10:
                cells = min(room, 40)
                filled = int(fraction * cells)
                full, empty = (_BAR_FULL, _BAR_EMPTY) if self._unicode else ("#", "-")
                bar = full * filled + empty * (cells - filled)
                return f"{label} [{bar}]{tail}"[:width]
            return (label + tail)[:width]
        self._ticks += 1
        spinner = _SPINNER[self._ticks % len(_SPINNER)]
        return f"{label} {spinner} {counts}  {rate}  {_duration(elapsed)}"[:width]

    def draw(self) -> None:
        if time.monotonic() - self._started < self.delay:
            return
        with contextlib.suppress(OSError, ValueError):
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
            self.visible = True

    def clear(self) -> None:
        if self.visible:
            with contextlib.suppress(OSError, ValueError):
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
            self.visible = False

    async def run(self, interval: float = 0.1) -> None:
        """Redraw every ``interval`` seconds until cancelled."""
        while True:
            self.draw()
            await asyncio.sleep(interval)


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
