"""Throughput, latency and memory of aioudf UDFs, as ratios to protobuf itself.

Run the whole suite (a few minutes; ``--quick`` for a smoke run)::

    .venv/bin/python benchmarks/run.py
    .venv/bin/python benchmarks/run.py --quick
    .venv/bin/python benchmarks/run.py --cases mirror,latency --loops uvloop --runs 7

or point it at any UDF, as Kapacitor would use it::

    .venv/bin/python benchmarks/run.py --socket /tmp/my.sock -o field=usage_idle
    .venv/bin/python benchmarks/run.py --command "python my_udf.py" -o size=10 --batch

Each throughput figure is the median of ``--runs`` runs; before each run the
protobuf-only baseline (see baseline.py) is measured on the same stream, and
the figure is reported as a ratio to the median of those baselines. The
report (markdown, on stdout) ends with the machine and the versions; progress
goes to stderr. See benchmarks/README.md for what every case measures.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Measure the code of this checkout, here and in the UDF processes.
sys.path.insert(0, str(ROOT / "src"))

from baseline import VARIANTS, time_variant  # noqa: E402
from driver import (  # noqa: E402
    CommandTarget,
    Connection,
    SocketTarget,
    Target,
    UDFFailed,
    init_request,
    paced_latency,
    query_info,
    stalled_reader,
    start_socket_server,
    throughput,
)
from machine import checkout_env, describe_machine, load_average, log  # noqa: E402
from peers import Peer, peers_for  # noqa: E402
from workload import Workload, batch_stream, point_stream  # noqa: E402

LOOPS = ("asyncio", "uvloop")
SUITE = (
    "mirror",
    "moving_avg",
    "moving_avg_handrolled",
    "outliers",
    "latency",
    "stall",
    "metrics",
    "replay",
    "workers",
    "kapacitord",
)
#: The cases run by a script of their own, whose report is appended to ours.
SCRIPTS = {"replay": "replay.py", "workers": "workers.py", "kapacitord": "under_kapacitord.py"}
CUSTOM = ("throughput", "latency", "stall")
# The examples' options, the same for ours and for Kapacitor's agents (peers.py).
AVERAGE_OPTIONS = {"field": ["usage_idle"], "size": ["10"]}
OUTLIER_OPTIONS = {"field": ["usage_idle"], "scale": ["1.5"]}


def udf_env() -> dict[str, str]:
    """Environment of UDF processes: this checkout's aioudf comes first."""
    return checkout_env(ROOT)


def example(name: str, loop: str, *extra: str) -> list[str]:
    """The command line of one of the examples, on the chosen event loop.

    ``moving_avg_handrolled`` is the moving_avg written before the toolkit,
    kept in benchmarks/ as the yardstick of the rewrite.
    """
    folder = "benchmarks" if name == "moving_avg_handrolled" else "examples"
    script = ROOT / folder / f"{name}.py"
    return [sys.executable, str(script), "--loop", loop, "--log-level", "WARNING", *extra]


def kilo(rate: float) -> str:
    return f"{rate:,.0f}"


