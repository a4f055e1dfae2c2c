"""mypy --strict on a user's handler catches mistakes in the message types out of the box."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import textwrap
from pathlib import Path

HANDLER = """
import aioudf


class Typo(aioudf.Handler):
    async def point(self, point: aioudf.Point) -> None:
        point.fieldsDoubel["v"] = 1.0
        await self.emit(point)
"""


def _mypy_strict(tmp_path: Path, name: str, code: str) -> subprocess.CompletedProcess[str]:
    """mypy --strict, as a user runs it, on ``code`` written to ``name``."""
    (tmp_path / name).write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".cache"),
         "--config-file", "", name],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_stubs_protobuf_needs_come_with_aioudf() -> None:
    requirements = importlib.metadata.requires("aioudf") or []
    names = {re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0] for r in requirements if "extra" not in r}
    assert "types-protobuf" in names


def test_mypy_strict_catches_a_misspelt_field_map(tmp_path: Path) -> None:
    done = _mypy_strict(tmp_path, "typo.py", HANDLER)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'typo.py:7: error: "Point" has no attribute "fieldsDoubel"' in done.stdout, done.stdout


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


def test_mypy_names_a_misspelt_or_mistyped_setting(tmp_path: Path) -> None:
    # Keyword settings are typed (config.ServerSettings...): an editor completes them
    # and mypy catches a typo before the run-time check would.
    done = _mypy_strict(tmp_path, "settings.py", SETTINGS)
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["13", "14", "15"], done.stdout
    assert 'Unexpected keyword argument "max_backlgo"' in errors[0]
    assert 'did you mean "max_backlog"?' in errors[0]
    assert '"grace"' in errors[1] and '"str"' in errors[1]
    assert 'Unexpected keyword argument "mode" for "Agent"' in errors[2]
