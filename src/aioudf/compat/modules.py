"""``kapacitor.udf.agent`` and ``kapacitor.udf.udf_pb2``, provided by aioudf.

:func:`provide_kapacitor_modules` puts aioudf's modules into ``sys.modules``
under the names a script written for Kapacitor's Python agent imports, so
that they take precedence over a real agent that ``PYTHONPATH`` may also
hold (kapacitor.conf files often set it): ``import kapacitor.udf.agent``
finds :mod:`aioudf.compat.agent`, and ``from kapacitor.udf import udf_pb2``
finds aioudf's own generated module, so there is one set of message
classes in the process (one descriptor pool). The two packages,
``kapacitor`` and ``kapacitor.udf``, search the folders of a real install if
there is one, so any other module of theirs still imports from it.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from collections.abc import Sequence

from .._pb import udf_pb2
from . import agent

__all__ = ["provide_kapacitor_modules"]

# What a script imports, by module name.
_PROVIDED: dict[str, types.ModuleType] = {
    "kapacitor.udf.agent": agent,
    "kapacitor.udf.udf_pb2": udf_pb2,
}


def _package(name: str, search: Sequence[str] | None) -> types.ModuleType:
    """An empty package ``name``, searching the real package's folders if it is installed."""
    spec = importlib.machinery.PathFinder.find_spec(name, search)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    package = types.ModuleType(name, f"{name}, as aioudf compat provides it")
    package.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    package.__spec__.submodule_search_locations = locations
    package.__path__ = locations
    package.__package__ = name
    return package


def provide_kapacitor_modules() -> None:
    """Make ``kapacitor.udf.agent`` and ``kapacitor.udf.udf_pb2`` aioudf's, in this process."""
    kapacitor = _package("kapacitor", None)
    udf = _package("kapacitor.udf", kapacitor.__path__)
    kapacitor.udf = udf  # type: ignore[attr-defined]
    for name, module in _PROVIDED.items():
        setattr(udf, name.rpartition(".")[2], module)
    sys.modules.update({"kapacitor": kapacitor, "kapacitor.udf": udf, **_PROVIDED})
