"""The README's first command, ``bash scripts/demo.sh``, as a user runs it (twice)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import ROOT


def demo(tmp: Path, out: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "PYTHONPATH")}
    if out is not None:
        env["OUT"] = str(out)
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        capture_output=True,
        text=True,
        env={**env, "TMPDIR": str(tmp)},
        timeout=300,
    )


def test_demo_replays_the_recording_installs_once_and_leaves_nothing(tmp_path: Path) -> None:
    # First run (installs if .venv is not up to date): the output kept where asked.
    kept = tmp_path.parent / f"{tmp_path.name}-averages.lp"
    first = demo(tmp_path, out=kept)
    assert first.returncode == 0, first.stderr
    assert f"of 897 in {kept}:" in first.stdout
    assert len(kept.read_text().splitlines()) == 897
    kept.unlink()
    # Second run: nothing to install, and no temporary file left behind.
    again = demo(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "installing" not in again.stderr
    assert "897 points in, 897 points out" in again.stderr
    lines = again.stdout.splitlines()
    assert "First moving averages (line protocol), of 897:" in lines
    assert lines[-1].startswith("cpu,cpu=cpu-total,host=server03 avg=")
    assert list(tmp_path.iterdir()) == []
