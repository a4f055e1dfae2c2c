"""Process UDFs: `aioudf run` and `aioudf.run()` on real stdin/stdout pipes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from logcapture import parse_logfmt
from standin import decode_responses, kind, options, request

from aioudf._pb import udf_pb2 as pb
from aioudf.testing import Command, Kapacitor, KeepaliveTimeout, make_point
from aioudf.wire._frames import encode_frame


def run_udf(
    env: dict[str, str], args: list[str], stdin: bytes, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "aioudf", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=timeout,
    )


def session(*extra: bytes) -> bytes:
    return b"".join(
        [
            request(info=pb.InfoRequest()),
            request(init=pb.InitRequest(options=options(label="p"))),
            *(
                request(point=pb.Point(name="cpu", time=t, fieldsDouble={"v": 1.0}))
                for t in range(3)
            ),
            request(keepalive=pb.KeepaliveRequest(time=5)),
            request(snapshot=pb.SnapshotRequest()),
            *extra,
        ]
    )


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_run_serves_until_stdin_closes_then_exits_0(python_env: dict[str, str], loop: str) -> None:
    done = run_udf(python_env, ["run", "udf_handlers:Recorder", "--loop", loop], session())
    assert done.returncode == 0, done.stderr.decode()
    responses = decode_responses(done.stdout)  # stdout holds nothing but frames
    kinds = [kind(r) for r in responses]
    assert sorted(kinds) == sorted(
        ["info", "init", "point", "point", "point", "keepalive", "snapshot", "point"]
    )
    assert [r.point.time for r in responses if kind(r) == "point"][:3] == [0, 1, 2]
    # The last point is what stop() emitted after stdin closed: nothing lost.
    assert responses[-1].point.name == "stopped"
    assert [r.snapshot.snapshot for r in responses if kind(r) == "snapshot"] == [b"3"]


def test_stray_prints_go_to_stderr_not_into_the_frames(python_env: dict[str, str]) -> None:
    stream = request(init=pb.InitRequest()) + request(point=pb.Point(name="cpu", time=7))
    done = run_udf(python_env, ["run", "udf_handlers:Printer"], stream)
    assert done.returncode == 0, done.stderr.decode()
    responses = decode_responses(done.stdout)
    assert [kind(r) for r in responses] == ["init", "point"]
    assert b"hello from print() 7" in done.stderr
    assert b"raw write to fd 1" in done.stderr


def test_protocol_error_is_reported_and_exits_non_zero(python_env: dict[str, str]) -> None:
    done = run_udf(python_env, ["run", "udf_handlers:Recorder"], session(b"\x05abc"))
    assert done.returncode == 1
    responses = decode_responses(done.stdout)
    # Everything before the bad frame was answered, then the ErrorResponse.
    assert [kind(r) for r in responses].count("point") == 3
    assert kind(responses[-1]) == "error"
    assert responses[-1].error.error.startswith("protocol error: stream ended inside a frame")
    assert b"UDF stopped: protocol error: stream ended inside a frame" in done.stderr


FAILING_POINT = request(
    init=pb.InitRequest(options=options(in_="point"), taskID="cpu_alert", nodeID="fails2")
) + request(point=pb.Point(name="cpu", time=4, fieldsDouble={"boom": 1.0}))


def test_handler_exception_is_reported_with_a_traceback(python_env: dict[str, str]) -> None:
    done = run_udf(python_env, ["run", "udf_handlers:Fails"], FAILING_POINT)
    assert done.returncode == 1
    (_init, error) = decode_responses(done.stdout)
    assert error.error.error == "Fails.point() failed handling Point: ValueError: bad value at t=4"
    # One logfmt line per event: the traceback is a field of the error's line.
    events = [parse_logfmt(line) for line in done.stderr.decode().splitlines()]
    (failure,) = [event for event in events if "exc" in event]
    assert failure["lvl"] == "error"
    assert (failure["task"], failure["node"], failure["conn"]) == ("cpu_alert", "fails2", "stdio")
    assert failure["exc"].startswith("Traceback (most recent call last)")
    assert 'raise ValueError(f"bad value at t={point.time}")' in failure["exc"]
    assert failure["exc"].endswith("ValueError: bad value at t=4")
    assert events[-1]["msg"] == f"UDF stopped: {error.error.error}"
    assert events[-1]["task"] == "cpu_alert"


def test_json_log_format_is_one_object_per_line(python_env: dict[str, str]) -> None:
    done = run_udf(python_env, ["run", "udf_handlers:Fails", "--log-format", "json"], FAILING_POINT)
    assert done.returncode == 1
    events = [json.loads(line) for line in done.stderr.decode().splitlines()]
    (failure,) = [event for event in events if "exc" in event]
    assert failure["lvl"] == "error" and failure["task"] == "cpu_alert"
    assert "Fails.point() failed handling Point" in failure["msg"]
    assert 'raise ValueError(f"bad value at t={point.time}")' in failure["exc"]


def test_text_log_format_keeps_the_traceback_readable(python_env: dict[str, str]) -> None:
    done = run_udf(python_env, ["run", "udf_handlers:Fails", "--log-format", "text"], FAILING_POINT)
    stderr = done.stderr.decode()
    assert re.search(r"ERROR aioudf\[\d+\] \[task=cpu_alert node=fails2 conn=stdio\]:", stderr)
    assert '\n    raise ValueError(f"bad value at t={point.time}")\n' in stderr


def test_regular_files_work_as_stdin_and_stdout(python_env: dict[str, str], tmp_path: Path) -> None:
    requests = tmp_path / "requests.bin"
    requests.write_bytes(session())
    out = tmp_path / "responses.bin"
    with requests.open("rb") as stdin, out.open("wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "aioudf", "run", "udf_handlers:Recorder"],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=python_env,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr.decode()
    assert [kind(r) for r in decode_responses(out.read_bytes())].count("point") == 4


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module:Handler", "cannot import module 'no_such_module'"),
        ("udf_handlers:Missing", "module 'udf_handlers' has no attribute 'Missing'"),
        ("udf_handlers", "expected MODULE:CLASS or FILE.py:CLASS"),
        ("udf_handlers:time", "is not callable"),
    ],
)
def test_bad_handler_spec_is_a_clear_error(
    python_env: dict[str, str], spec: str, message: str
) -> None:
    done = run_udf(python_env, ["run", spec], b"")
    assert done.returncode == 2
    assert message in done.stderr.decode()


def test_handler_given_as_a_file_path(python_env: dict[str, str]) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    stream = request(info=pb.InfoRequest())
    done = run_udf(python_env, ["run", f"{examples / 'outliers.py'}:Outliers"], stream)
    assert done.returncode == 0, done.stderr.decode()
    (info,) = decode_responses(done.stdout)
    assert info.info.wants == pb.BATCH and set(info.info.options) == {"field", "scale"}


def test_empty_stdin_is_a_clean_exit(python_env: dict[str, str]) -> None:
    done = run_udf(python_env, ["run", "udf_handlers:Recorder"], b"")
    assert done.returncode == 0
    assert done.stdout == b""


def test_oversized_frame_limit_is_configurable(python_env: dict[str, str]) -> None:
    big = request(init=pb.InitRequest()) + request(restore=pb.RestoreRequest(snapshot=b"x" * 500))
    done = run_udf(python_env, ["run", "udf_handlers:Recorder", "--max-frame-size", "100"], big)
    assert done.returncode == 1
    assert (
        "exceeds the maximum frame size of 100 bytes"
        in decode_responses(done.stdout)[-1].error.error
    )


async def slow_task(python_env: dict[str, str], handler: str, seconds: float) -> list[int]:
    """Two points at `seconds` each under a 1 s UDF timeout (keepalive every 0.5 s).

    The snapshot is requested right after the points, so its reply waits for
    both: the task stays open, with keepalives flowing, for the whole time.
    """
    udf = Kapacitor(
        Command([sys.executable, "-m", "aioudf", "run", f"udf_handlers:{handler}"], env=python_env),
        timeout=1.0,
    )
    async with udf.task({"seconds": seconds}) as task:
        await task.send(*(make_point("cpu", {"v": 1.0}, time=t) for t in range(2)))
        await task.snapshot()
        result = await task.stop()
    return [p.time for p in result.points]


async def test_awaiting_handler_survives_a_timeout_shorter_than_its_calls(
    python_env: dict[str, str],
) -> None:
    assert await slow_task(python_env, "AwaitsSlowly", 1.5) == [0, 1]


async def test_declared_blocking_handler_survives_too(python_env: dict[str, str]) -> None:
    assert await slow_task(python_env, "SleepsInThread", 1.5) == [0, 1]


async def test_undeclared_blocking_handler_misses_keepalives(python_env: dict[str, str]) -> None:
    # The control experiment: blocking the event loop is what kills tasks.
    with pytest.raises(KeepaliveTimeout, match="keepalive timedout"):
        await slow_task(python_env, "SleepsOnLoop", 1.5)


def test_frames_written_by_hand_decode_as_responses() -> None:
    # A Response frame built from an already-serialized Point, as docs/protocol.md
    # describes it, is what aioudf writes.
    from aioudf.wire._messages import encode_data_frame

    point = pb.Point(name="cpu", time=1, fieldsDouble={"v": 2.0})
    assert encode_data_frame(point) == encode_frame(pb.Response(point=point).SerializeToString())


@pytest.mark.parametrize(
    ("factory", "reason"),
    [
        ("no_database", "could not create the UDF handler: RuntimeError: no database"),
        (
            "not_a_handler",
            "could not create the UDF handler: not_a_handler() returned a str, "
            "not a Handler or BlockingHandler",
        ),
        (
            "returns_a_number",
            "could not create the UDF handler: returns_a_number() returned an int, "
            "not a Handler or BlockingHandler",
        ),
    ],
)
def test_handler_factory_failure_is_reported_and_exits_non_zero(
    python_env: dict[str, str], factory: str, reason: str
) -> None:
    done = run_udf(python_env, ["run", f"udf_handlers:{factory}"], session())
    assert done.returncode == 1
    (error,) = decode_responses(done.stdout)
    assert error.error.error == reason
    assert reason in done.stderr.decode()


SCRIPT = """\
import aioudf
from mirror import Mirror

if __name__ == "__main__":
    aioudf.run(Mirror)
"""


@pytest.mark.parametrize("args", [["--socket", "x.sock"], ["--bogus-flag"], ["extra"]])
def test_run_refuses_command_line_arguments(
    python_env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    # aioudf.run() takes its settings as keywords: a flag is a mistake to say, not ignore.
    (tmp_path / "udf.py").write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "udf.py"), *args],
        input=request(info=pb.InfoRequest()),
        capture_output=True,
        env=python_env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == b""
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith(
        f"udf.py: error: aioudf.run() takes no command-line arguments, got: {args[0]}"
    )
    assert "aioudf.main(" in line
    assert not (tmp_path / "x.sock").exists()
