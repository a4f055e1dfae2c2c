"""Kapacitor's ``moving_avg`` example on aioudf: same options, same numbers to the last bit.
``.field('usage_idle').size(10).as('avg')``: the running mean of each group's last values."""

import collections
from statistics import fmean

import aioudf
from aioudf import Handler, InitError, Option, Point, clear_fields, number_field, per_group


class Mean:  # the last `size` values of a group and their running average (snapshotted)
    def __init__(self, size: int) -> None:
        self.values, self.size, self.avg = collections.deque[float](maxlen=size), size, 0.0

    def add(self, value: float) -> float:
        values, n = self.values, len(self.values)
        if n == self.size:  # full: slide, adjusting the average in place
            self.avg += value / n - values[0] / n
        else:  # filling up: the cumulative average
            self.avg = (value + n * self.avg) / (n + 1)
        values.append(value)
        return self.avg

    def dump_state(self) -> list[float]:
        return [*self.values, self.avg]

    def load_state(self, state: list[float]) -> None:
        self.values.extend(state[:-1])  # a smaller size keeps the last ones
        self.avg = state[-1] if len(state) - 1 == len(self.values) else fmean(self.values)


class MovingAvg(Handler):
    """Moving average of a field over the last `size` points of each group."""

    field = Option(str, help="the field to average")
    size = Option(int, help="number of points in the window")
    as_ = Option(str, name="as", default="avg", help="name of the output field")

    @per_group
    def means(self) -> Mean:
        return Mean(self.size)

    async def init(self, request: object) -> None:
        if self.size < 1 or not self.field or not self.as_:
            raise InitError(f"field and as must not be empty, size must be >= 1, got {self.size}")

    async def point(self, point: Point) -> None:
        fields = point.fieldsDouble
        value = fields.get(self.field)
        if value is None and (value := number_field(point, self.field)) is None:
            return  # no numeric field: skipped
        avg = self.means[point.group].add(value)
        if point.fieldsInt or point.fieldsString or point.fieldsBool:
            clear_fields(point)  # rare: telegraf's points carry only doubles
        else:
            fields.clear()  # the point is reused: time, tags and group kept
        fields[self.as_] = avg
        await self.emit(point)


if __name__ == "__main__":
    aioudf.main(MovingAvg)
