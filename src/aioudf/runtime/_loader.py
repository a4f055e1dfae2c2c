"""Load a handler named on a command line: ``module:Class`` or ``path/file.py:Class``.

A leaf module: ``aioudf run``/``serve``/``replay`` and anything else that takes a
handler by name use :func:`load_handler`, and it imports nothing of aioudf but
the handler base class and the errors.

Whatever goes wrong is one :class:`~aioudf.errors.HandlerLoadError` whose
message is one line naming the place in the user's code: a SyntaxError, an
exception raised while the module runs, a declaration the handler class
refuses (``Option(float, default="0.5")``) all read
``cannot load SPEC: file.py:LINE: Cause: text``. The exception comes along
(``HandlerLoadError.error``, its traceback from the user's first frame on)
only when it was raised below the module's own line, where the traceback
says more.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable
from types import ModuleType, TracebackType

from ..errors import DeclarationError, HandlerLoadError
from ..toolkit._handler import BaseHandler

__all__ = ["handler_path", "load_handler"]


def load_handler(spec: str) -> Callable[[], BaseHandler]:
    """Import ``module:Class`` or ``file.py:Class`` and return the class.

    Raises :class:`~aioudf.errors.HandlerLoadError` (one line) for any failure.
    """
    target, sep, attribute = spec.rpartition(":")
    if not sep or not target or not attribute:
        raise HandlerLoadError(f"expected MODULE:CLASS or FILE.py:CLASS, got {spec!r}")
    module = _import(spec, target)
    try:
        factory = getattr(module, attribute)
    except AttributeError:
        raise HandlerLoadError(f"module {target!r} has no attribute {attribute!r}") from None
    if isinstance(factory, type) and not issubclass(factory, BaseHandler):
        raise HandlerLoadError(f"{spec} is not an aioudf handler class")
    if not callable(factory):
        raise HandlerLoadError(f"{spec} is not callable")
    result: Callable[[], BaseHandler] = factory
    return result


def handler_path(spec: str) -> str | None:
    """The source file ``spec``'s module is loaded from, found without importing it.

    For ``--reload``, which watches the handler's directory. None when it
    cannot be told (a namespace package, an extension module, a bad spec).
    """
    target = spec.rpartition(":")[0]
    if _is_path(target):
        return os.path.abspath(target)
    _add_cwd_to_path()
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):  # a parent package that cannot be imported
        return None
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return None
    return found.origin


def _is_path(target: str) -> bool:
    return target.endswith(".py") or os.sep in target


def _add_cwd_to_path() -> None:
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _import(spec: str, target: str) -> ModuleType:
    """Run the module ``target`` names; its failures become one HandlerLoadError."""
    if _is_path(target):
        path = os.path.abspath(target)
        if not os.path.exists(path):
            raise HandlerLoadError(f"no such file: {target}")
        name = os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise HandlerLoadError(f"cannot import {target}")
        module = importlib.util.module_from_spec(module_spec)
        registered = sys.modules.setdefault(name, module) is module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            if registered:
                sys.modules.pop(name, None)
            raise _load_error(spec, exc, path) from None
        return module
    _add_cwd_to_path()
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (target == exc.name or target.startswith(exc.name + ".")):
            raise HandlerLoadError(f"cannot import module {target!r}: {exc}") from None
        raise _load_error(spec, exc, None) from None  # the module imports a missing one
    except Exception as exc:
        raise _load_error(spec, exc, None) from None


# Code that is not the user's: aioudf itself, the standard library, installed packages.
_NOT_USERS = tuple(
    os.path.join(os.path.realpath(folder), "")
    for folder in {
        os.path.dirname(os.path.abspath(__file__)),
        *(
            sysconfig.get_paths().get(key) or ""
            for key in ("stdlib", "platstdlib", "purelib", "platlib")
        ),
    }
    if folder
)


def _is_users(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    return not os.path.realpath(filename).startswith(_NOT_USERS)


def _shown(filename: str) -> str:
    """A path as the user best recognises it: relative to the current directory if inside."""
    path = os.path.abspath(filename)
    here = os.path.join(os.getcwd(), "")
    return path[len(here) :] if path.startswith(here) else path


def _load_error(spec: str, exc: Exception, path: str | None) -> HandlerLoadError:
    """One line for what the module raised: where in the user's code, and what."""
    located, shown = locate_error(exc, path)
    return HandlerLoadError(f"cannot load {spec}: {located}", error=shown)


def locate_error(exc: Exception, path: str | None = None) -> tuple[str, Exception | None]:
    """``file:line: Cause: text`` for an error raised by the user's code, and what to show.

    The place is the last frame of the user's own code (``path``, the
    module or script loaded, when no frame is recognisably theirs); the
    second value is ``exc`` with the frames before the user's cut off when
    it was raised in code theirs called (its traceback then helps), else
    ``None``. Used for handler modules and for ``aioudf compat`` scripts.
    """
    # Python 3.10 and 3.11 wrap an error raised by __set_name__ in a RuntimeError.
    if isinstance(exc, RuntimeError) and isinstance(exc.__cause__, DeclarationError):
        exc = exc.__cause__
    frames = traceback.extract_tb(exc.__traceback__)
    # The user's part of the traceback: from the first frame of their code on.
    start = next((i for i, f in enumerate(frames) if _is_users(f.filename)), len(frames))
    own = frames[start:]
    shown: Exception | None = None
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{_shown(exc.filename)}:{exc.lineno}"
        text = (exc.text or "").strip()
        cause = f"SyntaxError: {exc.msg}" + (f": {text}" if text else "")
    elif isinstance(exc, DeclarationError) and exc.filename:
        where = f"{_shown(exc.filename)}:{exc.lineno}"
        cause = exc.reason
    else:
        users = [f for f in own if _is_users(f.filename)]
        in_module = [f for f in frames if path is not None and f.filename == path]
        candidates = users or in_module or own or frames
        where = f"{_shown(candidates[-1].filename)}:{candidates[-1].lineno}" if candidates else ""
        cause = f"{type(exc).__name__}: {exc}"
        if any(f.filename != own[0].filename for f in own):  # raised in code it called
            tb: TracebackType | None = exc.__traceback__
            for _ in range(start):
                tb = tb.tb_next if tb is not None else None
            shown = exc.with_traceback(tb)
    return (f"{where}: {cause}" if where else cause), shown
