"""``aioudf serve --reload``: an edit to the handler's file reloads it, tasks carry on."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
from kapacitord import Servers

from aioudf.serving._reload import changes, python_files
from aioudf.testing import Kapacitor

VERSION = """\
import aioudf


class Udf(aioudf.Handler):
    {option} = aioudf.Option(str, default="")

    async def point(self, point):
        await self.emit(point)
"""


def test_python_files_skip_hidden_folders_and_caches(tmp_path: Path) -> None:
    for name in ("udf.py", "pkg/helper.py", ".venv/lib.py", "pkg/__pycache__/x.py", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    found = python_files([str(tmp_path)])
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in found) == [
        "pkg/helper.py",
        "udf.py",
    ]


async def test_polling_sees_an_edit_a_new_file_and_a_removal(tmp_path: Path) -> None:
    (tmp_path / "udf.py").write_text("x = 1\n")
    (tmp_path / "old.py").write_text("y = 1\n")
    baseline = python_files([str(tmp_path)])
    # Changed after the baseline: the first change reported is all three.
    (tmp_path / "udf.py").write_text("x = 22\n")
    (tmp_path / "new.py").write_text("z = 1\n")
    (tmp_path / "old.py").unlink()
    watch = changes([str(tmp_path)], poll=True, interval=0.01, baseline=baseline)
    with anyio.fail_after(10):
        changed = await watch.__anext__()
    assert sorted(Path(p).name for p in changed) == ["new.py", "old.py", "udf.py"]


def options_served(path: Path) -> set[str]:
    """The options the server on ``path`` declares now (a fresh Info)."""
    return set(anyio.run(Kapacitor(path).info).options)


def wait_for_text(log: Path, text: str, timeout: float = 30) -> None:
    """Wait until ``log`` holds ``text``: the processes a reload started write to it too."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {text!r} in:\n{log.read_text()}"
        time.sleep(0.05)  # a log file has no event to await


def test_an_edit_reloads_the_server(python_env: dict[str, str], short_tmp: Path) -> None:
    udf = short_tmp / "app" / "udf.py"
    udf.parent.mkdir()
    udf.write_text(VERSION.format(option="first"))
    servers = Servers(python_env, short_tmp)
    try:
        server = servers.start(f"{udf}:Udf", "--reload")
        server.wait_log("reload: watching .py files under")
        assert options_served(server.path) == {"first"}
        udf.write_text(VERSION.format(option="second"))
        # The SIGHUP path: a new process took over, the old one exited 0.
        assert server.wait() == 0
        assert "reload: " in server.log() and "handed everything over" in server.log()
        assert options_served(server.path) == {"second"}
        # A broken save: one line, the process serving carries on with the code it has.
        udf.write_text("import aioudf\n\nclass Udf(aioudf.Handler:\n")
        wait_for_text(server.log_path, "reload failed")
        assert "Traceback" not in server.log()
        assert options_served(server.path) == {"second"}
    finally:
        servers.kill()
