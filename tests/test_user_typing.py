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


def test_the_stubs_protobuf_needs_come_with_aioudf() -> None:
    requirements = importlib.metadata.requires("aioudf") or []
    names = {re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0] for r in requirements if "extra" not in r}
    assert "types-protobuf" in names


def test_mypy_strict_catches_a_misspelt_field_map(tmp_path: Path) -> None:
    (tmp_path / "typo.py").write_text(textwrap.dedent(HANDLER))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".cache"),
         "--config-file", "", "typo.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'typo.py:7: error: "Point" has no attribute "fieldsDoubel"' in done.stdout, done.stdout
