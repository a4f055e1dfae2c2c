"""What a newcomer's mistakes print: one line naming the cause, never a traceback or a hang.

Each case runs the ``aioudf`` command as a user does, in a child process.
"""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES

MIRROR = f"{EXAMPLES / 'mirror.py'}:Mirror"
MOVING_AVG = f"{EXAMPLES / 'moving_avg.py'}:MovingAvg"


def aioudf(env: dict[str, str], *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aioudf", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def one_error_line(done: subprocess.CompletedProcess[str], prefix: str) -> str:
    """The single line of stderr, which must start with ``prefix: error: ``."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{prefix}: error: "), lines
    return lines[0]


@pytest.fixture
def points(tmp_path: Path) -> Path:
    path = tmp_path / "points.lp"
    path.write_text("".join(f"cpu v={i} {i}\n" for i in range(200)))
    return path


# ---- socket paths (serve) -----------------------------------------------------------


def test_socket_in_a_missing_directory(python_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "missing" / "udf.sock"
    done = aioudf(python_env, "serve", MIRROR, "--socket", str(path))
    assert done.returncode == 2
    line = one_error_line(done, "aioudf serve")
    assert str(path) in line and f"no such directory: {path.parent}" in line


def test_socket_under_a_regular_file(python_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = aioudf(python_env, "serve", MIRROR, "--socket", str(tmp_path / "file" / "udf.sock"))
    assert done.returncode == 2
    assert "is not a directory" in one_error_line(done, "aioudf serve")


def serve_in_a_child_as_nobody(socket_path: Path) -> subprocess.CompletedProcess[str]:
    """``aioudf serve mirror:Mirror --socket PATH`` in a forked child of this process.

    As root, the child first drops to uid 65534 (root writes anywhere). It
    runs the command in process, with the modules this process imported
    (a warm-up run as root imports the rest), so nothing is read from the
    checkout or the interpreter's folder afterwards: where they sit, and who
    may enter it, does not matter.
    """
    import mirror  # noqa: F401  # the handler, in sys.modules before the privileges go

    from aioudf.cli import cli

    argv = ["serve", "mirror:Mirror", "--loop", "asyncio", "--socket"]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 70
        try:
            os.close(read)
            if os.geteuid() == 0:
                sys.stderr = open(os.devnull, "w")  # noqa: SIM115
                cli([*argv, str(socket_path.parent / "missing" / "u.sock")])  # warm-up
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            sys.stderr = os.fdopen(write, "w")  # what the command writes, for the parent
            status = cli([*argv, str(socket_path)])
            sys.stderr.flush()
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, encoding="utf-8", errors="replace") as pipe:
        stderr = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    return subprocess.CompletedProcess(argv, os.waitstatus_to_exitcode(wait_status), "", stderr)


def test_socket_in_a_directory_the_user_may_not_write(short_tmp: Path) -> None:
    locked = short_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    short_tmp.chmod(0o755)
    done = serve_in_a_child_as_nobody(locked / "u.sock")
    assert done.returncode == 2, done.stderr
    line = one_error_line(done, "aioudf serve")
    assert str(locked / "u.sock") in line and "permission denied" in line


# ---- replay: the target -----------------------------------------------------------------


def test_replay_socket_that_does_not_exist(
    python_env: dict[str, str], points: Path, tmp_path: Path
) -> None:
    path = tmp_path / "nope.sock"
    done = aioudf(python_env, "replay", "--socket", str(path), str(points))
    assert done.returncode != 0
    line = one_error_line(done, "aioudf replay")
    assert f"cannot connect to the socket UDF at {path}: no such file" in line


def test_replay_socket_that_is_a_regular_file(python_env: dict[str, str], points: Path) -> None:
    done = aioudf(python_env, "replay", "--socket", str(points), str(points))
    assert done.returncode != 0
    assert f"{points}: not a socket" in one_error_line(done, "aioudf replay")


def test_replay_socket_nobody_serves(
    python_env: dict[str, str], points: Path, short_tmp: Path
) -> None:
    stale = short_tmp / "stale.sock"
    with socket.socket(socket.AF_UNIX) as left_behind:
        left_behind.bind(str(stale))  # bound, never listening: a UDF that died
    done = aioudf(python_env, "replay", "--socket", str(stale), str(points))
    assert "connection refused: nothing is serving on it" in one_error_line(done, "aioudf replay")


def test_replay_cmd_that_does_not_exist(python_env: dict[str, str], points: Path) -> None:
    done = aioudf(python_env, "replay", "--cmd", "no-such-udf-program --flag", str(points))
    assert done.returncode != 0
    line = one_error_line(done, "aioudf replay")
    assert "cannot start the UDF 'no-such-udf-program': no such program on PATH" in line


@pytest.mark.parametrize("options", [[], ["--option", "field=value"]])
def test_replay_cmd_that_is_not_a_udf(
    python_env: dict[str, str], points: Path, options: list[str]
) -> None:
    done = aioudf(python_env, "replay", "--cmd", "cat", str(points), *options)
    assert done.returncode == 2
    line = one_error_line(done, "aioudf replay")
    assert "as cat does" in line
    assert "no option" not in line or "is it a UDF at all?" in line


def test_replay_handler_and_socket_both_given(
    python_env: dict[str, str], points: Path, tmp_path: Path
) -> None:
    done = aioudf(python_env, "replay", MIRROR, "--socket", str(tmp_path / "s"), str(points))
    assert done.returncode == 2
    line = one_error_line(done, "aioudf replay")
    assert "give one UDF" in line and "not both" in line
    assert "usage:" not in done.stderr and "unrecognized" not in done.stderr


def test_replay_inputs_may_follow_the_options(python_env: dict[str, str], points: Path) -> None:
    done = aioudf(python_env, "replay", MIRROR, "-q", str(points))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 200


def test_unknown_flags_are_usage_errors_of_the_subcommand(python_env: dict[str, str]) -> None:
    done = aioudf(python_env, "replay", MIRROR, "--frobnicate")
    assert done.returncode == 2
    assert (
        done.stderr.splitlines()[-1] == "aioudf replay: error: unrecognized arguments: --frobnicate"
    )


@pytest.mark.parametrize("command", [["run"], ["serve", "--socket", "x.sock"], ["replay"]])
def test_one_error_prefix_for_every_subcommand(
    python_env: dict[str, str], command: list[str]
) -> None:
    done = aioudf(python_env, command[0], "no_such_module:Handler", *command[1:])
    assert done.returncode == 2
    line = one_error_line(done, f"aioudf {command[0]}")
    assert "cannot import module 'no_such_module'" in line


def test_replay_on_a_terminal_says_it_reads_stdin(python_env: dict[str, str]) -> None:
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "aioudf", "replay", MIRROR, "-q"],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=python_env,
        )
        assert process.stderr is not None
        notice = process.stderr.readline().decode()  # waits for the line, no sleep
        os.write(controller, b"cpu v=1 1\n\x04")  # a line, then Ctrl-D
        out, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    assert "reading line protocol from stdin" in notice and "Ctrl-D" in notice
    assert process.returncode == 0
    assert out == b"cpu v=1.0 1\n"


def test_replay_from_a_pipe_says_nothing_about_stdin(python_env: dict[str, str]) -> None:
    done = aioudf(python_env, "replay", MIRROR, "-q", stdin=b"cpu v=1 1\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "cpu v=1.0 1\n", "")


# ---- replay: recordings -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".srpl", ".brpl"])
def test_an_empty_file_is_not_a_recording(
    python_env: dict[str, str], tmp_path: Path, suffix: str
) -> None:
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    done = aioudf(python_env, "replay", MOVING_AVG, str(empty))
    assert done.returncode != 0
    line = one_error_line(done, "aioudf replay")
    assert f"{empty}: empty file (0 bytes): not a" in line


# ---- replay | head ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["in-process", "process"])
def test_a_closed_output_pipe_ends_the_replay_at_once(
    python_env: dict[str, str], points: Path, transport: str
) -> None:
    # 200 points at 1 s each: without stopping, this replay takes minutes.
    udf = (
        ["udf_handlers:AwaitsSlowly"]
        if transport == "in-process"
        else ["--cmd", f"{sys.executable} -m aioudf run udf_handlers:AwaitsSlowly"]
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "aioudf", "replay", *udf, str(points), "-O", "seconds=1.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=python_env,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()  # as `| head -1` reads
    process.stdout.close()
    try:
        status = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        pytest.fail("the replay went on after its reader had gone")
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert first == b"cpu v=0.0 0\n"
    assert status == 0 and stderr == ""


# ---- settings from the environment ---------------------------------------------------


def test_a_bad_environment_value_is_one_line_naming_the_variable(
    python_env: dict[str, str],
) -> None:
    done = aioudf({**python_env, "AIOUDF_WORKERS": "many"}, "serve", MIRROR, "--socket", "x.sock")
    assert done.returncode == 2
    line = one_error_line(done, "aioudf serve")
    assert line.startswith("aioudf serve: error: AIOUDF_WORKERS='many': ")


def test_the_flag_wins_over_the_environment(python_env: dict[str, str]) -> None:
    # A bad value in the environment does not matter when the flag is given.
    env = {**python_env, "AIOUDF_LOG_LEVEL": "loud", "AIOUDF_MAX_FRAME_SIZE": "0"}
    done = aioudf(env, "run", MIRROR, "--log-level", "info", "--max-frame-size", "100")
    assert done.returncode == 0, done.stderr


def test_settings_come_from_the_environment(python_env: dict[str, str], tmp_path: Path) -> None:
    # AIOUDF_SOCKET makes `aioudf serve` serve there; AIOUDF_MODE sets its mode;
    # a wrong AIOUDF_MAX_BACKLOG is refused by the same check as the flag.
    done = aioudf({**python_env, "AIOUDF_MAX_BACKLOG": "0"}, "run", MIRROR)
    assert done.returncode == 2
    assert "max_backlog=0" in one_error_line(done, "aioudf run")
    path = tmp_path / "env.sock"
    env = {**python_env, "AIOUDF_SOCKET": str(path), "AIOUDF_MODE": "600"}
    server = subprocess.Popen(
        [sys.executable, "-m", "aioudf", "serve", MIRROR],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if "serving" in line:
                break
        assert (path.stat().st_mode & 0o777) == 0o600
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0


def test_the_help_names_each_flags_variable(python_env: dict[str, str]) -> None:
    done = aioudf(python_env, "serve", "--help")
    text = " ".join(done.stdout.split())
    for flag in ("--log-level", "--workers", "--metrics", "--reload", "--grace", "--socket"):
        assert f"(env AIOUDF_{flag[2:].upper().replace('-', '_')};" in text, flag
