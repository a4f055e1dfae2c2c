"""Resample each batch onto a regular time grid with pandas: a batch UDF.

Every numeric field of a batch is averaged per ``every`` interval (intervals
aligned on the epoch, labelled by their start) and the intervals without data
in between are filled by time interpolation; the batch goes out with the same
name, group, tags and end time. Fed by a query or by a window::

    stream
        |from()
            .measurement('cpu')
            .groupBy('host')
        |window()
            .period(1m)
            .every(1m)
        @resample()
            .every(10s)
        |influxDBOut()
            .measurement('cpu_10s')

String and boolean fields and per-point tags are dropped (they have no mean);
integer fields come out as floats.

Kapacitor configuration (process UDF; needs ``pip install 'aioudf[pandas]'``)::

    [udf.functions.resample]
        prog = "/usr/bin/python3"
        args = ["-u", "/path/to/examples/resample.py"]
        timeout = "10s"
"""

from __future__ import annotations

import datetime

import pandas as pd

import aioudf
from aioudf import BatchHandler, InitError, Option, PointBatch


class Resample(BatchHandler):
    """Means of each batch's numeric fields per `every`, gaps interpolated."""

    every = Option(datetime.timedelta, help="interval of the regular grid")

    async def init(self, request: object) -> None:
        if self.every <= datetime.timedelta(0):
            raise InitError(f"every must be positive, got {self.every}")

    async def batch(self, batch: PointBatch) -> pd.DataFrame:
        numeric = batch.to_pandas().select_dtypes("number").astype("float64")
        grid = numeric.resample(pd.Timedelta(self.every), origin="epoch").mean()
        resampled: pd.DataFrame = grid.interpolate(method="time")
        return resampled  # converted back against `batch`: its name, group, tags, tmax


if __name__ == "__main__":
    aioudf.main(Resample)
