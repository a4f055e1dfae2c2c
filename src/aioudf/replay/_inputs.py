"""What a replay reads: stream and batch recordings, line protocol from files or stdin."""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO

from ..errors import AioudfError, LineProtocolError, RecordingError
from ..formats._lineprotocol import RecordJoiner, _load_parser, parse_lines
from ..formats._points import Batch, DataPoint
from ..formats._recordings import BatchRecording, StreamRecording
from ..wire._messages import EdgeType
from ._fastpath import LineEncoder
from ._grouping import Grouping

__all__ = ["Input", "open_input"]

#: Bytes of line protocol read at a time.
_BLOCK = 1 << 18
# Bytes of a non-UTF-8 line shown in its error.
_EXCERPT = 40

#: Stands for a line that is not UTF-8 (its error raised when it is reached).
_UNDECODABLE = "\x00undecodable"


class Input:
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

    def frames(self, grouping: Grouping, points: int) -> Iterator[tuple[bytes, int]] | None:
        """Framed Requests of about ``points`` points at a time, and how many each holds.

        ``None`` when this input has no faster way than its items. An input
        error is raised after the frames of every point before it.
        """
        return None


class _RecordingInput(Input):
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

    def frames(self, grouping: Grouping, points: int) -> Iterator[tuple[bytes, int]] | None:
        reader = self.reader
        if not isinstance(reader, StreamRecording):
            return None
        return self._stream_frames(reader, grouping, points)

    @staticmethod
    def _stream_frames(
        reader: StreamRecording, grouping: Grouping, points: int
    ) -> Iterator[tuple[bytes, int]]:
        # The lines of a recording through the line protocol encoder, one
        # encoder per database and retention policy (the series bytes hold them).
        encoders: dict[tuple[str, str], Callable[[str, int], bytes | None]] = {}
        pending: list[bytes] = []
        try:
            for db, rp, line, lineno in reader.read_records():
                encode = encoders.get((db, rp))
                if encode is None:
                    encode = encoders[db, rp] = LineEncoder(
                        precision="ns",
                        grouping=grouping,
                        default_time=0,
                        database=db,
                        retention_policy=rp,
                    ).line
                try:
                    frame = encode(line, 0)  # errors name the record and line instead
                except LineProtocolError as exc:
                    raise reader.point_error(line, lineno, exc) from None
                if frame is None:
                    raise reader.point_error(line, lineno, None)
                pending.append(frame)
                if len(pending) >= points:
                    yield b"".join(pending), len(pending)
                    pending = []
        except RecordingError:
            # The points before the error are replayed first.
            if pending:
                yield b"".join(pending), len(pending)
            raise
        if pending:
            yield b"".join(pending), len(pending)


