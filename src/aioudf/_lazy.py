"""Names of a package that load their module on first use.

``import aioudf`` must not load the serving stack, and ``aioudf run`` must not
load the replay engine: those packages name what they offer, and the module
that defines a name is imported when the name is first looked up (PEP 562).
mypy reads the same names from imports under ``if TYPE_CHECKING:`` beside
the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, table: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for ``table`` (name -> module).

    Modules are relative to ``package`` (``"._command"``); a name found once is
    stored in the package, so later lookups skip ``__getattr__``.
    """
    namespace = import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__
