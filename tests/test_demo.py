"""The README's first command, ``bash scripts/demo.sh``, as a user runs it (twice)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import ROOT


def demo(tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "PYTHONPATH")}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        capture_output=True,
        text=True,
        env={**env, "TMPDIR": str(tmp)},
        timeout=300,
    )


def test_demo_replays_the_recording_installs_once_and_leaves_nothing(tmp_path: Path) -> None:
    demo(tmp_path)  # installs if .venv is not up to date with pyproject.toml
    again = demo(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "installing" not in again.stderr  # nothing to install the second time
    assert "897 points in, 897 points out" in again.stderr
    lines = again.stdout.splitlines()
    assert "First moving averages (line protocol), of 897:" in lines
    assert lines[-1].startswith("cpu,cpu=cpu-total,host=server03 avg=")
    assert list(tmp_path.iterdir()) == []  # the temporary output file is gone


def test_demo_keeps_the_output_where_asked(tmp_path: Path) -> None:
    out = tmp_path / "averages.lp"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        capture_output=True,
        text=True,
        env={**env, "OUT": str(out)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"of 897 in {out}:" in done.stdout
    assert len(out.read_text().splitlines()) == 897
