"""Running a script written for Kapacitor's Python agent, as ``python SCRIPT.py`` would.

:func:`run_script` is ``aioudf compat``: the script runs as ``__main__`` with
``sys.argv == [SCRIPT.py, ARGS...]`` and its folder first on ``sys.path``,
after ``kapacitor.udf.agent`` and ``kapacitor.udf.udf_pb2`` were made
aioudf's; ``print()`` writes to stderr (stdout is for frames). It returns
once the script has returned and what it served has ended: the exit status.

Bad input is one line (a :class:`~aioudf.errors.CompatError`, which the command
prints as ``aioudf compat: error: ...``): a path that is not a file, a file
that is not Python, a script that never starts an Agent or serves a Server.
A script that raises before it serves anything (at import, say) is a
:class:`~aioudf.errors.HandlerLoadError` naming ``file:line`` and the cause,
which the command prints, logs with the traceback of the script's own code
and, as a process UDF, answers to Kapacitor; exit status 1. One that raises
later is one log entry with that traceback, and exit status 1.
"""

from __future__ import annotations

import logging
import os
import runpy
import sys
import tokenize
from collections.abc import Sequence

from ..errors import AioudfError, CompatError, HandlerLoadError
from ..runtime._loader import locate_error
from ._link import script_frames
from ._runtime import RUNTIME, Settings
from .modules import provide_kapacitor_modules

__all__ = ["run_script"]

logger = logging.getLogger("aioudf")


def _check(path: str) -> None:
    """Refuse what is not a Python script, with one line saying why."""
    if not os.path.exists(path):
        raise CompatError(f"no such file: {path}")
    if not os.path.isfile(path):
        raise CompatError(f"{path} is not a file: give the UDF script's path")
    try:
        with tokenize.open(path) as file:  # honours a coding: line, as python does
            source = file.read()
        compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise CompatError(f"{path} is not a Python script: {reason}{where}") from None
    except OSError as exc:
        raise CompatError(f"cannot read {path}: {exc.strerror or exc}") from None


def run_script(path: str, args: Sequence[str] = (), settings: Settings | None = None) -> int:
    """Run the UDF script at ``path`` with ``args`` under aioudf; the exit status."""
    _check(path)
    RUNTIME.settings = settings or Settings()
    RUNTIME.owns_process = True
    provide_kapacitor_modules()
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
    # A print() at import, before a process UDF's agent reserves stdout for
    # frames, would reach Kapacitor as one: stderr is Kapacitor's log.
    sys.stdout = sys.stderr
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        RUNTIME.join()
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or RUNTIME.status
        print(exc.code, file=sys.stderr)  # sys.exit("message"), as python does
        return 1
    except AioudfError:
        raise  # the API used in a way aioudf cannot serve: one line
    except Exception as exc:
        if not (RUNTIME.agents_started or RUNTIME.servers_served):
            located, shown = locate_error(script_frames(exc), os.path.abspath(path))
            raise HandlerLoadError(f"cannot run {path}: {located}", error=shown) from None
        logger.error(
            "%s failed: %s: %s", path, type(exc).__name__, exc, exc_info=script_frames(exc)
        )
        return 1
    if not (RUNTIME.agents_started or RUNTIME.servers_served):
        if RUNTIME.agents_created or RUNTIME.servers_created:
            what = "Agent but never called its start()" if RUNTIME.agents_created else ""
            what = what or "Server but never called its serve()"
            raise CompatError(f"{path} created an {what}: nothing serves Kapacitor")
        raise CompatError(
            f"{path} never created an Agent or a Server (from kapacitor.udf.agent): it does "
            "not serve Kapacitor. Is it the UDF script, run as __main__?"
        )
    RUNTIME.join()
    return RUNTIME.status
