"""What a replay reads: stream and batch recordings, line protocol from files or stdin."""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO

from ..errors import AioudfError, LineProtocolError, RecordingError
from ..lineprotocol import _load_parser, parse_lines
from ..messages import EdgeType
from ..points import Batch, DataPoint
from ..recordings import BatchRecording, StreamRecording

__all__ = ["Input", "open_input"]


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
