"""Kapacitor's recording files: the real ones, damaged ones, and ones we write."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest
from conftest import DATA

from aioudf.formats._fields import parse_time
from aioudf.formats._points import Batch, DataPoint
from aioudf.formats._recordings import (
    BatchRecording,
    RecordingError,
    StreamRecording,
    read_batch_recording,
    read_stream_recording,
    write_batch_recording,
    write_stream_recording,
)

STREAM = DATA / "cpu_stream.srpl"
BATCH = DATA / "cpu_batch.brpl"


def stream_text() -> list[str]:
    """The recording's lines, read independently of aioudf."""
    return gzip.decompress(STREAM.read_bytes()).decode().splitlines()


def test_stream_recording_points_match_the_file() -> None:
    lines = stream_text()
    points = list(read_stream_recording(STREAM))
    assert len(points) == len(lines) // 3 == 897
    for index in (0, 1, 448, 896):
        database, retention, line = lines[3 * index : 3 * index + 3]
        key, fields, stamp = line.split(" ")
        point = points[index]
        assert (point.database, point.retention_policy) == (database, retention)
        assert point.name == "cpu"
        assert ",".join(f"{k}={v}" for k, v in point.tags.items()) == key.split(",", 1)[1]
        assert point.fields == {k: float(v) for k, v in (f.split("=") for f in fields.split(","))}
        assert point.time == int(stamp)
        assert point.group == ""  # grouping is the task's business


def test_batch_recording_batches_match_the_file() -> None:
    with zipfile.ZipFile(BATCH) as archive:
        raw = [json.loads(line) for line in archive.read("0").decode().splitlines()]
    batches = list(read_batch_recording(BATCH))
    assert len(batches) == len(raw) == 2
    for batch, data in zip(batches, raw, strict=True):
        assert (batch.name, batch.group, batch.tags) == (data["name"], data["group"], data["tags"])
        assert batch.tmax == parse_time(data["tmax"])
        assert [p.time for p in batch.points] == [parse_time(p["time"]) for p in data["points"]]
        # Kapacitor replays JSON numbers as floats.
        assert [p.fields for p in batch.points] == [
            {"value": float(p["fields"]["value"])} for p in data["points"]
        ]


def test_recordings_we_write_read_back(tmp_path: Path) -> None:
    points = [
        DataPoint("cpu", {"v": 1.5, "n": 2, "s": "x y", "b": True}, tags={"h": "a"}, time=t)
        for t in range(5)
    ]
    for point in points:
        point.database, point.retention_policy = "db", "rp"
    assert write_stream_recording(tmp_path / "s.srpl", points) == 5
    assert list(read_stream_recording(tmp_path / "s.srpl")) == points

    batches = [
        Batch("cpu", [DataPoint("cpu", {"v": 1.0}, time=1)], tags={"count": "1"}),
        Batch("cpu", [DataPoint("cpu", {"v": 2.0}, time=2)], tags={"count": "0"}, by_name=True),
    ]
    assert write_batch_recording(tmp_path / "b.brpl", batches) == 2
    assert list(read_batch_recording(tmp_path / "b.brpl")) == batches


# ---- damaged files -------------------------------------------------------------------


def read_until_error(reader: StreamRecording | BatchRecording) -> tuple[list[object], str]:
    items: list[object] = []
    with pytest.raises(RecordingError) as caught:
        items.extend(reader)  # keeps what was read before the error
    return items, str(caught.value)


def test_truncated_stream_recording_keeps_every_complete_point(tmp_path: Path) -> None:
    cut = tmp_path / "cut.srpl"
    cut.write_bytes(STREAM.read_bytes()[:6000])
    complete = list(read_stream_recording(STREAM))
    items, message = read_until_error(StreamRecording(cut))
    assert items and items == complete[: len(items)]
    assert message.startswith(f"{cut}: recording truncated")
    assert f"record {len(items) + 1}" in message


