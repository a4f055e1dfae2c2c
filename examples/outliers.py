"""Tukey outliers of each batch: a batch-to-batch process UDF.

The aioudf version of Kapacitor's ``outliers`` example, same options::

    batch
        |query('SELECT value FROM "mydb"."myrp"."cpu"')
            .period(10s)
            .every(10s)
            .groupBy('count')
        @outliers()
            .field('value')
            .scale(1.5)

A whole-batch handler (:class:`aioudf.BatchHandler`): for every batch in, one
batch out with the same name, group, tags and end time, holding
only the points whose ``field`` lies outside the Tukey fences
``[Q1 - scale*IQR, Q3 + scale*IQR]`` (lower outliers first, then upper, each
in ascending order), and ``size`` set to their number. ``scale`` must be at
least 1.0 (default 1.5).

Quartiles follow Kapacitor's own outliers examples (Go and Python), which its
server test pins (the 20 values 5..100 give 5 outliers): the median of an
even-length list is the mean of the elements at indexes n/2 and n/2+1; the
lower half is everything up to and including element n/2, the upper half
everything after it (for an odd length, both halves leave the median out).
This reproduces their results exactly. Where their indexes would run past the
end of a very short list (which makes those examples crash), the last element
is used instead.

Kapacitor configuration (process UDF)::

    [udf.functions.outliers]
        prog = "/usr/bin/python3"
        args = ["-u", "/path/to/examples/outliers.py"]
        timeout = "10s"
"""

from __future__ import annotations

from collections.abc import Sequence

import aioudf
from aioudf import BatchHandler, InitError, Option, Point, PointBatch, number_field


def _median(values: Sequence[float]) -> tuple[int, int, float]:
    """(left index, right index, median) the way Kapacitor's examples compute it."""
    n = len(values)
    middle = n // 2
    if n % 2 == 0:
        right = min(middle + 1, n - 1)
        return middle, right, (values[middle] + values[right]) / 2.0
    return middle, middle, values[middle]


def tukey_fences(values: Sequence[float], scale: float) -> tuple[float, float] | None:
    """Lower and upper fences of sorted ``values``, or None if there are too few."""
    if len(values) < 2:
        return None
    left, right, _ = _median(values)
    _, _, q1 = _median(values[:right])
    upper_half = values[left + 1 :] or values[-1:]
    _, _, q3 = _median(upper_half)
    iqr = q3 - q1
    return q1 - iqr * scale, q3 + iqr * scale


def find_outliers(entries: list[tuple[float, Point]], scale: float) -> list[Point]:
    """The points outside the fences: lower ones first, then upper, by value."""
    entries = sorted(entries, key=lambda entry: entry[0])
    fences = tukey_fences([value for value, _ in entries], scale)
    if fences is None:
        return []
    lower, upper = fences
    low = [point for value, point in entries if value < lower]
    high = [point for value, point in entries if value > upper]
    return low + high


class Outliers(BatchHandler):
    """Keeps the points of each batch that lie outside its Tukey fences."""

    field = Option(str, help="the field to test")
    scale = Option(float, default=1.5, help="IQR multiplier of the fences, >= 1.0")

    async def init(self, request: object) -> None:
        problems = []
        if not self.field:
            problems.append("field must not be empty")
        if self.scale < 1.0:
            problems.append(f"invalid scale {self.scale}: must be >= 1.0")
        if problems:
            raise InitError("; ".join(problems))

    async def batch(self, batch: PointBatch) -> PointBatch:
        # Points without a numeric field are not part of the data set.
        entries = [(v, p) for p in batch if (v := number_field(p, self.field)) is not None]
        # Same name, group, tags and tmax as the batch in; size set on the way out.
        return batch.with_points(find_outliers(entries, self.scale))


if __name__ == "__main__":
    aioudf.main(Outliers)
