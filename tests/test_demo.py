"""The README's first command, ``bash scripts/demo.sh``, as a user runs it (twice)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from kapacitord import free_port
from scrape import parse, scrape, value

from aioudf.testing import DataPoint, Kapacitor


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


def test_demo_installs_only_what_it_needs_and_tests_top_it_up(tmp_path: Path) -> None:
    # A virtual environment whose pip only notes what it was asked to install
    # (and links the aioudf already installed here): what the scripts ask for.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    asked = tmp_path / "pip.log"
    python = Path(sys.executable)
    (venv / "bin" / "python").write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "-m pip" ]; then\n'
        f'    echo "$@" >> {asked}\n'
        f"    ln -sf {python.parent / 'aioudf'} {venv / 'bin' / 'aioudf'}\n"
        "    exit 0\n"
        "fi\n"
        f'exec {python} "$@"\n'
    )
    (venv / "bin" / "python").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "PYTHONPATH", "EXTRAS")}
    env["VENV"] = str(venv)

    def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(ROOT / "scripts" / name), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    first = script("demo.sh")
    assert first.returncode == 0, first.stderr
    assert "897 points in, 897 points out" in first.stderr
    assert f"installing aioudf [replay] into {venv}" in first.stderr
    assert asked.read_text().splitlines() == [
        "-m pip install --quiet --disable-pip-version-check -e .[replay]"
    ]
    assert script("demo.sh").returncode == 0  # installed: nothing asked again
    assert len(asked.read_text().splitlines()) == 1

    tests = script("test.sh", "-q", "--co", "-p", "no:cacheprovider", "tests/test_layering.py")
    assert tests.returncode == 0, tests.stderr
    assert asked.read_text().splitlines()[1:] == [
        "-m pip install --quiet --disable-pip-version-check -e .[dev]"
    ]
    again = script("demo.sh")  # the development extras hold what the demo needs
    assert again.returncode == 0 and "installing" not in again.stderr
    assert len(asked.read_text().splitlines()) == 2


# ---- the Dockerfile's command, run here (there is no Docker engine in CI) ---------------


def dockerfile_command() -> str:
    text = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert cmd[:2] == ["sh", "-c"]
    assert re.search(r'^RUN pip install "\.\[.*metrics.*\]"$', text, re.MULTILINE)
    return str(cmd[2])


def test_dockerfile_serves_a_derived_images_handler_with_metrics(
    short_tmp: Path, python_env: dict[str, str]
) -> None:
    # What a derived image sets: its own handler, by file; the socket; metrics.
    port = free_port()
    env = {
        **python_env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "UDF_HANDLER": str(ROOT / "examples" / "moving_avg.py") + ":MovingAvg",
        "UDF_SOCKET": str(short_tmp / "udf.sock"),
        "UDF_METRICS": f"127.0.0.1:{port}",
    }
    server = subprocess.Popen(
        ["sh", "-c", dockerfile_command()], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:  # its log says when it serves
            if "serving MovingAvg on" in line:
                break
        result = Kapacitor(str(short_tmp / "udf.sock")).run_sync(
            {"field": "v", "size": 2},
            points=[DataPoint("m", {"v": v}, time=t) for t, v in enumerate([1.0, 3.0])],
        )
        assert [p.fields["avg"] for p in result.points] == [1.0, 2.0]
        assert value(parse(scrape(port)), "aioudf_connections_total") >= 2  # Info, then the task
        assert (short_tmp / "udf.sock").stat().st_mode & 0o777 == 0o666
    finally:
        server.terminate()  # docker stop
        assert server.wait(30) == 0  # PID 1 was aioudf itself: `exec`
    assert not (short_tmp / "udf.sock").exists()
