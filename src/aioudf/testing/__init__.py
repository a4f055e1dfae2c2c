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

End to end, through a real Kapacitor: :class:`Kapacitord` (and
:class:`AsyncKapacitord`, and the ``kapacitord`` fixture) runs a hermetic
``kapacitord`` with your UDF, so a test checks your TICKscript with it::

    def test_task(kapacitord):
        k = kapacitord(movingAverage=MovingAvg)
        k.define_task("t", "stream |from().measurement('cpu') @movingAverage()..."
                           " |httpOut('out')")
        k.write([DataPoint("cpu", {"value": 1.0}, time=0)])
        assert k.wait_points("t", "out") == [...]
"""

from __future__ import annotations

from ..errors import KapacitordError, KapacitordNotFound, UDFUnreachable
from ..formats._fields import fields_of, group_key
from ..formats._points import Batch, DataPoint, make_point
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
from .kapacitord import (
    AsyncKapacitord,
    Kapacitord,
    ProcessUDF,
    ServedUDF,
    SocketUDF,
    find_kapacitord,
    series_points,
)
from .transports import Command, InProcess, MemoryPipe, Socket, Target

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncKapacitord",
    "Batch",
    "Command",
    "DataPoint",
    "InProcess",
    "InitFailed",
    "Kapacitor",
    "Kapacitord",
    "KapacitordError",
    "KapacitordNotFound",
    "KeepaliveTimeout",
    "MemoryPipe",
    "ProcessUDF",
    "RestoreFailed",
    "Result",
    "ServedUDF",
    "Socket",
    "SocketUDF",
    "Target",
    "TaskConnection",
    "UDFError",
    "UDFUnreachable",
    "as_target",
    "encode_options",
    "fields_of",
    "find_kapacitord",
    "group_key",
    "make_point",
    "series_points",
]