def test_bad_line_in_a_stream_recording_names_record_and_line(tmp_path: Path) -> None:
    lines = stream_text()[:12]
    lines[8] = "cpu,host=x usage_idle= 1"  # record 3 is lines 7-9: the point is line 9
    path = tmp_path / "bad.srpl"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    items, message = read_until_error(StreamRecording(path))
    assert len(items) == 2
    assert message == (
        f"{path}: record 3 (line 9): invalid line protocol (failed to parse value of field): "
        "cpu,host=x usage_idle= 1"
    )


def test_incomplete_last_record_is_an_error(tmp_path: Path) -> None:
    lines = stream_text()[:7]  # two points and the database line of a third
    path = tmp_path / "short.srpl"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    items, message = read_until_error(StreamRecording(path))
    assert len(items) == 2
    assert "record 3 (line 7) is incomplete" in message


def test_a_file_that_is_not_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plain.srpl"
    path.write_text("mydb\nmyrp\ncpu v=1 1\n")
    items, message = read_until_error(StreamRecording(path))
    assert items == []
    assert message.startswith(f"{path}: not a gzip file")


def test_truncated_batch_recording_keeps_every_complete_batch(tmp_path: Path) -> None:
    cut = tmp_path / "cut.brpl"
    cut.write_bytes(BATCH.read_bytes()[:300])  # no central directory any more
    items, message = read_until_error(BatchRecording(cut))
    assert items == list(read_batch_recording(BATCH))[:1]
    assert (
        message
        == f"{cut}: recording truncated in member '0' after batch 1 (everything before it was read)"
    )


def test_batch_recording_without_central_directory_but_whole_members(tmp_path: Path) -> None:
    data = BATCH.read_bytes()
    cut = tmp_path / "nodir.brpl"
    cut.write_bytes(data[: data.index(b"PK\x01\x02")])
    assert list(read_batch_recording(cut)) == list(read_batch_recording(BATCH))


def test_bad_json_in_a_batch_recording_names_member_line_and_batch(tmp_path: Path) -> None:
    path = tmp_path / "bad.brpl"
    good = '{"name":"cpu","tags":{},"points":[{"fields":{"v":1},"time":"2023-11-14T22:13:29Z"}]}'
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("0", good + "\n" + '{"name": "cpu", "points": [{"fields": {"v": 1}}]}\n')
    items, message = read_until_error(BatchRecording(path))
    assert len(items) == 1
    assert message == f"{path}: member '0' line 2 (batch 2): point 1 has no 'time'"


def test_members_are_read_in_numeric_order(tmp_path: Path) -> None:
    path = tmp_path / "many.brpl"

    def line(value: float) -> str:
        return json.dumps(
            {"name": "m", "points": [{"fields": {"v": value}, "time": "2023-11-14T22:13:29Z"}]}
        )

    with zipfile.ZipFile(path, "w") as archive:
        for name in ("10", "2", "1"):
            archive.writestr(name, line(float(name)) + "\n")
    assert [b.points[0].fields["v"] for b in read_batch_recording(path)] == [1.0, 2.0, 10.0]


def test_null_values_drop_the_point_as_kapacitor_does(tmp_path: Path) -> None:
    path = tmp_path / "null.brpl"
    batch = {
        "name": "m",
        "points": [
            {"fields": {"v": None}, "time": "2023-11-14T22:13:29Z"},
            {"fields": {"v": 2}, "time": "2023-11-14T22:13:30Z"},
        ],
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("0", json.dumps(batch) + "\n")
    (only,) = read_batch_recording(path)
    assert [p.fields for p in only.points] == [{"v": 2.0}]


def test_progress_position_reaches_the_file_size() -> None:
    reader = StreamRecording(STREAM)
    positions = [reader.position for _ in reader]
    assert positions == sorted(positions)
    assert 0 < positions[-1] <= reader.size