def micros(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def megabytes(size: float) -> str:
    return f"{size / 1e6:,.1f} MB"


# ---- measurements ------------------------------------------------------------


class Baselines:
    """The protobuf-only baseline, measured again before every UDF run."""

    def __init__(self) -> None:
        #: points/s per workload name and variant, every measurement.
        self.samples: dict[str, dict[str, list[float]]] = collections.defaultdict(
            lambda: collections.defaultdict(list)
        )

    def measure(self, name: str, workload: Workload) -> dict[str, float]:
        rates = {}
        for variant in VARIANTS:
            rate = workload.points / time_variant(variant, workload.data)
            self.samples[name][variant].append(rate)
            rates[variant] = rate
        return rates

    @staticmethod
    def best(samples: Mapping[str, Sequence[float]]) -> tuple[str, float]:
        """The faster variant by median, and its median points/s."""
        medians = {variant: statistics.median(rates) for variant, rates in samples.items()}
        variant = max(medians, key=lambda v: medians[v])
        return variant, medians[variant]


def warmup_for(workload: Workload) -> Workload:
    """A tenth of a workload, in whole frames."""
    if workload.batches:
        return batch_stream(max(1, workload.batches // 10), workload.points // workload.batches)
    return point_stream(max(100, workload.points // 10), seed=4)


@dataclass
class Row:
    """One line of the results table."""

    case: str
    loop: str
    result: str
    ratio: str
    target: str
    verdict: str
    details: dict[str, Any] = field(default_factory=dict)


def check_counts(kind: str, counts: collections.Counter[str], workload: Workload) -> None:
    """The UDF answered what it should have: nothing lost, no error."""
    if kind in ("mirror", "moving_avg", "throughput-stream"):
        if counts["point"] != workload.points:
            raise UDFFailed(f"{kind}: {counts['point']} points back for {workload.points} sent")
    elif kind == "outliers" and (
        counts["begin"] != workload.batches or counts["end"] != workload.batches
    ):
        raise UDFFailed(f"outliers: {dict(counts)} for {workload.batches} batches")


def run_throughput(
    title: str,
    kind: str,
    loop: str,
    target: Target,
    options: Mapping[str, Sequence[str]],
    workload: Workload,
    workload_name: str,
    runs: int,
    baselines: Baselines,
    target_ratio: float | None,
    strict: bool = True,
) -> Row:
    """Median points/s of ``runs`` runs, as a ratio to the baseline measured alongside.

    ``strict``: a run whose responses are not all there fails the case; otherwise
    (peers, which we report but do not vouch for) the shortfall is noted in the row.
    """
    info = query_info(target)
    init = init_request(options, info)
    # A short first run, not counted, warms the UDF up and checks that it works.
    throughput(target, init, warmup_for(workload))
    local = Baselines()
    rates: list[float] = []
    cpu: list[float] = []
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    counts: collections.Counter[str] = collections.Counter()
    shortfalls: list[str] = []

    def measure_baseline() -> float:
        measured = local.measure(workload_name, workload)
        for variant, rate in measured.items():
            baselines.samples[workload_name][variant].append(rate)
        return max(measured.values())  # the faster loop is the baseline

    # The machine's speed drifts (other processes, a shared host): each run
    # is compared with the mean of the baselines measured just before and
    # just after it, and the figure is the median of those per-run ratios.
    before = measure_baseline()
    for number in range(1, runs + 1):
        result = throughput(target, init, workload)
        after = measure_baseline()
        try:
            check_counts(kind, result.responses, workload)
        except UDFFailed as exc:
            if strict:
                raise
            shortfalls.append(str(exc))
        counts = result.responses
        base = (before + after) / 2
        rates.append(result.points_per_second)
        cpu.append(result.cpu_per_point)
        ratios.append(result.points_per_second / base)
        # The baseline's time per point is CPU time too (one thread, no I/O).
        cpu_ratios.append(1.0 / base / result.cpu_per_point)
        log(
            f"  {title} [{loop}] run {number}/{runs}: {kilo(result.points_per_second)} points/s,"
            f" UDF CPU {result.cpu_per_point * 1e6:.2f} µs/point;"
            f" baseline {kilo(base)} points/s: ratio {ratios[-1]:.2f} (CPU {cpu_ratios[-1]:.2f})"
        )
        before = after
    variant, base_rate = Baselines.best(local.samples[workload_name])
    rate = statistics.median(rates)
    ratio = statistics.median(ratios)
    cpu_per_point = statistics.median(cpu)
    cpu_ratio = statistics.median(cpu_ratios)
    verdict = ""
    if target_ratio is not None:
        verdict = "met" if ratio >= target_ratio else f"missed by {target_ratio - ratio:.2f}"
    if shortfalls:
        verdict = f"incomplete output in {len(shortfalls)} of {runs} runs: {shortfalls[0]}"
    text = f"{kilo(rate)} points/s"
    spread = f"runs {min(ratios):.2f} to {max(ratios):.2f}"
    if math.isnan(cpu_per_point):  # unknown for a socket UDF given without --pid
        ratio_text = f"**{ratio:.2f}** ({spread})"
    else:
        text += f"; UDF CPU {cpu_per_point * 1e6:.2f} µs/point"
        ratio_text = f"**{ratio:.2f}** ({spread}; CPU {cpu_ratio:.2f})"
    return Row(
        case=title,
        loop=loop,
        result=text,
        ratio=ratio_text,
        target=f"≥ {target_ratio:g} x" if target_ratio is not None else "",
        verdict=verdict,
        details={
            "points_per_second": rates,
            "median": rate,
            "udf_cpu_per_point": cpu,
            "baseline_variant": variant,
            "baseline_median": base_rate,
            "baseline_samples": {k: list(v) for k, v in local.samples[workload_name].items()},
            "ratios": ratios,
            "ratio": ratio,
            "cpu_ratios": cpu_ratios,
            "cpu_ratio": cpu_ratio,
            "responses": dict(counts),
            "shortfalls": shortfalls,
        },
    )


def run_metrics_cost(
    title: str,
    kind: str,
    loop: str,
    without: Target,
    with_metrics: Target,
    options: Mapping[str, Sequence[str]],
    workload: Workload,
    runs: int,
) -> Row:
    """Throughput with metrics on over throughput with them off, run by run, alternating.

    Two servers of the same UDF, one with ``--metrics``: each pair of runs
    is measured back to back (off first, then on first, in turn), so the
    machine's drift cancels out; the figure is the median of the per-pair ratios.
    """
    inits = [init_request(options, query_info(target)) for target in (without, with_metrics)]
    for target, init in zip((without, with_metrics), inits, strict=True):
        throughput(target, init, warmup_for(workload))
    ratios: list[float] = []
    cpu_ratios: list[float] = []  # CPU time per point off / on: less moved by the load
    rates: dict[str, list[float]] = {"off": [], "on": []}
    sides = list(zip(("off", "on"), (without, with_metrics), inits, strict=True))
    for number in range(1, runs + 1):
        results = {}
        # Off first, then on first: whatever the first run of a pair leaves
        # behind (the other server freeing memory) weighs on both sides alike.
        for name, target, init in sides if number % 2 else sides[::-1]:
            result = throughput(target, init, workload)
            check_counts(kind, result.responses, workload)
            rates[name].append(result.points_per_second)
            results[name] = result
        pair = [results["off"], results["on"]]
        ratios.append(pair[1].points_per_second / pair[0].points_per_second)
        cpu_ratios.append(pair[0].cpu_per_point / pair[1].cpu_per_point)
        log(
            f"  {title} [{loop}] pair {number}/{runs}: off {kilo(pair[0].points_per_second)}, "
            f"on {kilo(pair[1].points_per_second)} points/s: ratio {ratios[-1]:.3f} "
            f"(CPU {cpu_ratios[-1]:.3f})"
        )
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(cpu_ratios)
    cost = 1 - ratio
    return Row(
        case=title,
        loop=loop,
        result=f"off {kilo(statistics.median(rates['off']))}, "
        f"on {kilo(statistics.median(rates['on']))} points/s",
        ratio=f"on/off **{ratio:.3f}** (pairs {min(ratios):.2f} to {max(ratios):.2f}; "
        f"CPU per point {cpu_ratio:.3f})",
        target="cost ≤ 5%",
        verdict="met" if cost <= 0.05 else f"missed: costs {cost:.1%}",
        details={
            "ratios": ratios,
            "ratio": ratio,
            "cpu_ratios": cpu_ratios,
            "cpu_ratio": cpu_ratio,
            "points_per_second": rates,
        },
    )


def run_latency(
    title: str,
    loop: str,
    target: Target,
    options: Mapping[str, Sequence[str]],
    workload: Workload,
    rate: float,
    baselines: Baselines,
) -> Row:
    info = query_info(target)
    init = init_request(options, info)
    local = Baselines()
    for _ in range(3):
        local.measure("stream", workload)
    _, base_rate = Baselines.best(local.samples["stream"])
    result = paced_latency(target, init, workload, rate)
    p50, p99, peak = result.percentile(0.50), result.percentile(0.99), result.maximum
    per_point = 1.0 / base_rate
    log(f"  {title} [{loop}]: p50 {micros(p50)}, p99 {micros(p99)}, max {micros(peak)}")
    return Row(
        case=title,
        loop=loop,
        result=f"p50 {micros(p50)}, p99 {micros(p99)}, max {micros(peak)}",
        ratio=f"p99 = {p99 / per_point:,.0f} x baseline per-point time",
        target="p99 < 1 ms",
        verdict="met" if p99 < 1e-3 else f"missed by {micros(p99 - 1e-3)}",
        details={
            "rate": rate,
            "samples": len(result.samples),
            "p50": p50,
            "p90": result.percentile(0.90),
            "p99": p99,
            "p999": result.percentile(0.999),
            "max": peak,
            "baseline_median": base_rate,
        },
    )


def run_stall(
    title: str,
    loop: str,
    target: Target,
    options: Mapping[str, Sequence[str]],
    workload: Workload,
) -> Row:
    info = query_info(target)
    init = init_request(options, info)
    result = stalled_reader(target, init, workload)
    if result.points_returned != result.points_sent:
        raise UDFFailed(
            f"stall: {result.points_returned} points came back of {result.points_sent} sent"
        )
    log(
        f"  {title} [{loop}]: peak RSS {megabytes(result.peak_rss)}, "
        f"{megabytes(result.bytes_accepted)} of {megabytes(result.bytes_total)} accepted "
        "before writes blocked"
    )
    limit = 100e6
    return Row(
        case=title,
        loop=loop,
        result=(
            f"peak RSS {megabytes(result.peak_rss)} (idle {megabytes(result.rss_idle)}); "
            f"writes blocked after {megabytes(result.bytes_accepted)} of "
            f"{megabytes(result.bytes_total)}; all {result.points_sent:,} points back"
        ),
        ratio=f"accepted {result.bytes_accepted / result.bytes_total:.1%} of the input",
        target="peak RSS < 100 MB",
        verdict="met"
        if result.peak_rss < limit
        else f"missed by {megabytes(result.peak_rss - limit)}",
        details=asdict(result),
    )


# ---- the suite -----------------------------------------------------------------


@dataclass
class Settings:
    runs: int
    points: int
    batches: int
    batch_size: int
    latency_points: int
    rate: float
    stall_points: int
    loops: Sequence[str]
    cases: Sequence[str]
    peers: bool = True


def run_suite(settings: Settings, baselines: Baselines) -> list[Row]:
    """The built-in cases, on the examples."""
    rows: list[Row] = []
    env = udf_env()
    stream = point_stream(settings.points)
    batches = batch_stream(settings.batches, settings.batch_size)
    mirror_options: dict[str, list[str]] = {}
    average_options = AVERAGE_OPTIONS
    outlier_options = OUTLIER_OPTIONS
    with tempfile.TemporaryDirectory(prefix="aioudf-bench-") as directory:
        for loop in settings.loops:
            path = os.path.join(directory, f"mirror-{loop}.sock")
            mirror = example("mirror", loop, "--socket", path)
            if "mirror" in settings.cases or "latency" in settings.cases:
                with start_socket_server(mirror, path, env) as server:
                    if "mirror" in settings.cases:
                        log(f"mirror over a unix socket [{loop}]")
                        rows.append(
                            run_throughput(
                                "mirror, unix socket",
                                "mirror",
                                loop,
                                server,
                                mirror_options,
                                stream,
                                "stream",
                                settings.runs,
                                baselines,
                                0.8,
                            )
                        )
                    if "latency" in settings.cases:
                        log(f"single-point round trip at {settings.rate:g} points/s [{loop}]")
                        rows.append(
                            run_latency(
                                f"round trip, 1 point at a time, {settings.rate:,.0f} points/s "
                                "(mirror, unix socket)",
                                loop,
                                server,
                                mirror_options,
                                point_stream(settings.latency_points, seed=2),
                                settings.rate,
                                baselines,
                            )
                        )
            if "moving_avg" in settings.cases:
                log(f"moving_avg as a process [{loop}]")
                rows.append(
                    run_throughput(
                        "moving_avg, process (stdin/stdout)",
                        "moving_avg",
                        loop,
                        CommandTarget(example("moving_avg", loop), env),
                        average_options,
                        stream,
                        "stream",
                        settings.runs,
                        baselines,
                        0.6,
                    )
                )
            if "moving_avg_handrolled" in settings.cases:
                log(f"moving_avg written without the toolkit, as a process [{loop}]")
                rows.append(
                    run_throughput(
                        "moving_avg without the toolkit (yardstick), process",
                        "moving_avg",
                        loop,
                        CommandTarget(example("moving_avg_handrolled", loop), env),
                        average_options,
                        stream,
                        "stream",
                        settings.runs,
                        baselines,
                        None,
                    )
                )
            if "outliers" in settings.cases:
                log(f"outliers on batches of {settings.batch_size} [{loop}]")
                rows.append(
                    run_throughput(
                        f"outliers, process, batches of {settings.batch_size:,}",
                        "outliers",
                        loop,
                        CommandTarget(example("outliers", loop), env),
                        outlier_options,
                        batches,
                        "batch",
                        settings.runs,
                        baselines,
                        None,
                    )
                )
            if "metrics" in settings.cases:
                # Socket servers both (a process UDF serves no metrics), one
                # with --metrics: the same UDF, paired runs.
                for name, options in (("mirror", mirror_options), ("moving_avg", average_options)):
                    log(f"{name} with metrics off and on [{loop}]")
                    off_path = os.path.join(directory, f"{name}-off-{loop}.sock")
                    on_path = os.path.join(directory, f"{name}-on-{loop}.sock")
                    off_argv = example(name, loop, "--socket", off_path)
                    on_argv = example(name, loop, "--socket", on_path, "--metrics", "127.0.0.1:0")
                    with (
                        start_socket_server(off_argv, off_path, env) as off,
                        start_socket_server(on_argv, on_path, env) as on,
                    ):
                        rows.append(
                            run_metrics_cost(
                                f"{name}, unix socket: metrics on vs off",
                                name,
                                loop,
                                off,
                                on,
                                options,
                                stream,
                                settings.runs,
                            )
                        )
            if "stall" in settings.cases:
                log(f"{settings.stall_points:,} points to a mirror that stopped reading [{loop}]")
                # A server of its own: its peak RSS must be this case's alone.
                stall_path = os.path.join(directory, f"stall-{loop}.sock")
                with start_socket_server(
                    example("mirror", loop, "--socket", stall_path), stall_path, env
                ) as server:
                    rows.append(
                        run_stall(
                            f"{settings.stall_points:,} points, Kapacitor stops reading "
                            "(mirror, unix socket)",
                            loop,
                            server,
                            mirror_options,
                            point_stream(settings.stall_points, seed=3),
                        )
                    )
        if settings.peers:
            rows += run_peers(settings, baselines, directory, stream, batches)
    return rows


class RestartingServer:
    """A peer's socket server, started again for the next run if it exited.

    Kapacitor's Go ``mirror`` exits (``log.Fatal``) when a write fails after
    the task closed its side, which the driver does once every point it sent
    has come back: the next run would find nothing listening. Restarts are
    counted and reported in the row; a server that cannot start fails the row.
    """

    def __init__(self, peer: Peer, path: str) -> None:
        self.peer = peer
        self.path = path
        self.restarts = 0
        self._stack = contextlib.ExitStack()
        self._server = self._start()

    def _start(self) -> SocketTarget:
        return self._stack.enter_context(
            start_socket_server(self.peer.command(self.path), self.path, self.peer.env)
        )

    def open(self) -> Connection:
        try:
            return self._server.open()
        except (ConnectionRefusedError, FileNotFoundError):
            self._stack.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # left behind by the server that died
            self._stack = contextlib.ExitStack()
            self.restarts += 1
            self._server = self._start()
            return self._server.open()

    def describe(self) -> str:
        return self._server.describe()

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def peer_target(peer: Peer, directory: str) -> Iterator[Target]:
    """A peer as the driver's target: its socket server running, or its command."""
    if peer.serves_socket:
        path = os.path.join(directory, f"peer-{len(os.listdir(directory))}.sock")
        server = RestartingServer(peer, path)
        try:
            yield server
        finally:
            server.close()
    else:
        yield CommandTarget(peer.command(), peer.env)


def run_peers(
    settings: Settings, baselines: Baselines, directory: str, stream: Workload, batches: Workload
) -> list[Row]:
    """Kapacitor's own agents on the same workloads, against the same baseline."""
    cases = [
        ("mirror", "mirror, unix socket", {}, stream, "stream"),
        ("moving_avg", "moving_avg, process (stdin/stdout)", AVERAGE_OPTIONS, stream, "stream"),
        (
            "outliers",
            f"outliers, process, batches of {settings.batch_size:,}",
            OUTLIER_OPTIONS,
            batches,
            "batch",
        ),
    ]
    rows = []
    for kind, title, options, workload, workload_name in cases:
        if kind not in settings.cases:
            continue
        for peer in peers_for(kind):
            log(f"{kind}: Kapacitor's {peer.name}")
            try:
                with peer_target(peer, directory) as target:
                    row = run_throughput(
                        title,
                        kind,
                        loop=f"peer: {peer.name}",
                        target=target,
                        options=options,
                        workload=workload,
                        workload_name=workload_name,
                        runs=settings.runs,
                        baselines=baselines,
                        target_ratio=None,
                        strict=False,
                    )
                    if isinstance(target, RestartingServer) and target.restarts:
                        row = replace(
                            row,
                            verdict=(row.verdict + "; " if row.verdict else "")
                            + f"the server exited and was started again ({target.restarts}x)",
                        )
            except (UDFFailed, OSError) as exc:  # a peer that cannot run here: reported
                log(f"  {peer.name} failed: {exc}")
                row = Row(title, f"peer: {peer.name}", f"failed: {exc}", "", "", "")
            rows.append(row)
    return rows


def run_custom(
    settings: Settings, baselines: Baselines, target: Target, options: Mapping[str, list[str]]
) -> list[Row]:
    """The cases that make sense for a UDF we know nothing about."""
    batch = "batch" in settings.cases
    workload = (
        batch_stream(settings.batches, settings.batch_size)
        if batch
        else point_stream(settings.points)
    )
    name = "batch" if batch else "stream"
    rows = []
    if "throughput" in settings.cases:
        log(f"throughput of {target.describe()}")
        rows.append(
            run_throughput(
                f"{target.describe()} ({name})",
                "throughput-batch" if batch else "throughput-stream",
                "as configured",
                target,
                options,
                workload,
                name,
                settings.runs,
                baselines,
                None,
            )
        )
    if "latency" in settings.cases:
        rows.append(
            run_latency(
                f"round trip at {settings.rate:,.0f} points/s ({target.describe()})",
                "as configured",
                target,
                options,
                point_stream(settings.latency_points, seed=2),
                settings.rate,
                baselines,
            )
        )
    if "stall" in settings.cases:
        rows.append(
            run_stall(
                f"{settings.stall_points:,} points, Kapacitor stops reading ({target.describe()})",
                "as configured",
                target,
                options,
                point_stream(settings.stall_points, seed=3),
            )
        )
    return rows


# ---- report ---------------------------------------------------------------------


def report(
    rows: Sequence[Row],
    baselines: Baselines,
    machine: Mapping[str, str],
    command: str,
    settings: Settings,
    load: tuple[str, str],
    started: datetime.datetime,
) -> str:
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC with `{command}`: "
        f"{settings.runs} runs per throughput figure (median), "
        f"{settings.points:,} points per stream run, "
        f"{settings.batches:,} batches of {settings.batch_size:,} points per batch run.",
        "",
    ]
    names = {"stream": "point stream", "batch": f"batches of {settings.batch_size:,}"}
    for workload, samples in baselines.samples.items():
        if not samples:
            continue
        parts = [
            f"`{variant}` loop {kilo(statistics.median(rates))}"
            for variant, rates in samples.items()
        ]
        best_variant, best = Baselines.best(samples)
        lines.append(
            f"Protobuf-only baseline, {names.get(workload, workload)}: "
            f"**{kilo(best)} points/s** (`{best_variant}` loop; medians over the run: "
            f"{', '.join(parts)} points/s)."
        )
    lines += [
        "",
        "| Case | Loop | Result (median) | x baseline | Target | |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {row.case} | {row.loop} | {row.result} | {row.ratio} | {row.target} | {row.verdict} |"
        for row in rows
    ]
    lines += [
        "",
        "Ratios: for each run, the UDF's points/s divided by the mean of the baselines "
        "measured just before and just after it; in bold the median of those, then the "
        "lowest and highest. 1.00 would be as fast as the bare protobuf loop. CPU: the "
        "baseline's time per point divided by the CPU time (user + system) the UDF process "
        "spent per point (median).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']}; {machine['os']}. "
        f"Load average (1/5/15 min) at start {load[0]}, at end {load[1]}.",
        "",
        f"Versions: {machine['python']}; protobuf {machine['protobuf']}; "
        f"uvloop {machine['uvloop']}; anyio {machine['anyio']}; aioudf {machine['aioudf']}.",
    ]
    return "\n".join(lines)


def run_scripts(settings: Settings, quick: bool) -> list[str]:
    """The replay, workers and kapacitord cases: their scripts' reports, in their own tables.

    Each script runs in a process of its own (it starts servers and replays
    of its own), in its quick mode when this run is quick; its progress goes
    to stderr as ours does.
    """
    sections = []
    for case, script in SCRIPTS.items():
        if case not in settings.cases:
            continue
        log(f"{case}: benchmarks/{script}{' --quick' if quick else ''}")
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), *(["--quick"] if quick else [])],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        if done.returncode:
            sections.append(f"## {case}\n\nbenchmarks/{script} failed (status {done.returncode})")
        else:
            sections.append(done.stdout.strip())
    return sections


def parse_options(texts: Sequence[str]) -> dict[str, list[str]]:
    """``-o size=10 -o field=x -o pair=a,1.5`` -> ``{"size": ["10"], ...}``."""
    options: dict[str, list[str]] = {}
    for text in texts:
        name, sep, values = text.partition("=")
        if not sep or not name:
            raise SystemExit(f"run.py: error: expected NAME=VALUE[,VALUE...], got {text!r}")
        options[name] = values.split(",") if values else []
    return options


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark aioudf UDFs against a protobuf-only baseline.",
        epilog="See benchmarks/README.md for what each case measures.",
    )
    parser.add_argument("--quick", action="store_true", help="small workloads, 3 runs: a smoke run")
    parser.add_argument("--runs", type=int, help="runs per throughput figure (default 21, quick 3)")
    parser.add_argument("--points", type=int, help="points per stream run (default 60,000)")
    parser.add_argument("--batches", type=int, help="batches per batch run (default 60)")
    parser.add_argument("--batch-size", type=int, default=1000, help="points per batch (1,000)")
    parser.add_argument(
        "--latency-points", type=int, help="round trips timed in the latency case (default 5,000)"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="latency case points/s (1,000)")
    parser.add_argument(
        "--stall-points", type=int, help="points sent in the stall case (default 1,000,000)"
    )
    parser.add_argument(
        "--loops", default=",".join(LOOPS), help="event loops to test (default: asyncio,uvloop)"
    )
    parser.add_argument(
        "--cases",
        help=f"comma-separated; suite: {','.join(SUITE)} (default all); "
        f"custom target: {','.join(CUSTOM)},batch (default throughput)",
    )
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="skip Kapacitor's own Python and Go agents (run beside ours when "
        "shared/kapacitor/peers is found)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every sample as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    custom = parser.add_mutually_exclusive_group()
    custom.add_argument("--socket", metavar="PATH", help="benchmark the socket UDF at PATH")
    custom.add_argument("--command", metavar="CMD", help="benchmark the process UDF CMD")
    parser.add_argument(
        "--pid", type=int, help="with --socket: the server's process id (for the stall case)"
    )
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --socket/--command: an option for Init, typed as the UDF declares it",
    )
    args = parser.parse_args(argv)

    quick = args.quick
    is_custom = bool(args.socket or args.command)
    default_cases = ("throughput",) if is_custom else SUITE
    cases = tuple(args.cases.split(",")) if args.cases else default_cases
    allowed = (*CUSTOM, "batch") if is_custom else SUITE
    unknown = [case for case in cases if case not in allowed]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    settings = Settings(
        runs=args.runs or (3 if quick else 21),
        points=args.points or (50_000 if quick else 60_000),
        batches=args.batches or (50 if quick else 60),
        batch_size=args.batch_size,
        latency_points=args.latency_points or (1_000 if quick else 5_000),
        rate=args.rate,
        stall_points=args.stall_points or (200_000 if quick else 1_000_000),
        loops=[loop for loop in args.loops.split(",") if loop],
        cases=cases,
        peers=not args.no_peers,
    )
    for loop in settings.loops:
        if loop not in LOOPS:
            parser.error(f"unknown loop {loop!r}; choose from {', '.join(LOOPS)}")

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = load_average()
    machine = describe_machine(ROOT)
    if "uvloop" in settings.loops and machine["uvloop"] == "not installed":
        log("uvloop is not installed: skipping the uvloop cases")
        settings.loops = [loop for loop in settings.loops if loop != "uvloop"]
    log(f"load average {load_start}; {machine['cpu']}, {machine['cores']}")
    baselines = Baselines()
    clock = time.monotonic()
    try:
        if is_custom:
            target: Target
            if args.socket:
                from driver import SocketTarget

                target = SocketTarget(args.socket, args.pid or 0)
                if "stall" in cases and not args.pid:
                    parser.error("the stall case needs --pid, the socket server's process id")
            else:
                target = CommandTarget(shlex.split(args.command), None)
            rows = run_custom(settings, baselines, target, parse_options(args.option))
        else:
            rows = run_suite(settings, baselines)
    except UDFFailed as exc:
        log(f"run.py: the UDF failed: {exc}")
        return 1
    sections = [] if is_custom else run_scripts(settings, quick)
    load_end = load_average()
    log(f"done in {time.monotonic() - clock:.0f} s; load average {load_end}")
    command = "python benchmarks/run.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    text = report(rows, baselines, machine, command, settings, (load_start, load_end), started)
    text = "\n\n".join([text, *sections])
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        document = {
            "started": started.isoformat(),
            "command": command,
            "settings": asdict(settings),
            "machine": machine,
            "load": {"start": load_start, "end": load_end},
            "baselines": {
                k: {v: list(r) for v, r in s.items()} for k, s in baselines.samples.items()
            },
            "rows": [asdict(row) for row in rows],
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
