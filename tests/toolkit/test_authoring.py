"""docs/authoring.md runs: every python block imports, and its test_* functions pass."""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
import types
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "authoring.md"
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)


def test_the_guide_has_its_code_blocks() -> None:
    assert len(BLOCKS) >= 7


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_each_block_runs(number: int, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType(f"authoring_block_{number}")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # as an import would
    code = compile(BLOCKS[number], f"{GUIDE.name}, block {number + 1}", "exec")
    exec(code, module.__dict__)
    for name, function in vars(module).items():
        if name.startswith("test_") and callable(function):
            result = function()
            if inspect.iscoroutine(result):
                asyncio.run(result)
