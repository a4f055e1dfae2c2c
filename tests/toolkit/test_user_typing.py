"""mypy --strict on a user's handler catches mistakes in the message types out of the box."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import textwrap

import pytest

HANDLER = """
import aioudf


class Typo(aioudf.Handler):
    async def point(self, point: aioudf.Point) -> None:
        point.fieldsDoubel["v"] = 1.0
        await self.emit(point)
"""


SETTINGS = """
import aioudf
from aioudf.lowlevel import Agent
from aioudf.testing import MemoryPipe


class H(aioudf.Handler):
    pass


async def main() -> None:
    aioudf.UnixServer(H, "udf.sock", max_backlog=5, grace=1.0, warn_blocked=0.5)
    aioudf.UnixServer(H, "udf.sock", max_backlgo=5)
    await aioudf.serve(H, "udf.sock", grace="2")
    Agent(H(), MemoryPipe(), MemoryPipe(), mode=0o600)
    aioudf.run(H, max_output=4096, warn_blocked=0)
"""


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy --strict, as a user runs it, once over every file here: its errors by file."""
    folder = tmp_path_factory.mktemp("user_typing")
    files = {"typo.py": HANDLER, "settings.py": SETTINGS}
    for name, code in files.items():
        (folder / name).write_text(textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(folder / ".cache"),
         "--config-file", "", *files],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 2: mypy itself failed
    lines = [line for line in done.stdout.splitlines() if ": error:" in line]
    return {name: [line for line in lines if line.startswith(f"{name}:")] for name in files}


def test_the_stubs_protobuf_needs_come_with_aioudf() -> None:
    requirements = importlib.metadata.requires("aioudf") or []
    names = {re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0] for r in requirements if "extra" not in r}
    assert "types-protobuf" in names


def test_mypy_strict_catches_a_misspelt_field_map(mypy_errors: dict[str, list[str]]) -> None:
    errors = mypy_errors["typo.py"]
    assert len(errors) == 1, errors
    assert errors[0].startswith('typo.py:7: error: "Point" has no attribute "fieldsDoubel"')


def test_mypy_names_a_misspelt_or_mistyped_setting(mypy_errors: dict[str, list[str]]) -> None:
    # Keyword settings are typed (config.ServerSettings...): an editor completes them
    # and mypy catches a typo before the run-time check would.
    errors = mypy_errors["settings.py"]
    assert [line.split(":")[1] for line in errors] == ["13", "14", "15"], errors
    assert 'Unexpected keyword argument "max_backlgo"' in errors[0]
    assert 'did you mean "max_backlog"?' in errors[0]
    assert '"grace"' in errors[1] and '"str"' in errors[1]
    assert 'Unexpected keyword argument "mode" for "Agent"' in errors[2]
