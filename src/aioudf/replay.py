"""``aioudf replay``: feed recorded data through a UDF, as one Kapacitor task would.

::

    aioudf replay examples/moving_avg.py:MovingAvg cpu.srpl \\
        --option field=usage_idle --option size=10 --group-by host
    aioudf replay --cmd 'python -u examples/outliers.py' cpu.brpl --option field=value
    aioudf replay --socket /tmp/mirror.sock --option "field=mirrored,1.0" < points.lp

The UDF is reached the three ways Kapacitor reaches one: a handler class run
in this process (``MODULE:CLASS`` or ``FILE.py:CLASS``), a socket UDF already
serving (``--socket``), or a process UDF spawned from a command line
(``--cmd``). It is driven through :mod:`aioudf.testing`: Info, Init with the
options, the data, and a stop that lets the UDF flush what it holds.

Input: stream recordings (``.srpl``), batch recordings (``.brpl``), and
InfluxDB line protocol from files (``.gz`` ones too) or stdin. What the UDF
emits goes to stdout, as line protocol or JSON lines; progress and the summary
go to stderr. An input error stops reading, but the points before it are
replayed and their output written before the error is reported.

Options are written as on a TICKscript line and typed by the UDF's own Info::

    --option field=usage_idle          .field('usage_idle')
    --option size=10                   .size(10)
    --option "field=mirrored,1.0"      .field('mirrored', 1.0)
    --option "tag='a,b'"               .tag('a,b')      quotes keep commas
    --option period=1m30s              .period(1m30s)
    --option verbose                   .verbose()       an option without values

Several values are separated by commas; a string value may be quoted with
single quotes (``\\'`` and ``\\\\`` escape inside them); repeating
``--option`` with the same name calls the method again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TextIO

from .errors import AioudfError
from .lineprotocol import LineProtocolError, _load_parser, format_line, parse_lines
from .messages import EdgeType, Option
from .options import parse_duration, parse_option_args
from .points import Batch, DataPoint, group_key, is_finite
from .recordings import (
    BatchRecording,
    RecordingError,
    StreamRecording,
    batch_to_json,
    point_to_json,
)
from .testing.client import Emitted, Kapacitor, UDFError
from .testing.transports import Command, InProcess, Socket, Target

__all__ = [
    "Grouping",
    "ReplayError",
    "ReplayStats",
    "open_input",
    "parse_duration",
    "parse_option_args",
    "replay",
    "run",
]

#: Points sent to the UDF per write.
_CHUNK_POINTS = 500
#: Batches sent to the UDF per write.
_CHUNK_BATCHES = 8


# ---- inputs -------------------------------------------------------------------


class _Input:
    """One input: where it is, what it holds, how far reading has got."""

    label: str
    kind: EdgeType

    @property
    def size(self) -> int | None:
        return None

    @property
    def position(self) -> int:
        return 0

    def __iter__(self) -> Iterator[DataPoint | Batch]:
        raise NotImplementedError


class _RecordingInput(_Input):
    def __init__(self, path: str, kind: EdgeType) -> None:
        self.label = path
        self.kind = kind
        self.reader: StreamRecording | BatchRecording = (
            StreamRecording(path) if kind is EdgeType.STREAM else BatchRecording(path)
        )

    @property
    def size(self) -> int | None:
        return self.reader.size

    @property
    def position(self) -> int:
        return self.reader.position

    def __iter__(self) -> Iterator[DataPoint | Batch]:
        return iter(self.reader)


class _LineProtocolInput(_Input):
    kind = EdgeType.STREAM

    def __init__(
        self,
        path: str,
        *,
        precision: str,
        stdin: IO[bytes] | None = None,
        on_error: Callable[[LineProtocolError], None] | None = None,
    ) -> None:
        self.path = path
        self.label = "<stdin>" if path == "-" else path
        self.precision = precision
        self.on_error = on_error
        self._stdin = stdin
        self._raw: IO[bytes] | None = None
        self._size = None if path == "-" else os.path.getsize(path)
        #: Lines read so far.
        self.lines = 0

    @property
    def size(self) -> int | None:
        return self._size

    @property
    def position(self) -> int:
        raw = self._raw
        if raw is None or raw.closed or self._size is None:
            return 0
        return raw.tell()

    def _lines(self, stream: IO[bytes]) -> Iterator[str]:
        for lineno, line in enumerate(stream, start=1):
            self.lines = lineno
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError as exc:
                error = LineProtocolError(
                    f"not UTF-8 text: {exc.reason} at byte {exc.start}",
                    line.decode("utf-8", "replace").rstrip("\r\n"),
                    source=self.label,
                    lineno=lineno,
                )
                if self.on_error is None:
                    raise error from None
                self.on_error(error)
                yield ""  # keep the line numbers right

    def __iter__(self) -> Iterator[DataPoint | Batch]:
        with contextlib.ExitStack() as stack:
            if self.path == "-":
                stream: IO[bytes] = self._stdin or sys.stdin.buffer
            else:
                raw = stack.enter_context(open(self.path, "rb"))
                self._raw = raw
                stream = raw
                if raw.peek(2)[:2] == b"\x1f\x8b":
                    unzipped = gzip.GzipFile(fileobj=raw, mode="rb")
                    stack.callback(unzipped.close)
                    stream = unzipped  # type: ignore[assignment]  # GzipFile is a binary IO
            try:
                yield from parse_lines(
                    self._lines(stream),
                    source=self.label,
                    precision=self.precision,
                    on_error=self.on_error,
                )
            except (EOFError, OSError) as exc:
                raise RecordingError(
                    f"cannot read past line {self.lines}: {exc}", path=self.label
                ) from None


def open_input(
    path: str,
    *,
    input_format: str = "auto",
    precision: str = "ns",
    stdin: IO[bytes] | None = None,
    on_error: Callable[[LineProtocolError], None] | None = None,
) -> _Input:
    """An input by path (``-`` for stdin), its format from the extension unless given."""
    kind = input_format
    if kind == "auto":
        lower = path.lower()
        kind = "srpl" if lower.endswith(".srpl") else "brpl" if lower.endswith(".brpl") else "lp"
    if path != "-" and not os.path.isfile(path):
        what = "no such file" if not os.path.exists(path) else "not a regular file"
        raise AioudfError(f"{path}: {what}")
    if kind != "brpl":
        _load_parser()  # fail now, with the install hint, if the parser is missing
    if kind == "srpl":
        if path == "-":
            raise AioudfError("a stream recording cannot be read from stdin: give its path")
        return _RecordingInput(path, EdgeType.STREAM)
    if kind == "brpl":
        if path == "-":
            raise AioudfError("a batch recording cannot be read from stdin: give its path")
        return _RecordingInput(path, EdgeType.BATCH)
    return _LineProtocolInput(path, precision=precision, stdin=stdin, on_error=on_error)


# ---- grouping -------------------------------------------------------------------


@dataclass(frozen=True)
class Grouping:
    """What ``|from().groupBy(...)`` and ``.groupByMeasurement()`` set on the data."""

    tags: tuple[str, ...] = ()
    all_tags: bool = False
    by_name: bool = False

    @classmethod
    def from_args(cls, group_by: Iterable[str], *, by_name: bool = False) -> Grouping:
        """From ``--group-by`` values: tag names, comma-separated or not; ``*`` for all."""
        names = {name.strip() for arg in group_by for name in arg.split(",") if name.strip()}
        return cls(tags=tuple(sorted(names - {"*"})), all_tags="*" in names, by_name=by_name)

    @property
    def active(self) -> bool:
        return bool(self.tags) or self.all_tags or self.by_name

    def dimensions(self, tags: dict[str, str]) -> tuple[str, ...]:
        return tuple(sorted(tags)) if self.all_tags else self.tags

    def apply(self, point: DataPoint) -> DataPoint:
        dims = self.dimensions(point.tags)
        point.dimensions = dims
        point.by_name = self.by_name
        point.group = group_key(point.tags, dims, name=point.name, by_name=self.by_name)
        return point

    def regroup(self, batch: Batch) -> list[Batch]:
        """Split a batch by the new group, as a groupBy node does on a batch edge."""
        groups: dict[str, tuple[dict[str, str], list[DataPoint]]] = {}
        for point in batch.points:
            dims = self.dimensions(point.tags)
            key = group_key(point.tags, dims, name=batch.name, by_name=self.by_name)
            if key not in groups:
                groups[key] = ({d: point.tags.get(d, "") for d in dims}, [])
            groups[key][1].append(point)
        return [
            Batch(batch.name, points, tags=tags, group=key, by_name=self.by_name, tmax=batch.tmax)
            for key, (tags, points) in groups.items()
        ]


# ---- outputs ---------------------------------------------------------------------


class _Output:
    """Writes what the UDF emits to a text stream, counting as it goes."""

    def __init__(self, stream: TextIO, stats: ReplayStats, fmt: str, precision: str) -> None:
        self.stream = stream
        self.stats = stats
        self.format = fmt
        self.precision = precision
        self.broken = False
        self.before_write: Callable[[], None] | None = None
        self._pending: list[str] = []
        self._pending_size = 0

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
        if self._pending_size >= 1 << 16:
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
        if self.before_write is not None:
            self.before_write()
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:
            self.broken = True


# ---- progress and summary -------------------------------------------------------------


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
        self.current: _Input | None = None
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


# ---- the replay ---------------------------------------------------------------------


class ReplayError(AioudfError):
    """The replay could not be done as asked (before any data was sent)."""


async def replay(
    kapacitor: Kapacitor,
    inputs: Sequence[_Input],
    *,
    options: Sequence[str] | Iterable[Option] = (),
    grouping: Grouping | None = None,
    output: Callable[[Emitted], None],
    stats: ReplayStats | None = None,
    progress: Progress | None = None,
    task_id: str = "replay",
    node_id: str = "udf1",
) -> ReplayStats:
    """Replay ``inputs`` through the UDF as one task; emitted items go to ``output``.

    ``options`` are ``NAME=VALUE`` strings (see :func:`parse_option_args`) or
    Option messages. An input error (``LineProtocolError``,
    ``RecordingError``) is raised after the task has been stopped cleanly, so
    the UDF's output for everything before the error has reached ``output``.
    A UDF failure raises :class:`~aioudf.testing.UDFError`.
    """
    stats = stats if stats is not None else ReplayStats()
    grouping = grouping or Grouping()
    info = await kapacitor.info()
    wants = EdgeType(info.wants)
    for source in inputs:
        if source.kind is not wants:
            if wants is EdgeType.BATCH:
                raise ReplayError(
                    f"the UDF wants batches, and {source.label} holds a stream: "
                    "replay a batch recording (.brpl)"
                )
            raise ReplayError(
                f"the UDF wants a stream, and {source.label} is a batch recording: "
                "replay a stream recording (.srpl) or line protocol"
            )
    option_list = list(options)
    if all(isinstance(o, str) for o in option_list):
        try:
            messages = parse_option_args([str(o) for o in option_list], info)
        except ValueError as exc:
            raise ReplayError(str(exc)) from None
    else:
        messages = [o for o in option_list if isinstance(o, Option)]
    started = time.monotonic()
    input_error: AioudfError | None = None
    if progress is not None:
        progress.inputs = len(inputs)
    try:
        async with kapacitor.task(
            messages, task_id=task_id, node_id=node_id, on_output=output
        ) as task:
            for number, source in enumerate(inputs, start=1):
                if progress is not None:
                    progress.current, progress.input_number = source, number
                chunk = _CHUNK_BATCHES if source.kind is EdgeType.BATCH else _CHUNK_POINTS
                buffer: list[DataPoint | Batch] = []
                try:
                    for item in source:
                        if isinstance(item, Batch):
                            if grouping.active:
                                buffer.extend(grouping.regroup(item))
                            else:
                                buffer.append(item)
                            stats.batches_in += 1
                            stats.points_in += len(item.points)
                        else:
                            buffer.append(grouping.apply(item) if grouping.active else item)
                            stats.points_in += 1
                        if len(buffer) >= chunk:
                            await task.send(*buffer)
                            buffer = []
                except (LineProtocolError, RecordingError) as exc:
                    input_error = exc
                if buffer:
                    await task.send(*buffer)
                if input_error is not None:
                    break
            if progress is not None:
                progress.reading = False
            await task.stop()
    finally:
        stats.elapsed = time.monotonic() - started
    if input_error is not None:
        raise input_error
    return stats


# ---- command line ------------------------------------------------------------------


class _StderrLines:
    """Writes lines to stderr without tearing the progress bar."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.progress: Progress | None = None

    def __call__(self, text: str) -> None:
        if self.progress is not None:
            self.progress.clear()
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text + "\n")
            self.stream.flush()