class _LineProtocolInput(Input):
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
        self._undecodable: LineProtocolError | None = None

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
                error = self._not_utf8(line, exc, lineno)
                if self.on_error is None:
                    raise error from None
                self.on_error(error)
                yield ""  # keep the line numbers right

    def _not_utf8(self, line: bytes, exc: UnicodeDecodeError, lineno: int) -> LineProtocolError:
        # The bytes escaped (\x7fELF...): a binary file must not reach the terminal raw.
        excerpt = line.rstrip(b"\r\n")
        shown = excerpt[:_EXCERPT].decode("utf-8", "backslashreplace")
        if len(excerpt) > _EXCERPT:
            shown += f"... ({len(excerpt):,} bytes)"
        hint = ""
        if b"\0" in line:
            hint = "; a binary file? (give a recording as .srpl/.brpl, or --input-format)"
        return LineProtocolError(
            f"not UTF-8 text: {exc.reason} at byte {exc.start}{hint}",
            shown,
            source=self.label,
            lineno=lineno,
        )

    @contextlib.contextmanager
    def _open(self) -> Iterator[IO[bytes]]:
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
            yield stream

    def _blocks(self, stream: IO[bytes]) -> Iterator[list[str]]:
        """The lines of the input, a block at a time (line endings removed)."""
        rest = b""
        # read1: what is there now, at most one read of the source; so lines
        # typed on a terminal are replayed as they come, and one Ctrl-D ends
        # the input (read() would wait for a second one).
        read = getattr(stream, "read1", stream.read)
        while True:
            try:
                block = read(_BLOCK)
            except (EOFError, OSError) as exc:
                raise RecordingError(
                    f"cannot read past line {self.lines}: {exc}", path=self.label
                ) from None
            if not block:
                break
            data = rest + block
            end = data.rfind(b"\n")
            if end < 0:
                rest = data
                continue
            rest = data[end + 1 :]
            yield self._decode(data[:end].split(b"\n"))
        if rest:
            yield self._decode([rest])

    def _decode(self, raw_lines: list[bytes]) -> list[str]:
        try:
            return b"\n".join(raw_lines).decode("utf-8").split("\n")
        except UnicodeDecodeError:
            pass
        lines = []
        for number, line in enumerate(raw_lines, start=self.lines + 1):
            try:
                lines.append(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                self.lines = number
                error = self._not_utf8(line, exc, number)
                if self.on_error is None:
                    lines.append(_UNDECODABLE)
                    self._undecodable = error
                    break
                self.on_error(error)
                lines.append("")  # keep the line numbers right
        return lines

    def frames(self, grouping: Grouping, points: int) -> Iterator[tuple[bytes, int]]:
        encoder = LineEncoder(precision=self.precision, grouping=grouping, source=self.label)
        encode = encoder.line
        on_error = self.on_error
        pending: list[bytes] = []
        joiner = RecordJoiner()
        lineno = 0
        with self._open() as stream:
            try:
                for lines in self._blocks(stream):
                    if not joiner.open and lines and lines[-1] is not _UNDECODABLE:
                        # A block of plain lines (no string field that may go
                        # on, no CR) is encoded in one call; at the first
                        # error it is done again line by line, below.
                        block = _plain_block(encode, lines, lineno + 1)
                        if block is not None:
                            lineno += len(lines)
                            self.lines = lineno
                            pending += block
                            while len(pending) >= points:
                                yield b"".join(pending[:points]), points
                                del pending[:points]
                            continue
                    for line in lines:
                        lineno += 1
                        if line is _UNDECODABLE:
                            self.lines = lineno
                            assert self._undecodable is not None
                            raise self._undecodable
                        record = joiner.add(lineno, line)
                        if record is None:
                            continue  # a string field goes on to the next line
                        first, text = record
                        try:
                            frame = encode(text.rstrip("\r"), first)
                        except LineProtocolError as exc:
                            if on_error is None:
                                raise
                            on_error(exc)
                            continue
                        if frame is not None:
                            pending.append(frame)
                            if len(pending) >= points:
                                yield b"".join(pending), len(pending)
                                pending = []
                    self.lines = lineno
                rest = joiner.rest()
                if rest is not None:
                    try:
                        frame = encode(rest[1], rest[0])
                    except LineProtocolError as exc:
                        if on_error is None:
                            raise
                        on_error(exc)
                        frame = None
                    if frame is not None:
                        pending.append(frame)
            except (LineProtocolError, RecordingError):
                # The points before the error are replayed first.
                if pending:
                    yield b"".join(pending), len(pending)
                raise
        if pending:
            yield b"".join(pending), len(pending)

    def __iter__(self) -> Iterator[DataPoint | Batch]:
        with self._open() as stream:
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


def _plain_block(
    encode: Callable[[str, int], bytes | None], lines: list[str], first: int
) -> list[bytes] | None:
    """The frames of a block of lines without a quote or a CR; None if one is invalid."""
    text = "\n".join(lines)
    if '"' in text or "\r" in text:
        return None
    try:
        frames = list(map(encode, lines, range(first, first + len(lines))))
    except LineProtocolError:
        return None
    return [frame for frame in frames if frame is not None]


def open_input(
    path: str,
    *,
    input_format: str = "auto",
    precision: str = "ns",
    stdin: IO[bytes] | None = None,
    on_error: Callable[[LineProtocolError], None] | None = None,
) -> Input:
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
