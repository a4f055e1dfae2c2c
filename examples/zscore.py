"""Per-host z-score anomaly detector over a sliding window: a stream UDF on NumPy.

Each point is scored against the ``size`` points of its group before it: its
``field`` minus their mean, divided by their (population) standard deviation.
The point goes out with two more fields, ``as`` (default ``zscore``) and
``anomaly`` (``|z| > threshold``), ready for an alert::

    stream
        |from()
            .measurement('cpu')
            .groupBy('host')
        @zscore()
            .field('usage_idle')
            .size(30)
            .threshold(3.0)
        |alert()
            .crit(lambda: "anomaly")

Until a group has two earlier values, or while they are all equal, the score
is 0. Points without a numeric ``field`` are passed on unscored. The windows
(one per group, with the points themselves) are in the snapshots, so a
restarted task scores its next point exactly as it would have.

Kapacitor configuration (process UDF; needs ``pip install 'aioudf[numpy]'``)::

    [udf.functions.zscore]
        prog = "/usr/bin/python3"
        args = ["-u", "/path/to/examples/zscore.py"]
        timeout = "10s"
"""

from __future__ import annotations

import numpy as np

import aioudf
from aioudf import CountWindow, Handler, InitError, Option, Point, number_field, per_group


class ZScore(Handler):
    """Scores each point against the last `size` points of its group."""

    field = Option(str, help="the field to score")
    size = Option(int, default=30, help="earlier points the score is computed over")
    threshold = Option(float, default=3.0, help="|z| above which a point is an anomaly")
    as_ = Option(str, name="as", default="zscore", help="name of the score field")

    @per_group
    def window(self) -> CountWindow:
        # The earlier `size` points and the new one, emitted on every point.
        return CountWindow(self.size + 1, every=1)

    async def init(self, request: object) -> None:
        if not self.field or self.size < 2 or self.threshold <= 0:
            raise InitError(
                f"need a field, size >= 2 and threshold > 0; got field={self.field!r}, "
                f"size={self.size}, threshold={self.threshold}"
            )

    async def point(self, point: Point) -> None:
        if number_field(point, self.field) is not None:
            window = self.window[point.group].push(point)
            assert window is not None  # every=1: each point completes a window
            values = window.values(self.field)
            earlier, value = values[:-1], values[-1]
            spread = float(np.std(earlier)) if len(earlier) >= 2 else 0.0
            score = float((value - np.mean(earlier)) / spread) if spread > 0 else 0.0
            point.fieldsDouble[self.as_] = score
            point.fieldsBool["anomaly"] = abs(score) > self.threshold
        await self.emit(point)


if __name__ == "__main__":
    aioudf.main(ZScore)
