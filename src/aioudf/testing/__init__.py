"""Kapacitor in a box: drive a UDF from tests exactly as Kapacitor would.

::

    from aioudf.testing import DataPoint, Kapacitor

    async def test_average():
        result = await Kapacitor(MovingAvg).run(
            {"field": "value", "size": 2},
            points=[DataPoint("cpu", {"value": v}, time=t) for t, v in enumerate([1.0, 3.0])],
        )
        assert [p.fields["avg"] for p in result.points] == [1.0, 2.0]

The same test runs against a socket UDF (``Kapacitor("/run/udf.sock")``) or a
process UDF (``Kapacitor(["python", "-u", "udf.py"])``). With the pytest
plugin (installed with aioudf) the ``kapacitor`` fixture is that constructor:
``await kapacitor(MovingAvg).run(...)``.
"""

from __future__ import annotations

from ..errors import UDFUnreachable
from ..points import Batch, DataPoint, fields_of, group_key, make_point
from .client import (
    DEFAULT_TIMEOUT,
    InitFailed,
    Kapacitor,
    KeepaliveTimeout,
    RestoreFailed,
    Result,
    TaskConnection,
    UDFError,
    as_target,
    encode_options,
)
from .transports import Command, InProcess, MemoryPipe, Socket, Target

__all__ = [
    "DEFAULT_TIMEOUT",
    "Batch",
    "Command",
    "DataPoint",
    "InProcess",
    "InitFailed",
    "Kapacitor",
    "KeepaliveTimeout",
    "MemoryPipe",
    "RestoreFailed",
    "Result",
    "Socket",
    "Target",
    "TaskConnection",
    "UDFError",
    "UDFUnreachable",
    "as_target",
    "encode_options",
    "fields_of",
    "group_key",
    "make_point",
]
