"""Shared fixtures: paths, example handlers, and the process environment."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from kapacitord import find_kapacitord

from aioudf.testing import Batch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DATA = Path(__file__).resolve().parent / "data"

# Examples are files a user copies, not a package: make them importable.
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


def assert_batches_keep_their_headers(out: Sequence[Batch], sent: Sequence[Batch]) -> None:
    """Each batch out has the name, group, tags and end time of the batch in; size announced."""
    for got, given in zip(out, sent, strict=True):
        assert (got.name, got.group, got.tags, got.tmax) == (
            given.name,
            given.group,
            given.tags,
            given.tmax,
        )
        assert got.size == len(got.points)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the full-size load tests")


def pytest_configure(config: pytest.Config) -> None:
    # The public kit (aioudf.testing) looks at AIOUDF_KAPACITORD and PATH only:
    # point it at the copy beside the checkout, and make a missing one a
    # failure under CI, as for the tests that use tests/kapacitord.py.
    binary = find_kapacitord()
    if binary is not None:
        os.environ.setdefault("AIOUDF_KAPACITORD", str(binary))
    if os.environ.get("CI") == "true" and config.getoption("--require-kapacitord") is None:
        config.option.require_kapacitord = True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="full-size load test: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (unix socket paths max out at 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="aioudf-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def socket_path(short_tmp: Path) -> Path:
    return short_tmp / "udf.sock"


@pytest.fixture
def python_env() -> dict[str, str]:
    """Environment for child Python processes: finds aioudf and the examples."""
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(EXAMPLES), str(ROOT / "tests")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env
