"""A handler's declarations are checked when its class is defined, not at the first Init."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aioudf import Handler, Option


@pytest.mark.parametrize(
    ("types", "default", "message"),
    [
        ((int,), "ten", "Option(int): default 'ten' does not fit INT: give int"),
        ((int,), True, "default True does not fit INT"),
        ((float,), "1.5", "default '1.5' does not fit DOUBLE: give float or int"),
        ((str,), 3, "default 3 does not fit STRING"),
        ((datetime.timedelta,), 10, "default 10 does not fit DURATION: give timedelta"),
        ((str, float), "x", "Option(string, double): default must be a tuple of 2 values"),
        ((str, float), ("x", "y"), "default 'y' does not fit DOUBLE"),
        ((), "yes", "a flag's default is True or False, got 'yes'"),
    ],
)
def test_a_default_of_the_wrong_type_fails_the_class(
    types: tuple[Any, ...], default: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):

        class Bad(Handler):
            size = Option(*types, default=default)


@pytest.mark.parametrize(
    ("types", "default"),
    [
        ((int,), 10),
        ((float,), 2),  # an int is a fine DOUBLE
        ((float,), 2.5),
        ((str,), None),  # "not given" as a default
        ((datetime.timedelta,), datetime.timedelta(seconds=10)),
        ((str, float), ("x", 1.0)),
        ((), True),
    ],
)
def test_defaults_that_fit_are_accepted(types: tuple[Any, ...], default: Any) -> None:
    class Good(Handler):
        size = Option(*types, default=default)

    assert Good.options["size"].default == default


def test_the_mistake_fails_at_import(tmp_path: Path) -> None:
    (tmp_path / "udf.py").write_text(
        "import aioudf\n\nclass H(aioudf.Handler):\n    n = aioudf.Option(int, default='ten')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import udf"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "TypeError: Option(int): default 'ten' does not fit INT" in done.stderr
    assert 'udf.py", line 4' in done.stderr  # the traceback points at the declaration
