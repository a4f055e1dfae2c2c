"""Load a handler named on a command line: ``module:Class`` or ``path/file.py:Class``.

A leaf module: ``aioudf run``/``serve``/``replay`` and anything else that takes a
handler by name use :func:`load_handler`, and it imports nothing of aioudf but
the handler base class and the errors.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable

from .errors import AioudfError
from .handler import BaseHandler

__all__ = ["load_handler"]


def load_handler(spec: str) -> Callable[[], BaseHandler]:
    """Import ``module:Class`` or ``file.py:Class`` and return the class."""
    target, sep, attribute = spec.rpartition(":")
    if not sep or not target or not attribute:
        raise AioudfError(f"expected MODULE:CLASS or FILE.py:CLASS, got {spec!r}")
    if target.endswith(".py") or os.sep in target:
        path = os.path.abspath(target)
        if not os.path.exists(path):
            raise AioudfError(f"no such file: {target}")
        name = os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise AioudfError(f"cannot import {target}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules.setdefault(name, module)
        module_spec.loader.exec_module(module)
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise AioudfError(f"cannot import module {target!r}: {exc}") from None
    try:
        factory = getattr(module, attribute)
    except AttributeError:
        raise AioudfError(f"module {target!r} has no attribute {attribute!r}") from None
    if isinstance(factory, type) and not issubclass(factory, BaseHandler):
        raise AioudfError(f"{spec} is not an aioudf handler class")
    if not callable(factory):
        raise AioudfError(f"{spec} is not callable")
    result: Callable[[], BaseHandler] = factory
    return result
