"""Kapacitor's recording files: stream recordings (.srpl) and batch recordings (.brpl).

``kapacitor record stream`` writes a *stream recording*: one gzip stream of
UTF-8 text, three lines per point (database, retention policy, the point in
line protocol with a nanosecond timestamp). ``kapacitor record batch`` and
``record query`` write a *batch recording*: a zip archive whose members
(``0``, ``1``, ...) hold JSON lines, one batch per line::

    {"name": "cpu", "tmax": "2023-11-14T22:13:30Z", "group": "count=1",
     "tags": {"count": "1"}, "points": [{"fields": {"value": 50}, "tags": {...},
     "time": "2023-11-14T22:13:29.98Z"}, ...]}

JSON numbers are read as floats, as Kapacitor does when it replays a batch
recording. Reading is streaming and keeps nothing but the current record;
:class:`StreamRecording` and :class:`BatchRecording` also report how far into
the file they are, for progress bars.

A damaged file raises :class:`RecordingError` naming the file and the record
(and line) where reading stopped, after every complete record before it has
been yielded. A truncated recording (a copy cut short, a recording still
being written) is read up to its last complete record.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any

from ..errors import RecordingError
from ._fields import format_time, parse_time
from ._lineprotocol import LineProtocolError, _ends_inside_string, format_line, parse_line
from ._points import Batch, DataPoint, is_finite

__all__ = [
    "BatchRecording",
    "RecordingError",
    "StreamRecording",
    "batch_to_json",
    "point_to_json",
    "read_batch_recording",
    "read_stream_recording",
    "write_batch_recording",
    "write_stream_recording",
]

_CHUNK = 1 << 16

PathLike = str | os.PathLike[str]


class _Truncated(Exception):
    """The compressed data ended before its end marker."""


def _split_lines(chunks: Iterator[bytes], on_truncated: list[bool]) -> Iterator[bytes]:
    """Lines (without b"\\n") of a stream of chunks.

    When the chunks end with :class:`_Truncated`, the unterminated last line is
    dropped (it may be cut anywhere) and ``on_truncated`` gets True.
    """
    buffer = b""
    try:
        for chunk in chunks:
            buffer += chunk
            if b"\n" in buffer:
                *lines, buffer = buffer.split(b"\n")
                yield from lines
    except _Truncated:
        on_truncated.append(True)
        return
    if buffer:
        yield buffer


# ---- stream recordings ------------------------------------------------------------


class _Recording:
    """What both kinds of recording share: the file, and how far it has been read."""

    _is_stream = False

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        self.size = os.path.getsize(self.path)
        if self.size == 0:
            kind = "stream recording (.srpl)" if self._is_stream else "batch recording (.brpl)"
            raise RecordingError(f"empty file (0 bytes): not a {kind}", path=self.path)
        self._raw: IO[bytes] | None = None
        #: Records (points or batches) read so far.
        self.records = 0

    @property
    def position(self) -> int:
        """Bytes of the (compressed) file consumed so far."""
        raw = self._raw
        if raw is None or raw.closed:
            return self.size if self.records else 0
        return raw.tell()


class StreamRecording(_Recording):
    """A stream recording (.srpl), read point by point.

    Iterating yields :class:`~aioudf.formats.DataPoint` values with their
    database and retention policy set (no group: that is the task's
    business). :attr:`position` and :attr:`size` are in bytes of the file.
    """

    _is_stream = True

    def _error(self, message: str, *, line: int = 0) -> RecordingError:
        return RecordingError(message, path=self.path, record=self.records + 1, line=line)

    def _chunks(self, raw: IO[bytes]) -> Iterator[bytes]:
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
        while True:
            try:
                chunk = stream.read1(_CHUNK)
            except EOFError:
                raise _Truncated from None
            except (gzip.BadGzipFile, zlib.error, OSError) as exc:
                what = "not a gzip file" if self.records == 0 else "corrupt compressed data"
                raise self._error(
                    f"{what} ({exc}); a stream recording (.srpl) is gzip-compressed text"
                    + (f"; read {self.records} point(s) before this" if self.records else "")
                ) from None
            if not chunk:
                return
            yield chunk

    def read_records(self) -> Iterator[tuple[str, str, str, int]]:
        """The records as they are written: database, retention policy, line, its number.

        The line (a point in line protocol, unparsed) may span several
        lines of the file (a string field with a newline); its number is
        that of its last. Raises :class:`~aioudf.errors.RecordingError` as
        iterating does, but for the points themselves (see :meth:`point_error`).
        """
        with open(self.path, "rb") as raw:
            self._raw = raw
            truncated: list[bool] = []
            numbered = enumerate(_split_lines(self._chunks(raw), truncated), start=1)
            self.records = 0
            for first, database in numbered:
                rest = []
                for _ in range(2):
                    item = next(numbered, None)
                    if item is None:
                        break
                    rest.append(item)
                if len(rest) < 2:
                    raise self._incomplete(first, bool(truncated))
                (_, retention), (lineno, text) = rest
                while b'"' in text and _ends_inside_string(text.decode("utf-8", "replace")):
                    more = next(numbered, None)
                    if more is None:
                        raise self._incomplete(first, bool(truncated))
                    text += b"\n" + more[1]
                try:
                    line = text.decode("utf-8")
                    db = database.decode("utf-8").rstrip("\r")
                    rp = retention.decode("utf-8").rstrip("\r")
                except UnicodeDecodeError as exc:
                    where = f"record {self.records + 1} (lines {first}-{lineno})"
                    raise self._error(f"{where}: not UTF-8 text ({exc})", line=first) from None
                yield db, rp, line, lineno
                self.records += 1
            if truncated:
                raise self._error(
                    f"recording truncated: the compressed data ends after point {self.records} "
                    "(everything before it was read)"
                )

    def point_error(
        self, line: str, lineno: int, error: LineProtocolError | None
    ) -> RecordingError:
        """The error for the line of the record being read: invalid, or not a point (None)."""
        if error is not None:
            message = f"record {self.records + 1} (line {lineno}): {error}"
        else:
            what = "an empty line" if not line.strip() else "a comment"
            message = f"record {self.records + 1} (line {lineno}): expected a point, got {what}"
        return self._error(message, line=lineno)

    def __iter__(self) -> Iterator[DataPoint]:
        for db, rp, line, lineno in self.read_records():
            try:
                point = parse_line(line, default_time=0)
            except LineProtocolError as exc:
                raise self.point_error(line, lineno, exc) from None
            if point is None:
                raise self.point_error(line, lineno, None)
            point.database = db
            point.retention_policy = rp
            yield point

    def _incomplete(self, line: int, truncated: bool) -> RecordingError:
        if truncated:
            return self._error(
                f"recording truncated inside record {self.records + 1} (line {line}): "
                f"the compressed data ends there; the {self.records} point(s) before it were read",
                line=line,
            )
        return self._error(
            f"record {self.records + 1} (line {line}) is incomplete: a stream recording "
            "has three lines per point (database, retention policy, line protocol)",
            line=line,
        )


def read_stream_recording(path: PathLike) -> Iterator[DataPoint]:
    """The points of a stream recording (.srpl), in order."""
    return iter(StreamRecording(path))


def write_stream_recording(path: PathLike, points: Iterable[DataPoint]) -> int:
    """Write ``points`` as a stream recording Kapacitor can replay; returns the count."""
    count = 0
    with gzip.open(path, "wb") as out:
        for point in points:
            line = format_line(point)
            out.write(f"{point.database}\n{point.retention_policy}\n{line}\n".encode())
            count += 1
    return count


# ---- batch recordings -------------------------------------------------------------


def point_to_json(point: DataPoint, *, batch: bool = False) -> dict[str, Any]:
    """A point as a JSON-ready dict (``time`` in RFC 3339).

    Stream points carry ``name``, ``time``, ``group`` (if any), ``tags`` and
    ``fields``; points of a batch (``batch=True``) only ``fields``, ``tags``
    and ``time``, as in a batch recording. Non-finite floats become null.
    """
    fields = {key: value if is_finite(value) else None for key, value in point.fields.items()}
    if batch:
        return {"fields": fields, "tags": point.tags, "time": format_time(point.time)}
    out: dict[str, Any] = {"name": point.name, "time": format_time(point.time)}
    if point.group:
        out["group"] = point.group
    if point.database:
        out["database"] = point.database
    if point.retention_policy:
        out["retentionPolicy"] = point.retention_policy
    out["tags"] = point.tags
    out["fields"] = fields
    return out


def batch_to_json(batch: Batch) -> dict[str, Any]:
    """A batch as a line of a batch recording (JSON-ready dict)."""
    out: dict[str, Any] = {
        "name": batch.name,
        "tmax": format_time(batch.tmax),
        "group": batch.group,
    }
    if batch.by_name:
        out["byName"] = True
    out["tags"] = batch.tags
    out["points"] = [point_to_json(p, batch=True) for p in batch.points]
    return out


class BatchRecording(_Recording):
    """A batch recording (.brpl), read batch by batch.

    Members are read in order of their names (``0``, ``1``, ... one per
    query of the recorded task). :attr:`position` and :attr:`size` are in
    bytes of the file.
    """

    def __iter__(self) -> Iterator[Batch]:
        with open(self.path, "rb") as raw:
            self._raw = raw
            self.records = 0
            try:
                archive = zipfile.ZipFile(raw)
            except zipfile.BadZipFile:
                # No central directory (the file was cut short): read the
                # members one after the other from their local headers.
                raw.seek(0)
                yield from self._read_members(_stream_members(raw, self.path))
                return
            with archive:
                infos = sorted((i for i in archive.infolist() if not i.is_dir()), key=_member_order)
                yield from self._read_members(_archive_members(archive, infos, self.path))

    def _read_members(self, members: Iterator[tuple[str, Iterator[bytes]]]) -> Iterator[Batch]:
        for member, chunks in members:
            truncated: list[bool] = []
            for lineno, line in enumerate(_split_lines(chunks, truncated), start=1):
                if not line.strip():
                    continue
                where = f"member {member!r} line {lineno} (batch {self.records + 1})"
                try:
                    data = json.loads(line, parse_int=float)
                    batch = _batch_from_json(data)
                except (ValueError, TypeError, KeyError) as exc:
                    raise RecordingError(
                        f"{where}: {exc}", path=self.path, record=self.records + 1, line=lineno
                    ) from None
                self.records += 1
                yield batch
            if truncated:
                raise RecordingError(
                    f"recording truncated in member {member!r} after batch {self.records} "
                    "(everything before it was read)",
                    path=self.path,
                    record=self.records + 1,
                )


def _member_order(info: zipfile.ZipInfo) -> tuple[int, int, str]:
    name = info.filename
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _archive_members(
    archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], path: str
) -> Iterator[tuple[str, Iterator[bytes]]]:
    for info in infos:

        def chunks(info: zipfile.ZipInfo = info) -> Iterator[bytes]:
            try:
                with archive.open(info) as member:
                    while chunk := member.read(_CHUNK):
                        yield chunk
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise RecordingError(
                    f"member {info.filename!r} is corrupt ({exc})", path=path
                ) from None

        yield info.filename, chunks()


_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


def _stream_members(raw: IO[bytes], path: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    """Members of a zip archive read front to back, for archives cut short."""
    while True:
        header = raw.read(_LOCAL_HEADER.size)
        if len(header) < 4 or header[:4] != b"PK\x03\x04":
            if header[:4] in (b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06") or not header:
                return  # the central directory: no more members
            if len(header) < 4:
                return
            raise RecordingError(
                "not a zip archive; a batch recording (.brpl) is a zip of JSON lines", path=path
            )
        if len(header) < _LOCAL_HEADER.size:
            return
        (_, _, flags, method, _, _, _, size, _, name_length, extra_length) = _LOCAL_HEADER.unpack(
            header
        )
        name = raw.read(name_length).decode("utf-8", "replace")
        raw.seek(extra_length, io.SEEK_CUR)
        if method == zipfile.ZIP_DEFLATED:
            yield name, _inflate(raw)
        elif method == zipfile.ZIP_STORED and not flags & 0x08:
            yield name, _stored(raw, size)
        else:
            raise RecordingError(
                f"member {name!r}: cannot read compression method {method} of a truncated archive",
                path=path,
            )
        if flags & 0x08:
            _skip_data_descriptor(raw)


def _inflate(raw: IO[bytes]) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
    while not decompressor.eof:
        data = raw.read(_CHUNK)
        if not data:
            raise _Truncated
        try:
            out = decompressor.decompress(data)
        except zlib.error:
            raise _Truncated from None
        if decompressor.eof:
            # Give back what follows the compressed data.
            raw.seek(-len(decompressor.unused_data), io.SEEK_CUR)
        if out:
            yield out


def _stored(raw: IO[bytes], size: int) -> Iterator[bytes]:
    left = size
    while left:
        data = raw.read(min(left, _CHUNK))
        if not data:
            raise _Truncated
        left -= len(data)
        yield data


def _skip_data_descriptor(raw: IO[bytes]) -> None:
    head = raw.read(4)
    if head == b"PK\x07\x08":
        raw.read(12)  # crc, compressed and uncompressed sizes
    else:
        raw.read(8)  # no signature: head was the crc


def _batch_from_json(data: object) -> Batch:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object (a batch), got {type(data).__name__}")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise ValueError(f"'name' must be a string, got {name!r}")
    tags = _string_map(data.get("tags"), "tags")
    group = data.get("group")
    if group is not None and not isinstance(group, str):
        raise ValueError(f"'group' must be a string, got {group!r}")
    by_name = bool(data.get("byName", False))
    points_data = data.get("points") or []
    if not isinstance(points_data, list):
        raise ValueError("'points' must be a list")
    points = []
    for index, item in enumerate(points_data):
        point = _batch_point_from_json(item, name, index)
        if point is not None:
            points.append(point)
    tmax = data.get("tmax")
    return Batch(
        name,
        points,
        tags=tags,
        by_name=by_name,
        group=group,
        tmax=_time(tmax, "tmax") if tmax is not None else None,
    )


def _batch_point_from_json(item: object, name: str, index: int) -> DataPoint | None:
    if not isinstance(item, dict):
        raise ValueError(f"point {index + 1} must be a JSON object")
    if "time" not in item:
        raise ValueError(f"point {index + 1} has no 'time'")
    fields = item.get("fields") or {}
    if not isinstance(fields, dict):
        raise ValueError(f"point {index + 1}: 'fields' must be an object")
    for key, value in fields.items():
        if value is None:
            return None  # Kapacitor drops a point with a null value
        if not isinstance(value, float | str | bool):
            raise ValueError(
                f"point {index + 1}: field {key!r} must be a number, string or boolean"
            )
    return DataPoint(
        name,
        fields,
        tags=_string_map(item.get("tags"), f"point {index + 1} tags"),
        time=_time(item["time"], f"point {index + 1} time"),
    )


def _string_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"{what} must be an object of strings")
    return dict(value)


def _time(value: object, what: str) -> int:
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    raise ValueError(f"{what} must be an RFC 3339 string, got {value!r}")


def read_batch_recording(path: PathLike) -> Iterator[Batch]:
    """The batches of a batch recording (.brpl), in order."""
    return iter(BatchRecording(path))


def write_batch_recording(path: PathLike, batches: Iterable[Batch]) -> int:
    """Write ``batches`` as a batch recording (one member, ``0``); returns the count."""
    count = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:  # noqa: SIM117
        with archive.open("0", "w") as member:
            for batch in batches:
                line = json.dumps(batch_to_json(batch), separators=(",", ":"))
                member.write(line.encode() + b"\n")
                count += 1
    return count
