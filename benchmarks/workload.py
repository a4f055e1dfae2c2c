"""The data the benchmarks send: telegraf-like ``cpu`` points, pre-encoded.

Every point looks like what Kapacitor forwards from a telegraf ``cpu`` input
grouped by host (``stream|from().measurement('cpu').groupBy('host')``)::

    name=cpu database=telegraf retentionPolicy=autogen
    tags: host=server03, cpu=cpu1
    fields (double): usage_idle, usage_user, usage_system
    group=host=server03 dimensions=[host]

Streams are built once, before any timing starts, as one ``bytes`` object of
framed Requests, so sending them costs the driver a single ``sendall``. Values
come from a seeded generator: every run sends the same bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from aioudf._pb import udf_pb2 as pb
from aioudf.wire._kapacitor import KapacitorConnection

#: Data frames are written as Kapacitor writes them.
encode_data = KapacitorConnection.send_data

__all__ = [
    "HOSTS",
    "Workload",
    "batch_stream",
    "cpu_point",
    "point_stream",
]

#: Hosts the points come from; each is a group (``groupBy('host')``).
HOSTS = 10
#: CPUs per host (the ``cpu`` tag).
CPUS = 4
#: Time of the first point (ns) and the interval between points of a series.
_START_NS = 1_700_000_000 * 10**9
_STEP_NS = 10**9


def cpu_point(index: int, rng: random.Random) -> pb.Point:
    """The ``index``-th point of the workload."""
    host = f"server{index % HOSTS:02d}"
    idle = rng.uniform(60.0, 99.0)
    user = rng.uniform(0.0, 100.0 - idle)
    point = pb.Point(
        time=_START_NS + (index // (HOSTS * CPUS)) * _STEP_NS,
        name="cpu",
        database="telegraf",
        retentionPolicy="autogen",
        group=f"host={host}",
        dimensions=["host"],
        tags={"host": host, "cpu": f"cpu{(index // HOSTS) % CPUS}"},
    )
    point.fieldsDouble["usage_idle"] = idle
    point.fieldsDouble["usage_user"] = user
    point.fieldsDouble["usage_system"] = 100.0 - idle - user
    return point


@dataclass(frozen=True)
class Workload:
    """A pre-encoded Request stream and what it contains."""

    #: Framed Requests, back to back, exactly as Kapacitor would write them.
    data: bytes
    #: Point requests in ``data``.
    points: int
    #: BeginBatch/EndBatch pairs in ``data`` (0 for a stream).
    batches: int = 0

    @property
    def frames(self) -> int:
        return self.points + 2 * self.batches


def point_stream(points: int, seed: int = 1) -> Workload:
    """``points`` Point requests, round-robin over the hosts (a STREAM edge)."""
    rng = random.Random(seed)
    data = b"".join(encode_data(cpu_point(i, rng)) for i in range(points))
    return Workload(data, points)


def batch_stream(batches: int, batch_size: int = 1000, seed: int = 1) -> Workload:
    """``batches`` batches of ``batch_size`` points, one host each (a BATCH edge).

    Each batch is what a ``batch|query(...).groupBy('host')`` node hands a UDF:
    BeginBatch (name, group, tags, size), the points of one group, EndBatch.
    """
    rng = random.Random(seed)
    frames: list[bytes] = []
    index = 0
    for number in range(batches):
        host = f"server{number % HOSTS:02d}"
        tags = {"host": host}
        group = f"host={host}"
        frames.append(
            encode_data(pb.BeginBatch(name="cpu", group=group, tags=tags, size=batch_size))
        )
        tmax = 0
        for _ in range(batch_size):
            point = cpu_point(index, rng)
            # Every point of a batch belongs to the batch's group.
            point.tags["host"] = host
            point.group = group
            tmax = max(tmax, point.time)
            frames.append(encode_data(point))
            index += 1
        frames.append(encode_data(pb.EndBatch(name="cpu", group=group, tmax=tmax, tags=tags)))
    return Workload(b"".join(frames), batches * batch_size, batches)
