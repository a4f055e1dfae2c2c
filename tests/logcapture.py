"""Capture what aioudf logs, for tests that assert on its log lines."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TypeVar

H = TypeVar("H", bound=logging.Handler)


@contextlib.contextmanager
def capturing(handler: H) -> Iterator[H]:
    """Attach ``handler`` to the "aioudf" logger at DEBUG level for the block."""
    logger = logging.getLogger("aioudf")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
