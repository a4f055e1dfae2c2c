"""The ``kapacitor`` fixture in a user's own project, with pytest as they configure it.

Each case writes a small project (a handler and its tests) to a temporary
directory and runs pytest there in a child process, as the user would: no
``asyncio_mode`` set (pytest-asyncio's default is strict), pytest-asyncio
not loaded at all, auto mode, and tests marked for pytest-asyncio or anyio.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HANDLER = """
import aioudf


class Double(aioudf.Handler):
    field = aioudf.Option(str, default="value")

    async def point(self, point: aioudf.Point) -> None:
        point.fieldsDouble[self.field] *= 2
        await self.emit(point)
"""

TESTS = """
import pytest

from aioudf.testing import DataPoint
from double import Double

POINTS = [DataPoint("cpu", {"value": 1.5}, time=1)]


async def test_async_with_nothing_configured(kapacitor):
    result = await kapacitor(Double).run(points=POINTS)
    assert [p.fields["value"] for p in result.points] == [3.0]


async def test_async_process_udf(kapacitor):
    udf = kapacitor([sys.executable, "-c", "import aioudf, double; aioudf.run(double.Double)"])
    result = await udf.run(points=POINTS)
    assert [p.fields["value"] for p in result.points] == [3.0]


def test_sync(kapacitor):
    result = kapacitor(Double).run_sync(points=POINTS)
    assert [p.fields["value"] for p in result.points] == [3.0]
"""

MARKED = """
import pytest

from aioudf.testing import DataPoint
from double import Double


@pytest.mark.asyncio
async def test_marked_for_pytest_asyncio(kapacitor):
    result = await kapacitor(Double).run(points=[DataPoint("cpu", {"value": 2.0}, time=1)])
    assert result.points[0].fields["value"] == 4.0


@pytest.mark.anyio
async def test_marked_for_anyio(kapacitor):
    result = await kapacitor(Double).run(points=[DataPoint("cpu", {"value": 2.0}, time=1)])
    assert result.points[0].fields["value"] == 4.0
"""


def project(root: Path, *, marked: bool = False) -> Path:
    (root / "double.py").write_text(textwrap.dedent(HANDLER))
    (root / "test_double.py").write_text("import sys\n" + textwrap.dedent(TESTS))
    if marked:
        (root / "test_marked.py").write_text(textwrap.dedent(MARKED))
    # A project of its own: pytest must not find this repository's settings.
    (root / "pytest.ini").write_text("[pytest]\n")
    return root


def run_pytest(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), **(env or {})},
    )


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(["-p", "no:asyncio", "-p", "no:anyio"], id="no-async-plugin"),
        pytest.param(["-o", "asyncio_mode=auto"], id="pytest-asyncio-auto"),
    ],
)
def test_async_tests_run_in_a_fresh_project(tmp_path: Path, settings: list[str]) -> None:
    done = run_pytest(project(tmp_path), *settings)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout, done.stdout
    assert "skipped" not in done.stdout and "not natively supported" not in done.stdout
    assert "never awaited" not in done.stdout + done.stderr


def test_strict_default_runs_ours_and_leaves_marked_tests_to_their_plugin(tmp_path: Path) -> None:
    done = run_pytest(project(tmp_path, marked=True))  # pytest-asyncio loaded, strict mode
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout, done.stdout
    assert "never awaited" not in done.stdout + done.stderr


E2E_TESTS = """
from aioudf.testing import AsyncKapacitord, DataPoint

from double import Double

TICK = "stream\\n    |from().measurement('cpu')\\n    @double()\\n    |httpOut('out')\\n"


def test_fixture(kapacitord):
    k = kapacitord(double=Double)
    k.define_task("t", TICK)
    k.write([DataPoint("cpu", {"value": 1.25}, time=10**9)])
    assert k.wait_points("t", "out") == [DataPoint("cpu", {"value": 2.5}, time=10**9)]


async def test_async_kit():
    async with AsyncKapacitord(udfs={"double": Double}) as k:
        await k.define_task("t", TICK)
        await k.write([DataPoint("cpu", {"value": 0.5}, time=10**9)])
        points = await k.wait_points("t", "out")
        assert points == [DataPoint("cpu", {"value": 1.0}, time=10**9)]
"""


def e2e_project(root: Path) -> Path:
    (root / "double.py").write_text(textwrap.dedent(HANDLER))
    (root / "test_e2e.py").write_text(E2E_TESTS)
    (root / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    return root


def test_without_kapacitord_the_end_to_end_tests_skip_saying_how_to_get_one(
    tmp_path: Path,
) -> None:
    root = e2e_project(tmp_path)
    done = run_pytest(root, "-rs")  # PATH holds no kapacitord, nor does the environment
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 skipped" in done.stdout, done.stdout
    assert done.stdout.count("no kapacitord found: get kapacitord") == 2, done.stdout
    assert "AIOUDF_KAPACITORD" in done.stdout and "--kapacitord=PATH" in done.stdout

    required = run_pytest(root, "--require-kapacitord")
    assert required.returncode == 1, required.stdout + required.stderr
    assert required.stdout.count("no kapacitord found") == 4, required.stdout  # 2 x (head, summary)
    assert "During handling" not in required.stdout


def test_kapacitord_option_runs_them(tmp_path: Path, kapacitord_binary: Path) -> None:
    done = run_pytest(e2e_project(tmp_path), f"--kapacitord={kapacitord_binary}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout


def test_a_wrong_kapacitord_path_is_an_error_not_a_skip(tmp_path: Path) -> None:
    root = e2e_project(tmp_path)
    done = run_pytest(root, f"--kapacitord={tmp_path / 'nope'}")
    assert done.returncode == 4, done.stdout + done.stderr  # a usage error
    assert f"--kapacitord {tmp_path / 'nope'}: not an executable file" in done.stderr

    env = {"AIOUDF_KAPACITORD": str(tmp_path / "nope")}
    done = run_pytest(root, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"AIOUDF_KAPACITORD ({tmp_path / 'nope'}) is not an executable kapacitord" in (
        done.stdout
    )
