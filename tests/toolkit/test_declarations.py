"""A handler's declarations are checked when its class is defined, not at the first Init."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aioudf import Handler, Option, ValueType
from aioudf.errors import DeclarationError


@pytest.mark.parametrize(
    ("types", "default", "message"),
    [
        ((int,), "ten", "option 'size': default 'ten' is a str, not an int: give an int"),
        ((int,), True, "default True is a bool, not an int: give an int"),
        ((float,), "1.5", "default '1.5' is a str, not a float: give a float or an int"),
        ((str,), 3, "default 3 is an int, not a str: give a str"),
        ((datetime.timedelta,), 10, "default 10 is an int, not a timedelta: give a timedelta"),
        ((ValueType.DOUBLE,), "x", "default 'x' is a str, not a ValueType.DOUBLE"),
        ((str, float), "x", "option 'size': default must be a tuple of 2 values, got 'x'"),
        ((str, float), ("x", "y"), "value 2 of the default 'y' is a str, not a float"),
        ((), "yes", "option 'size': a flag's default is True or False, got 'yes'"),
        ((list,), None, "unsupported value type list: use bool, int, float, str"),
    ],
)
def test_a_default_of_the_wrong_type_fails_the_class(
    types: tuple[Any, ...], default: Any, message: str
) -> None:
    # The option's name, the types as the user wrote them, and where.
    line = sys._getframe().f_lineno
    with pytest.raises(DeclarationError) as caught:

        class Bad(Handler):
            size = Option(*types, default=default)

    assert message in caught.value.reason
    assert isinstance(caught.value, TypeError)
    assert str(caught.value).endswith(f" (at {__file__}:{line + 4})")


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
    # Plain Python's traceback shows the class line; the message, the declaration's.
    assert "DeclarationError: option 'n': default 'ten' is a str, not an int" in done.stderr
    assert f"(at {tmp_path / 'udf.py'}:4)" in done.stderr
