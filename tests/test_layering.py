"""The package's imports point one way: no cycles, leaves stay leaves.

Read from the source with ``ast`` (nothing is imported), so a new cycle fails
here with the modules that form it, before it shows up as an ImportError that
depends on which module happened to be imported first. Imports under
``if TYPE_CHECKING:`` are annotations only and never run; they are left out.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "aioudf"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The aioudf modules ``module`` imports when it runs (at any depth)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "aioudf")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "aioudf":
                submodules = {f"{target}.{a.name}" for a in node.names} & known
                found.update(submodules)  # ``from . import cli`` imports a module
                if len(submodules) < len(node.names):
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in known and name != module}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "_pb" not in p.parts}
    known = set(files)
    return {
        name: _imports(ast.parse(path.read_text()), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_the_import_graph_is_read() -> None:
    graph = _graph()
    assert "aioudf.agent" in graph["aioudf.process"]
    assert "aioudf.replay.engine" in graph["aioudf.replay.command"]
    assert "aioudf.replay_cli" in graph["aioudf.cli"]


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        # leaves: what everything else builds on
        ("aioudf.errors", set()),
        ("aioudf.streams", set()),
        ("aioudf.lineformat", set()),
        ("aioudf._version", set()),
        # the one loader of module:Class / file.py:Class
        ("aioudf.loader", {"aioudf.errors", "aioudf.handler"}),
        # the handler does not know the agent that runs it; it knows the
        # toolkit's per-group state and start-up hooks it installs
        (
            "aioudf.handler",
            {
                "aioudf.errors",
                "aioudf.messages",
                "aioudf.options",
                "aioudf.startup",
                "aioudf.state",
            },
        ),
        # the replay flags are argparse only; the engine loads when replay runs
        ("aioudf.replay_cli", {"aioudf.replay.command"}),
    ],
)
def test_leaf_modules_import_only_what_they_may(module: str, allowed: set[str]) -> None:
    assert _graph()[module] <= allowed


@pytest.mark.parametrize("transport", ["aioudf.stdio", "aioudf.streams"])
def test_transports_do_not_import_the_agent(transport: str) -> None:
    assert "aioudf.agent" not in _graph()[transport]


def test_importing_aioudf_does_not_load_the_replay_engine() -> None:
    code = (
        "import sys, aioudf; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('aioudf.replay.', 'aioudf.testing'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_help_of_the_package_is_short_and_free_of_protobuf_dumps() -> None:
    text = subprocess.run(
        [sys.executable, "-c", "import aioudf; help(aioudf)"],
        capture_output=True,
        text=True,
        check=True,
        env={"PAGER": "cat", "TERM": "dumb", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "class Handler" in text and "def run" not in text  # rendered, not source
    assert "ByteSize" not in text  # protobuf's generated methods
    assert len(text.splitlines()) < 600


def test_the_public_api_and_the_old_low_level_names() -> None:
    import aioudf
    import aioudf.lowlevel

    for name in ("Handler", "BlockingHandler", "Option", "Point", "BeginBatch", "EndBatch"):
        assert hasattr(aioudf, name)
    for name in ("InitError", "RestoreError", "AioudfError", "make_point", "UnixServer"):
        assert hasattr(aioudf, name)
    # names that moved to aioudf.lowlevel keep working from aioudf
    for name in ("Agent", "FrameDecoder", "UDFConnection", "encode_frame", "LoopWatchdog"):
        assert getattr(aioudf, name) is getattr(aioudf.lowlevel, name)
    with pytest.raises(AttributeError, match="no attribute 'Agnet'"):
        _ = aioudf.Agnet


def test_every_exception_class_is_defined_in_errors() -> None:
    import aioudf.errors

    defined_elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if "_pb" in path.parts or path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {ast.unparse(b) for b in node.bases}
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    defined_elsewhere.append(f"{path.name}:{node.name}")
    assert defined_elsewhere == []
    documented = aioudf.errors.__doc__ or ""
    for name in aioudf.errors.__all__:
        assert name in documented  # the docstring's tree names every class


def test_no_absolute_path_of_a_machine_in_the_repository() -> None:
    root = PACKAGE.parent.parent
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    machine_paths = re.compile(r"(?<![\w.])/(?:work|home|Users|root|tmp/aioudf)/\w")
    found = []
    for name in tracked:
        path = root / name
        if path.suffix in {".srpl", ".brpl", ".gz", ".bin", ".pyc"} or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}: {m.group()}" for m in machine_paths.finditer(text)]
    assert found == []
