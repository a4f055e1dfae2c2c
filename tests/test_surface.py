"""What ``import aioudf`` gives a handler author: what loads, what help() shows.

Each check that depends on what is already imported runs in a fresh
interpreter, since this test process has loaded everything by now.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aioudf
import aioudf.errors
import aioudf.lowlevel
import aioudf.replay
import aioudf.serving._server
import aioudf.testing

INIT = Path(aioudf.__file__)

# The serving stack and the tools: none of them is needed to write, import
# or unit-test a handler, and each costs start-up time (cli alone pulls in
# argparse, the server, the supervisor and metrics).
SERVING = (
    "aioudf.serving._activation",
    "aioudf.cli",
    "aioudf.serving._handover",
    "aioudf.serving._metrics",
    "aioudf.serving._process",
    "aioudf.replay",
    "aioudf.replay._flags",
    "aioudf.serving._server",
    "aioudf.serving._supervisor",
    "aioudf.testing",
)


def _fresh(code: str) -> str:
    """Run ``code`` in a new interpreter; its stdout."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def _loaded_after(code: str) -> list[str]:
    out = _fresh(f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))")
    return [m for m in out.split() if m.partition(".")[0] == "aioudf"]


def _serving(modules: list[str]) -> list[str]:
    return [m for m in modules if m in SERVING or m.startswith(tuple(f"{s}." for s in SERVING))]


def test_importing_aioudf_loads_no_serving_module() -> None:
    loaded = _loaded_after("import aioudf")
    assert "aioudf.toolkit._handler" in loaded  # the check reads the right interpreter
    assert _serving(loaded) == []


def test_a_handler_module_and_its_toolkit_load_no_serving_module() -> None:
    code = (
        "import aioudf\n"
        "class Scale(aioudf.BatchHandler):\n"
        "    factor = aioudf.Option(float, default=1.0)\n"
        "aioudf.make_point('cpu', {'v': 1.0}); aioudf.TimeWindow; aioudf.per_group\n"
    )
    assert _serving(_loaded_after(code)) == []


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("serve", "aioudf.serving._server"),
        ("UnixServer", "aioudf.serving._server"),
        ("run", "aioudf.serving._process"),
    ],
)
def test_a_runner_loads_its_module_when_first_used(name: str, module: str) -> None:
    loaded = _loaded_after(f"import aioudf\naioudf.{name}")
    assert module in loaded
    assert "aioudf.testing" not in loaded and "aioudf.replay._engine" not in loaded


def test_the_lazy_names_are_the_objects_of_their_modules() -> None:
    import aioudf.cli
    import aioudf.serving._process

    assert aioudf.main is aioudf.cli.main
    assert aioudf.run is aioudf.serving._process.run
    assert aioudf.serve is aioudf.serving._server.serve
    assert aioudf.UnixServer is aioudf.serving._server.UnixServer
    from aioudf import UnixServer, serve

    assert (UnixServer, serve) == (aioudf.serving._server.UnixServer, aioudf.serving._server.serve)
    for name in ("Agent", "FrameDecoder", "UDFConnection", "encode_frame", "LoopWatchdog"):
        assert getattr(aioudf, name) is getattr(aioudf.lowlevel, name)  # moved there
    assert {"main", "run", "serve", "UnixServer", "Agent"} <= set(dir(aioudf))
    with pytest.raises(AttributeError, match="no attribute 'Agnet'"):
        _ = aioudf.Agnet


@pytest.mark.parametrize("package", [aioudf, aioudf.replay], ids=lambda p: p.__name__)
def test_mypy_sees_every_lazy_name(package: Any) -> None:
    # The names under ``if TYPE_CHECKING:`` in __init__.py (what mypy reads)
    # are exactly the ones __getattr__ resolves (what runs).
    typed: set[str] = set()
    for node in ast.walk(ast.parse(Path(package.__file__).read_text())):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                typed.update(alias.asname or alias.name for alias in statement.names)
    assert typed == set(package._LAZY)


def test_the_handler_authors_names_are_all_importable() -> None:
    for name in aioudf.__all__:
        assert getattr(aioudf, name) is not None
    for name in ("Point", "BeginBatch", "EndBatch", "InitError", "RestoreError", "AioudfError"):
        assert hasattr(aioudf, name)
    for name in ("BatchHandler", "PointBatch", "per_group", "TimeWindow", "startup"):
        assert hasattr(aioudf, name)


def test_help_of_the_package_is_short_and_shows_the_runners() -> None:
    text = subprocess.run(
        [sys.executable, "-c", "import aioudf; help(aioudf)"],
        capture_output=True,
        text=True,
        check=True,
        env={"PAGER": "cat", "TERM": "dumb", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "class Handler" in text and "class Option" in text  # rendered, not source
    for runner in ("main(handler_factory", "run(handler_factory", "serve(handler_factory"):
        assert runner in text  # loaded for help, although lazily
    assert "ByteSize" not in text  # protobuf's generated methods
    # At most 400 lines (398 on Python 3.11, from 598 before the layout by
    # layer): PACKAGE CONTENTS lists the layers, not 41 flat modules; Option
    # is generic for type checkers only; BlockingHandler's methods are
    # documented once, on Handler. Most of what is left is inherited:
    # property's members on Option, BaseHandler's on both handler classes.
    assert len(text.splitlines()) <= 400


# ---- errors.py types what errors carry without importing it ------------------


def _public_members(cls: type) -> set[str]:
    """Attributes, properties and methods of instances of ``cls`` (no constructors)."""
    names = {
        name
        for name, _ in inspect.getmembers(cls)
        if not name.startswith("_")
        and not isinstance(inspect.getattr_static(cls, name), classmethod)
    }
    names.update(getattr(cls, "__dataclass_fields__", {}))  # fields without a class default
    if hasattr(cls, "__len__"):
        names.add("__len__")
    return names


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [
        (aioudf.errors.TaskOutput, aioudf.testing.Result),
        (aioudf.errors.OutputPoint, aioudf.testing.DataPoint),
        (aioudf.errors.OutputBatch, aioudf.testing.Batch),
    ],
    ids=lambda c: c.__name__,
)
def test_the_error_protocols_cover_what_the_test_kit_gives(
    protocol: type, implementation: type
) -> None:
    # UDFError.result is typed with protocols written in errors.py (which
    # imports nothing of aioudf); a member the test kit adds must be added
    # there too, or a user's `err.result...` stops type-checking.
    declared = {n for n in vars(protocol) if not n.startswith("_") or n == "__len__"}
    assert _public_members(implementation) <= declared
