"""A mistake in the user's own module: one line naming file:line and the cause.

``aioudf run`` and ``aioudf serve`` load the handler named ``module:Class``;
a module that cannot be imported (a SyntaxError, an exception at import, a
declaration the handler class refuses) is one error line, never Python's
traceback through importlib. A process UDF still answers Kapacitor, so that
kapacitord's own start-up error names the cause.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from kapacitord import Kapacitord, KapacitordError, ProcessUDF, Servers
from logcapture import parse_logfmt
from standin import request

from aioudf._pb import udf_pb2 as pb
from aioudf.errors import HandlerLoadError
from aioudf.runtime._loader import load_handler
from aioudf.wire._frames import FrameDecoder

BROKEN = '''"""A UDF whose module fails at import."""

import aioudf


class Broken(aioudf.Handler):
    info = udf_pb2.InfoResponse
'''


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_error(spec: str) -> HandlerLoadError:
    with pytest.raises(HandlerLoadError) as caught:
        load_handler(spec)
    return caught.value


def test_an_exception_at_import_names_the_users_line(in_tmp: Path) -> None:
    write(in_tmp, "broken.py", BROKEN)
    error = load_error("broken.py:Broken")
    assert str(error) == (
        "cannot load broken.py:Broken: broken.py:7: NameError: name 'udf_pb2' is not defined"
    )
    assert error.error is None  # raised on the module's own line: nothing more to show


def test_a_syntax_error_names_its_line(in_tmp: Path) -> None:
    write(in_tmp, "syn.py", "import aioudf\n\ndef f(:\n    pass\n")
    message = str(load_error("syn.py:H"))
    assert message.startswith("cannot load syn.py:H: syn.py:3: SyntaxError: ")
    assert message.endswith(": def f(:") and "\n" not in message


def test_a_wrong_default_names_the_option_and_the_users_types(in_tmp: Path) -> None:
    write(
        in_tmp,
        "baddefault.py",
        "import aioudf\n\n\nclass BadDefault(aioudf.Handler):\n"
        "    field = aioudf.Option(str)\n"
        '    alpha = aioudf.Option(float, default="0.5")\n',
    )
    assert str(load_error("baddefault:BadDefault")) == (
        "cannot load baddefault:BadDefault: baddefault.py:6: option 'alpha': "
        "default '0.5' is a str, not a float: give a float or an int"
    )


def test_an_error_raised_deeper_keeps_the_traceback_from_the_users_frame(in_tmp: Path) -> None:
    write(in_tmp, "helpers.py", "def settings():\n    return {}['alpha']\n")
    write(in_tmp, "deep.py", "import helpers\n\nALPHA = helpers.settings()\n")
    error = load_error("deep:Deep")
    # The deepest line of the user's own code, and the frames from theirs on.
    assert str(error) == "cannot load deep:Deep: helpers.py:2: KeyError: 'alpha'"
    assert error.error is not None
    frames = traceback.extract_tb(error.error.__traceback__)
    assert [os.path.basename(frame.filename) for frame in frames] == ["deep.py", "helpers.py"]


def test_a_missing_dependency_of_the_module_is_not_a_missing_module(in_tmp: Path) -> None:
    write(in_tmp, "needs.py", "import aioudf\nimport no_such_dependency\n")
    assert str(load_error("needs:H")) == (
        "cannot load needs:H: needs.py:2: ModuleNotFoundError: No module named 'no_such_dependency'"
    )


# ---- through the command line and a real Kapacitor -------------------------------


#: How each command names the broken module, what it prints, and its exit status:
#: ``aioudf run`` loads a handler, ``aioudf compat`` runs an agent script.
COMMANDS = {
    "run": (["run", "broken:Broken"], "aioudf run: error: cannot load broken:Broken: ", 2),
    "compat": (["compat", "broken.py"], "aioudf compat: error: cannot run broken.py: ", 1),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_process_udf_prints_one_line_and_answers_kapacitor(
    python_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    argv, prefix, status = COMMANDS[command]
    write(tmp_path, "broken.py", BROKEN)
    process = subprocess.Popen(
        [sys.executable, "-m", "aioudf", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=python_env,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(request(info=pb.InfoRequest()))
    process.stdin.flush()
    decoder = FrameDecoder()
    while (body := decoder.next_frame()) is None:
        data = os.read(process.stdout.fileno(), 65536)
        assert data, "stdout closed before the answer"
        decoder.feed(data)
    response = pb.Response.FromString(bytes(body))
    assert response.WhichOneof("message") == "error"
    assert "broken.py:7: NameError: name 'udf_pb2' is not defined" in response.error.error
    process.stdin.close()  # Kapacitor closes stdin: only then does the process end
    assert process.wait(30) == status
    assert process.stderr is not None
    (line,) = process.stderr.read().decode().splitlines()
    assert line == prefix + "broken.py:7: NameError: name 'udf_pb2' is not defined"


@pytest.mark.usefixtures("kapacitord_binary")
@pytest.mark.parametrize("command", COMMANDS)
def test_kapacitord_names_the_cause_when_the_code_cannot_load(
    python_env: dict[str, str], short_tmp: Path, command: str
) -> None:
    module = write(short_tmp, "mymodule.py", BROKEN)
    named = {"run": [f"{module}:Broken"], "compat": [str(module)]}[command]
    udf = ProcessUDF(
        sys.executable,
        ["-u", "-m", "aioudf", command, *named],
        env={"PYTHONPATH": python_env["PYTHONPATH"]},
    )
    k = Kapacitord(short_tmp / "k", {"broken": udf})
    with pytest.raises(KapacitordError, match="kapacitord exited"):
        k.start()
    k.stop()
    said = k.log() + (short_tmp / "k" / "kapacitord.stderr").read_text(errors="replace")
    cause = {"run": f"cannot load {module}:Broken: ", "compat": f"cannot run {module}: "}
    assert f'failed to load process info for "broken": {cause[command]}' in said
    assert "mymodule.py:7: NameError: name 'udf_pb2' is not defined" in said
    assert "broken pipe" not in said
    udf_log = [e for e in map(parse_logfmt, k.log().splitlines()) if e.get("msg") == "UDF log"]
    assert len(udf_log) == 1, udf_log


def test_a_failed_reload_is_one_line(python_env: dict[str, str], short_tmp: Path) -> None:
    module = write(short_tmp, "udf.py", "from mirror import Mirror\n")
    servers = Servers(python_env, short_tmp)
    try:
        server = servers.start(f"{module}:Mirror")
        server.wait_log("serving ")
        write(short_tmp, "udf.py", BROKEN.replace("class Broken", "class Mirror"))
        server.process.send_signal(signal.SIGHUP)
        server.wait_log("reload failed")
        assert server.process.poll() is None  # still serving with the code it had
        assert "Traceback" not in server.log()
        (line,) = [line for line in server.log().splitlines() if "udf_pb2" in line]
        assert line == (
            f"aioudf serve: error: cannot load {module}:Mirror: "
            f"{module}:7: NameError: name 'udf_pb2' is not defined"
        )
    finally:
        servers.kill()