def _target(args: argparse.Namespace, stderr_lines: _StderrLines) -> tuple[Target, list[str]]:
    """The UDF the flags name, and the remaining positional arguments (inputs)."""
    positional = list(args.arguments)
    if args.socket and args.cmd:
        raise ReplayError("give one UDF: --socket or --cmd, not both")
    if args.socket:
        return Socket(args.socket), positional
    if args.cmd:
        argv = shlex.split(args.cmd)
        if not argv:
            raise ReplayError("--cmd is empty")
        return Command(argv, on_stderr=lambda line: stderr_lines(f"[udf] {line}")), positional
    if not positional or ":" not in positional[0] or os.path.exists(positional[0]):
        raise ReplayError(
            "name the UDF: MODULE:CLASS (or FILE.py:CLASS) as the first argument, "
            "--socket PATH, or --cmd COMMAND"
        )
    from .cli import load_handler

    return InProcess(load_handler(positional[0])), positional[1:]


def run(args: argparse.Namespace, *, stdout: TextIO | None = None) -> int:
    """Execute ``aioudf replay`` for parsed arguments; returns the exit status."""
    from .logs import configure_logging
    from .loops import run_async

    configure_logging(args.log_level)
    stderr = sys.stderr
    stderr_lines = _StderrLines(stderr)
    target, paths = _target(args, stderr_lines)
    stats = ReplayStats()
    invalid = 0

    def on_invalid(error: LineProtocolError) -> None:
        nonlocal invalid
        invalid += 1
        stderr_lines(f"aioudf replay: skipped: {error}")

    inputs = [
        open_input(
            path,
            input_format=args.input_format,
            precision=args.precision,
            on_error=on_invalid if args.skip_invalid else None,
        )
        for path in (paths or ["-"])
    ]
    out_stream: TextIO
    with contextlib.ExitStack() as stack:
        if args.output:
            out_stream = stack.enter_context(open(args.output, "w", encoding="utf-8"))
        else:
            out_stream = stdout or sys.stdout
        output = _Output(out_stream, stats, args.format, args.precision)
        show = args.progress == "always" or (
            args.progress == "auto" and not args.quiet and stderr.isatty()
        )
        progress = Progress(stderr, stats) if show else None
        if progress is not None:
            stderr_lines.progress = progress
            if _same_terminal(out_stream, stderr):
                output.before_write = progress.clear
        error: BaseException | None = None
        kapacitor = Kapacitor(target, timeout=args.timeout or None)
        try:
            run_async(
                _run_with_progress(
                    kapacitor,
                    inputs,
                    args=args,
                    grouping=Grouping.from_args(args.group_by, by_name=args.by_measurement),
                    output=output,
                    stats=stats,
                    progress=progress,
                ),
                "auto",
            )
        except (AioudfError, OSError) as exc:
            error = exc
        finally:
            output.flush()
            if progress is not None:
                progress.clear()
        if output.broken:
            # The reader went away (| head): not an error of ours.
            _silence_stdout()
            return 0
        started = stats.points_in or stats.points_out or error is None
        if not args.quiet and started:
            print(f"aioudf replay: {stats.summary()}", file=stderr)
        if invalid:
            print(f"aioudf replay: {invalid:,} invalid line(s) skipped", file=stderr)
        if error is not None:
            message = str(error)
            if isinstance(error, UDFError):
                # A process UDF's stderr was shown as it came: do not repeat it.
                text = error.text if isinstance(target, Command) else str(error)
                message = f"the UDF failed: {text}"
            print(f"aioudf replay: error: {message}", file=stderr)
            return 2 if isinstance(error, ReplayError) else 1
    return 0


async def _run_with_progress(
    kapacitor: Kapacitor,
    inputs: Sequence[_Input],
    *,
    args: argparse.Namespace,
    grouping: Grouping,
    output: _Output,
    stats: ReplayStats,
    progress: Progress | None,
) -> None:
    painter = asyncio.create_task(progress.run()) if progress is not None else None
    try:
        await replay(
            kapacitor,
            inputs,
            options=args.options,
            grouping=grouping,
            output=output,
            stats=stats,
            progress=progress,
            task_id=args.task_id,
            node_id=args.node_id,
        )
    finally:
        if painter is not None:
            painter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await painter


def _same_terminal(a: TextIO, b: TextIO) -> bool:
    try:
        return a.isatty() and b.isatty() and os.ttyname(a.fileno()) == os.ttyname(b.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; the pipe is gone, so point it at
    # /dev/null instead of printing a BrokenPipeError.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
