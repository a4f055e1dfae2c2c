"""Capture what aioudf logs, for tests that assert on its log lines."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import TypeVar

H = TypeVar("H", bound=logging.Handler)


@contextlib.contextmanager
def capturing(handler: H, logger_name: str = "aioudf") -> Iterator[H]:
    """Attach ``handler`` to a logger ("aioudf"; "" for the root) at DEBUG level."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


_LOGFMT_PAIR = re.compile(r'([^\s="]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))(?:\s+|$)')
_LOGFMT_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def parse_logfmt(line: str) -> dict[str, str]:
    """One logfmt line's fields; fails on anything that is not ``key=value`` pairs.

    Written here, independently of aioudf.runtime._logs: quoted values unescape
    ``\\n \\r \\t \\" \\\\`` and ``\\uXXXX``, bare values run to the next space.
    """
    fields: dict[str, str] = {}
    position = 0
    while position < len(line):
        match = _LOGFMT_PAIR.match(line, position)
        assert match is not None, f"not logfmt at column {position}: {line[position:]!r}"
        key, quoted, bare = match.groups()
        if quoted is None:
            fields[key] = bare
        else:
            fields[key] = re.sub(
                r"\\(u[0-9a-fA-F]{4}|.)",
                lambda m: chr(int(m[1][1:], 16)) if len(m[1]) == 5 else _LOGFMT_ESCAPES[m[1]],
                quoted,
            )
        position = match.end()
    return fields
