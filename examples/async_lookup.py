"""Awaits a slow lookup for every point: a stream-to-stream process UDF.

Stands in for a UDF that asks a remote service about each point (a model
server, a CMDB, a geo-IP database): it awaits ``delay`` per point, then returns
the point with the field ``looked_up = 1.0``::

    stream
        |from()
            .measurement('cpu')
        @lookup()
            .delay(3s)

While a lookup is awaited the event loop is free, so aioudf keeps answering
Kapacitor's keepalives: a 3 s delay runs fine under a 1 s UDF timeout, where
a blocking agent gets the task killed with "keepalive timedout". Points are
handled one at a time and come back in order.

Kapacitor configuration (process UDF)::

    [udf.functions.lookup]
        prog = "/usr/bin/python3"
        args = ["-u", "/path/to/examples/async_lookup.py"]
        timeout = "1s"
"""

from __future__ import annotations

import asyncio
import datetime

import aioudf
from aioudf import Handler, InitError, Option, Point


class AsyncLookup(Handler):
    """Awaits `delay` per point, then returns it with looked_up = 1.0."""

    delay = Option(
        datetime.timedelta,
        default=datetime.timedelta(milliseconds=100),
        help="time each lookup takes",
    )

    async def init(self, request: object) -> None:
        if self.delay < datetime.timedelta(0):
            raise InitError(f"delay must not be negative, got {self.delay}")

    async def point(self, point: Point) -> None:
        await asyncio.sleep(self.delay.total_seconds())  # the "remote lookup"
        point.fieldsDouble["looked_up"] = 1.0
        await self.emit(point)


if __name__ == "__main__":
    aioudf.main(AsyncLookup)
