"""``aioudf replay``: recordings and line protocol through the examples, as a user runs it."""

from __future__ import annotations

import gzip
import json
import os
import pty
import re
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, EXAMPLES

from aioudf import InfoResponse
from aioudf.formats._lineprotocol import parse_lines
from aioudf.replay import Grouping, parse_duration, parse_option_args
from aioudf.testing import DataPoint
from aioudf.toolkit._handler import describe

STREAM = DATA / "cpu_stream.srpl"
BATCH = DATA / "cpu_batch.brpl"
MOVING_AVG = f"{EXAMPLES / 'moving_avg.py'}:MovingAvg"
OUTLIERS = f"{EXAMPLES / 'outliers.py'}:Outliers"
MIRROR = f"{EXAMPLES / 'mirror.py'}:Mirror"


def replay(
    env: dict[str, str], *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aioudf", "replay", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def lines_out(done: subprocess.CompletedProcess[str]) -> list[DataPoint]:
    return list(parse_lines(done.stdout.splitlines(keepends=True), source="stdout"))


# ---- the recordings through the examples ----------------------------------------------


def recorded_idle_by_host() -> dict[str, list[tuple[int, float]]]:
    """(time, usage_idle) per host, read from the recording without aioudf."""
    lines = gzip.decompress(STREAM.read_bytes()).decode().splitlines()
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for line in lines[2::3]:
        key, fields, stamp = line.split(" ")
        host = dict(tag.split("=") for tag in key.split(",")[1:])["host"]
        idle = float(dict(field.split("=") for field in fields.split(","))["usage_idle"])
        series[host].append((int(stamp), idle))
    return series


@pytest.mark.parametrize("transport", ["in-process", "process"])
def test_stream_recording_through_moving_avg_grouped_by_host(
    python_env: dict[str, str], transport: str
) -> None:
    udf = (
        [MOVING_AVG]
        if transport == "in-process"
        else ["--cmd", f"{sys.executable} -u {EXAMPLES / 'moving_avg.py'}"]
    )
    done = replay(
        python_env,
        *udf,
        str(STREAM),
        "--option", "field=usage_idle",
        "--option", "size=10",
        "--option", "as=avg",
        "--group-by", "host",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = lines_out(done)
    expected = recorded_idle_by_host()
    assert len(out) == sum(len(v) for v in expected.values()) == 897
    for host, series in expected.items():
        got = [(p.time, p.fields["avg"]) for p in out if p.tags["host"] == host]
        values = [value for _, value in series]
        means = [
            sum(values[max(0, i - 9) : i + 1]) / len(values[max(0, i - 9) : i + 1])
            for i in range(len(values))
        ]
        assert [t for t, _ in got] == [t for t, _ in series]
        assert [avg for _, avg in got] == pytest.approx(means)
    assert done.stderr.startswith("aioudf replay: 897 points in, 897 points out in ")


def test_without_group_by_the_hosts_are_averaged_together(python_env: dict[str, str]) -> None:
    done = replay(python_env, MOVING_AVG, str(STREAM), "-O", "field=usage_idle", "-O", "size=3")
    assert done.returncode == 0, done.stderr
    lines = gzip.decompress(STREAM.read_bytes()).decode().splitlines()[2::3]
    values = [float(line.split("usage_idle=")[1].split(",")[0]) for line in lines]
    means = [
        sum(values[max(0, i - 2) : i + 1]) / len(values[max(0, i - 2) : i + 1])
        for i in range(len(values))
    ]
    assert [p.fields["avg"] for p in lines_out(done)] == pytest.approx(means)


def recorded_batches() -> list[dict[str, Any]]:
    with zipfile.ZipFile(BATCH) as archive:
        return [json.loads(line) for line in archive.read("0").decode().splitlines()]


def outliers_of(values: list[float], scale: float) -> list[float]:
    """Kapacitor's outliers rule (see test_examples.tukey_outliers), for sorted halves."""
    ordered = sorted(values)
    n = len(ordered)

    def median(data: list[float]) -> float:
        m = len(data) // 2
        return (data[m] + data[m + 1]) / 2 if len(data) % 2 == 0 else data[m]

    right = n // 2 + 1 if n % 2 == 0 else n // 2
    q1, q3 = median(ordered[:right]), median(ordered[n // 2 + 1 :])
    low, high = q1 - scale * (q3 - q1), q3 + scale * (q3 - q1)
    return [v for v in ordered if v < low] + [v for v in ordered if v > high]


@pytest.mark.parametrize("transport", ["in-process", "process"])
def test_batch_recording_through_outliers(python_env: dict[str, str], transport: str) -> None:
    udf = (
        [OUTLIERS]
        if transport == "in-process"
        else ["--cmd", f"{sys.executable} -u {EXAMPLES / 'outliers.py'}"]
    )
    done = replay(
        python_env, *udf, str(BATCH), "-O", "field=value", "-O", "scale=1.5", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    recorded = recorded_batches()
    assert len(out) == len(recorded) == 2
    for got, batch in zip(out, recorded, strict=True):
        values = [float(p["fields"]["value"]) for p in batch["points"]]
        assert [p["fields"]["value"] for p in got["points"]] == outliers_of(values, 1.5)
        assert (got["name"], got["group"], got["tags"], got["tmax"]) == (
            batch["name"],
            batch["group"],
            batch["tags"],
            batch["tmax"],
        )
    assert "2 batches (40 points) in, 2 batches (10 points) out" in done.stderr


def test_socket_udf(python_env: dict[str, str], socket_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-u", str(EXAMPLES / "mirror.py"), "--socket", str(socket_path)],
        stderr=subprocess.PIPE,
        text=True,
        env=python_env,
    )
    try:
        assert server.stderr is not None
        while "serving " not in (line := server.stderr.readline()):
            assert line, "the mirror did not start"
        done = replay(
            python_env,
            "--socket", str(socket_path),
            "-O", "field=mirrored,1.0",
            stdin=b"cpu,host=a v=2i 10\ncpu,host=b v=3i 20\n",
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "cpu,host=a mirrored=1.0,v=2i 10\ncpu,host=b mirrored=1.0,v=3i 20\n"


# ---- line protocol in, line protocol out ----------------------------------------------

EVERY_TYPE = (
    "weather,site=roof\\ top,kind=a\\,b "
    'temp=18.5,count=3i,ok=true,note="say \\"hi\\" \\\\o/" 1700000000000000000\n'
    "weather,site=cellar "
    'temp=-1e-05,count=-9223372036854775808i,ok=false,note="" 1700000000000000001\n'
)


def test_line_protocol_round_trips_through_the_mirror(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "in.lp"
    path.write_text(EVERY_TYPE)
    done = replay(python_env, MIRROR, str(path))
    assert done.returncode == 0, done.stderr
    assert lines_out(done) == list(parse_lines(EVERY_TYPE.splitlines(keepends=True)))


def test_a_string_field_may_span_lines_of_a_replayed_file(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    text = (
        "m v=1i 1\n"  # plain lines first: a block encoded in one call
        'm,t=a s="first\nsecond\n" 2\r\n'  # a string value with its own line breaks
        "m v=3i 3\n"
        'm s="never closed 4\n'  # the end of the input inside a string: one record, refused
    )
    path = tmp_path / "in.lp"
    path.write_text(text)
    done = replay(python_env, MIRROR, "--skip-invalid", str(path))
    assert done.returncode == 0, done.stderr
    assert [(p.time, p.fields) for p in lines_out(done)] == [
        (1, {"v": 1}),
        (2, {"s": "first\nsecond\n"}),
        (3, {"v": 3}),
    ]
    assert f"{path}:6: invalid line protocol" in done.stderr


def test_stdin_gzip_precision_and_json(python_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "in.lp.gz"
    path.write_bytes(gzip.compress(b"m,h=a v=1i 1700000000\n"))
    done = replay(python_env, MIRROR, str(path), "--precision", "s", "-f", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "name": "m",
        "time": "2023-11-14T22:13:20Z",
        "tags": {"h": "a"},
        "fields": {"v": 1},
    }
    piped = replay(python_env, MIRROR, "-", "--precision", "ms", stdin=b"m v=1 1500\n")
    assert piped.stdout == "m v=1.0 1500\n"


def test_group_by_sets_kapacitors_group_key(python_env: dict[str, str]) -> None:
    done = replay(
        python_env, MIRROR, "-g", "host,dc", "--by-measurement", "-f", "json",
        stdin=b"cpu,host=a,dc=eu,rack=1 v=1 1\n",
    )  # fmt: skip
    assert json.loads(done.stdout)["group"] == "cpu\ndc=eu,host=a"


# ---- bad input: a clear error, nothing lost ----------------------------------------------


def test_malformed_line_stops_after_replaying_what_came_before(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.lp"
    path.write_text("m,h=a v=1 1\nm,h=a v=3 2\nm,h= v=5 3\nm,h=a v=7 4\n")
    done = replay(python_env, MOVING_AVG, str(path), "-O", "field=v", "-O", "size=2")
    assert done.returncode == 1
    assert [p.fields["avg"] for p in lines_out(done)] == [1.0, 2.0]
    assert done.stderr.splitlines() == [
        done.stderr.splitlines()[0],
        f"aioudf replay: error: {path}:3: invalid line protocol (failed to parse value of tag): "
        "m,h= v=5 3",
    ]
    assert done.stderr.startswith("aioudf replay: 2 points in, 2 points out")


def test_skip_invalid_reports_and_goes_on(python_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "bad.lp"
    path.write_bytes(b"m v=1 1\nm v=oops 2\nm \xff=1 3\nm v=4 4\n")
    done = replay(python_env, MIRROR, str(path), "--skip-invalid")
    assert done.returncode == 0, done.stderr
    assert [p.time for p in lines_out(done)] == [1, 4]
    assert f"skipped: {path}:2: invalid line protocol" in done.stderr
    assert f"skipped: {path}:3: invalid line protocol (not UTF-8 text" in done.stderr
    assert "2 invalid line(s) skipped" in done.stderr


def test_truncated_recording_keeps_its_complete_points(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    cut = tmp_path / "cut.srpl"
    cut.write_bytes(STREAM.read_bytes()[:5000])
    done = replay(python_env, MIRROR, str(cut))
    assert done.returncode == 1
    kept = len(lines_out(done))
    assert kept > 100
    assert (
        f"aioudf replay: error: {cut}: recording truncated inside record {kept + 1}" in done.stderr
    )


def test_udf_errors_and_usage_errors(python_env: dict[str, str]) -> None:
    refused = replay(python_env, OUTLIERS, str(BATCH), "-O", "field=value", "-O", "scale=0.5")
    assert refused.returncode == 1
    assert (
        "aioudf replay: error: the UDF failed: invalid scale 0.5: must be >= 1.0" in refused.stderr
    )
    wrong_edge = replay(python_env, OUTLIERS, str(STREAM), "-O", "field=value")
    assert wrong_edge.returncode == 2
    assert "the UDF wants batches, and" in wrong_edge.stderr
    unknown = replay(python_env, OUTLIERS, str(BATCH), "-O", "feild=value")
    assert unknown.returncode == 2
    assert (
        "the UDF has no option 'feild'; it takes: .field(STRING) .scale(DOUBLE)" in unknown.stderr
    )
    no_udf = replay(python_env, str(BATCH))
    assert no_udf.returncode == 2 and "name the UDF" in no_udf.stderr
    missing = replay(python_env, MIRROR, "nope.lp")
    assert missing.returncode == 2 and "nope.lp: no such file" in missing.stderr


# ---- the options syntax ------------------------------------------------------------------


def info_for(**types: tuple[type, ...]) -> InfoResponse:
    from aioudf import Handler, Option

    namespace = {name: Option(*value_types) for name, value_types in types.items()}
    return describe(type("H", (Handler,), namespace))


def test_option_syntax() -> None:
    import datetime

    info = info_for(
        field=(str,),
        size=(int,),
        scale=(float,),
        on=(bool,),
        every=(datetime.timedelta,),
        pair=(str, float),
        flag=(),
    )
    messages = parse_option_args(
        [
            "field=usage_idle",
            "size=10",
            "scale=2.",
            "on=TRUE",
            "every=90s",
            "pair='a,b', 42.5",
            "pair=c,1.0",
            "flag",
        ],
        info,
    )
    values = [
        (m.name, [getattr(v, v.WhichOneof("value") or "") for v in m.values]) for m in messages
    ]
    assert values == [
        ("field", ["usage_idle"]),
        ("size", [10]),
        ("scale", [2.0]),
        ("on", [True]),
        ("every", [90 * 10**9]),
        ("pair", ["a,b", 42.5]),
        ("pair", ["c", 1.0]),
        ("flag", []),
    ]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("size=ten", "option 'size' must be INT (like 10)"),
        ("size='10'", "option 'size' must be INT, got the string '10'"),
        (
            "field=a,b",
            "option 'field' takes 1 value(s), .field(STRING), got 2 in 'a,b'; quote a string",
        ),
        ("pair=a", "option 'pair' takes 2 value(s), .pair(STRING, DOUBLE), got 1"),
        ("field", "option 'field' takes 1 value(s): .field(STRING), e.g. --option field=text"),
        ("flag=1", "option 'flag' takes no values"),
        ("field='open", "unterminated quote"),
        ("every=soon", "option 'every' must be DURATION (like 10s)"),
        # Refused as Kapacitor refuses the TICKscript (checked in test_e2e_kit.py).
        (
            "alpha=1",
            "option 'alpha': unexpected arg to alpha, got INT expected DOUBLE, "
            "as Kapacitor refuses .alpha(1); write 1.0",
        ),
        ("size=2.0", "option 'size': unexpected arg to size, got DOUBLE expected INT"),
        ("pair=a,1", "option 'pair' value 2: unexpected arg to pair, got INT expected DOUBLE"),
        ("every=10", "option 'every': unexpected arg to every, got INT expected DURATION"),
        ("every=1m30s", "not a TICKscript duration: '1m30s' (one whole number and a unit: "),
        ("every=1m30s", "; write 90s"),
        ("alpha=1e3", "option 'alpha' must be DOUBLE (like 1.5): not a TICKscript number: '1e3'"),
        ("on=true", "option 'on' must be BOOL (like TRUE): not TRUE or FALSE: 'true'"),
        ("size=99999999999999999999", "out of a 64-bit integer's range"),
    ],
)
def test_option_mistakes_are_explained(arg: str, message: str) -> None:
    import datetime

    info = info_for(
        field=(str,),
        size=(int,),
        alpha=(float,),
        on=(bool,),
        pair=(str, float),
        flag=(),
        every=(datetime.timedelta,),
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_option_args([arg], info)


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("10s", 10**10),
        ("1m30s", 90 * 10**9),
        ("100ms", 10**8),
        ("5u", 5000),
        ("1.5h", 5400 * 10**9),
        ("-2d", -2 * 86400 * 10**9),
        ("0", 0),
    ],
)
def test_tickscript_durations(text: str, nanoseconds: int) -> None:
    assert parse_duration(text) == nanoseconds


def test_group_by_arguments() -> None:
    assert Grouping.from_args(["host,cpu", "dc"]) == Grouping(tags=("cpu", "dc", "host"))
    assert Grouping.from_args(["*"]).all_tags


# ---- the terminal: progress bar only on a terminal, data only on stdout -------------------


def big_line_protocol(path: Path, count: int) -> Path:
    with path.open("w") as out:
        for i in range(count):
            out.write(f"cpu,host=h{i % 3} v={i}i {i}\n")
    return path


def test_progress_bar_on_a_terminal(python_env: dict[str, str], tmp_path: Path) -> None:
    data = big_line_protocol(tmp_path / "big.lp", 40)
    out = tmp_path / "out.lp"
    controller, terminal = pty.openpty()
    try:
        # A slow UDF (0.05 s per point) makes this replay take 2 s: long
        # enough for the bar, which appears after 0.3 s.
        process = subprocess.Popen(
            [
                sys.executable, "-m", "aioudf", "replay", "udf_handlers:AwaitsSlowly",
                str(data), "-O", "seconds=0.05", "-o", str(out),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            env={**python_env, "COLUMNS": "100"},
        )  # fmt: skip
        os.close(terminal)
        screen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process is done
                break
            if not chunk:
                break
            screen += chunk
        assert process.wait(60) == 0
    finally:
        os.close(controller)
    text = screen.decode(errors="replace")
    frames = [frame for frame in text.split("\r") if "big.lp" in frame]
    assert frames, text
    assert any("%" in frame and "in," in frame and "points/s" in frame for frame in frames)
    # The bar is cleared and the summary printed on its own line.
    assert "aioudf replay: 40 points in, 40 points out in " in text
    assert len(out.read_text().splitlines()) == 40


def test_piped_output_is_only_data(python_env: dict[str, str], tmp_path: Path) -> None:
    data = big_line_protocol(tmp_path / "big.lp", 3000)
    done = replay(python_env, MIRROR, str(data), "--progress", "auto")
    assert done.returncode == 0
    assert len(lines_out(done)) == 3000  # every stdout line is a point
    assert "\r" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()]  # the summary, nothing else
    assert done.stderr.startswith("aioudf replay: 3,000 points in, 3,000 points out")


def test_quiet_prints_no_summary(python_env: dict[str, str]) -> None:
    done = replay(python_env, MIRROR, "-q", stdin=b"m v=1 1\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "m v=1.0 1\n", "")


def test_log_level_in_any_case_as_run_and_serve_take_it(python_env: dict[str, str]) -> None:
    done = replay(python_env, MIRROR, "-q", "--log-level", "debug", stdin=b"m v=1 1\n")
    assert (done.returncode, done.stdout) == (0, "m v=1.0 1\n")
    done = replay(python_env, MIRROR, "--log-level", "loud", stdin=b"m v=1 1\n")
    assert done.returncode == 2
    assert "unknown log level 'loud'" in done.stderr.splitlines()[-1]


def test_a_reader_that_goes_away_is_not_an_error(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    data = big_line_protocol(tmp_path / "big.lp", 30_000)  # far more than a pipe holds
    process = subprocess.Popen(
        [sys.executable, "-m", "aioudf", "replay", MIRROR, str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=python_env,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read().decode()
    assert process.wait(60) == 0, stderr
    assert first == b"cpu,host=h0 v=0i 0\n"
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


# ---- what a newcomer sees when something goes wrong ------------------------------------


def test_a_binary_file_is_shown_escaped_never_raw(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    binary = tmp_path / "udf.so"
    binary.write_bytes(b"\x7fELF\x02\x01\x1b[31m\x00\x00\xff\xfe" + bytes(range(11, 256)) * 4)
    done = replay(python_env, MIRROR, str(binary))
    assert done.returncode == 1
    assert "\x1b" not in done.stderr and "\x00" not in done.stderr and "\ufffd" not in done.stderr
    assert (
        f"{binary}:1: invalid line protocol (not UTF-8 text: invalid start byte at byte 13; "
        "a binary file? (give a recording as .srpl/.brpl, or --input-format)): "
        "\\x7fELF\\x02\\x01\\x1b[31m\\x00\\x00\\xff\\xfe\\x0b\\x0c\\r\\x0e" in done.stderr
    )
    assert "... (995 bytes)" in done.stderr


def test_a_udf_failing_on_its_first_point_is_named_in_the_summary(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "boom.lp"
    data.write_text("".join(f"m boom=1 {t}\n" for t in range(1, 898)))
    done = replay(python_env, "udf_handlers:Fails", str(data), "-O", "in=point")
    assert done.returncode == 1
    summary = [line for line in done.stderr.splitlines() if " points in, " in line]
    assert len(summary) == 1
    assert summary[0].startswith("aioudf replay: the UDF failed: ")
    assert " points out in " in summary[0]
    assert "aioudf replay: error: the UDF failed: Fails.point() failed" in done.stderr


def test_a_missing_option_is_asked_for_as_a_flag(python_env: dict[str, str]) -> None:
    done = replay(python_env, MOVING_AVG, str(STREAM), "-O", "size=3")
    assert done.returncode == 1
    assert (
        "aioudf replay: error: the UDF failed: missing required option 'field': "
        "add -O field=text" in done.stderr
    )
    assert ".field(" not in done.stderr.splitlines()[-1]
