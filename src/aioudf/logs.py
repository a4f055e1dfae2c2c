"""Logging set-up for the command line and ``run()``/``serve()`` entry points.

Logs go to stderr only: for a process UDF, stdout is the frame stream and
Kapacitor copies every stderr line into its own log. Embedded use (an
:class:`~aioudf.UnixServer` inside someone's service) configures nothing: the
``aioudf`` logger propagates to whatever the service set up.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | int = "INFO") -> None:
    """Send log records to stderr, unless the root logger is already configured."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
