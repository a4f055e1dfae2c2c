"""``aioudf replay`` against the UDF's own speed, and its memory on a long input.

    .venv/bin/python benchmarks/replay.py            # about two minutes
    .venv/bin/python benchmarks/replay.py --quick    # a smoke run

Three figures, each the median of ``--runs`` runs, taken in turn so that a
drift of the machine's speed hits them alike:

* **in process**: ``aioudf replay examples/mirror.py:Mirror FILE.lp``, line
  protocol in and out (to /dev/null), the handler on the replay's own loop;
* **socket**: ``aioudf replay --socket PATH FILE.lp`` against
  ``examples/mirror.py --socket PATH``;
* **driver**: ``driver.py`` (the suite's load generator: pre-encoded
  Requests, one ``sendall``) against the same socket server, the same number
  of points: the UDF's speed, the most any client can get out of it.

Replay rates are the replay's own (its summary line: Init to the UDF's close,
reading, encoding and writing included); the report gives them as ratios to
the driver's rate of the same run. The memory case pipes ``--memory-points``
generated points (no file) into ``aioudf replay ... -`` and reports the
replay process's peak RSS, at two sizes: bounded memory shows as the same
peak for both.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from driver import init_request, query_info, start_socket_server, throughput  # noqa: E402
from machine import checkout_env, describe_machine, load_average, log, machine_line  # noqa: E402
from workload import point_stream  # noqa: E402

_RATE = re.compile(r"\(([\d,]+) points/s\)")


def lines(points: int, seed: int = 1) -> Iterator[str]:
    """The suite's telegraf-like ``cpu`` points (workload.py) as line protocol."""
    rng = random.Random(seed)
    for i in range(points):
        idle = rng.uniform(60.0, 99.0)
        user = rng.uniform(0.0, 100.0 - idle)
        yield (
            f"cpu,cpu=cpu{(i // 10) % 4},host=server{i % 10:02d} usage_idle={idle},"
            f"usage_system={100.0 - idle - user},usage_user={user} "
            f"{1_700_000_000 * 10**9 + (i // 40) * 10**9}\n"
        )


def write_lines(stream: object, points: int) -> None:
    write = stream.write  # type: ignore[attr-defined]
    chunk: list[str] = []
    for line in lines(points):
        chunk.append(line)
        if len(chunk) >= 10_000:
            write("".join(chunk))
            chunk = []
    write("".join(chunk))


def replay(arguments: Sequence[str]) -> float:
    """Run ``aioudf replay`` with ``arguments``; its points/s."""
    done = subprocess.run(
        [sys.executable, "-m", "aioudf", "replay", "--progress", "never", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=checkout_env(ROOT),
        text=True,
        check=False,
    )
    match = _RATE.search(done.stderr)
    if done.returncode or match is None:
        raise SystemExit(f"aioudf replay failed: {done.stderr[-2000:]}")
    return float(match.group(1).replace(",", ""))


def _high_water_mark(pid: int) -> int:
    """``VmHWM`` of a live process, in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss(points: int) -> tuple[float, int]:
    """Replay ``points`` generated points from stdin; (seconds, peak RSS in bytes).

    The peak is the replay process's own ``VmHWM``, read until it exits
    (``ru_maxrss`` would count the benchmark's pages the child had before exec).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "aioudf", "replay", "--progress", "never", "--quiet",
         str(ROOT / "examples" / "mirror.py") + ":Mirror", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=checkout_env(ROOT),
        text=True,
    )  # fmt: skip
    assert process.stdin is not None
    stdin = process.stdin
    started = time.monotonic()

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError):
            write_lines(stdin, points)
            stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    peak = 0
    while process.poll() is None:
        peak = max(peak, _high_water_mark(process.pid))
        time.sleep(0.05)
    feeder.join()
    if process.returncode:
        raise SystemExit(f"aioudf replay of {points:,} points failed ({process.returncode})")
    return time.monotonic() - started, peak


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer points and runs")
    parser.add_argument("--runs", type=int, help="runs per figure (default 5, quick 3)")
    parser.add_argument("--points", type=int, help="points per run (default 200,000; quick 50,000)")
    parser.add_argument(
        "--memory-points",
        type=int,
        help="points of the larger memory run (default 2,000,000; quick 200,000); "
        "the smaller is a tenth",
    )
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    points = args.points or (50_000 if args.quick else 200_000)
    memory_points = args.memory_points or (200_000 if args.quick else 2_000_000)
    load_start = load_average()
    machine = describe_machine(ROOT)
    log(f"load average {load_start}; {machine['cpu']}, {machine['cores']}")
    mirror = str(ROOT / "examples" / "mirror.py")
    rates: dict[str, list[float]] = {"in process": [], "socket": [], "driver": []}
    ratios: dict[str, list[float]] = {"in process": [], "socket": []}
    with tempfile.TemporaryDirectory() as directory:
        data = os.path.join(directory, "points.lp")
        with open(data, "w") as file:
            write_lines(file, points)
        workload = point_stream(points)
        path = os.path.join(directory, "mirror.sock")
        server = [sys.executable, mirror, "--socket", path, "--log-level", "WARNING"]
        with start_socket_server(server, path, checkout_env(ROOT)) as target:
            init = init_request({}, query_info(target))
            for run in range(1, runs + 1):
                driver = throughput(target, init, workload).points_per_second
                socket = replay(["--socket", path, data])
                in_process = replay([mirror + ":Mirror", data])
                for name, rate in (
                    ("driver", driver),
                    ("socket", socket),
                    ("in process", in_process),
                ):
                    rates[name].append(rate)
                ratios["socket"].append(socket / driver)
                ratios["in process"].append(in_process / driver)
                log(
                    f"run {run}/{runs}: driver {driver:,.0f}, replay --socket {socket:,.0f}, "
                    f"in process {in_process:,.0f} points/s"
                )
    memory = []
    for size in (memory_points // 10, memory_points):
        seconds, peak = peak_rss(size)
        memory.append((size, seconds, peak))
        log(f"memory: {size:,} points in {seconds:.1f} s, peak RSS {peak / 2**20:.1f} MiB")
    load_end = load_average()
    print(f"## aioudf replay: {points:,} points of line protocol, mirror, medians of {runs} runs\n")
    print("| How | points/s | x the driver on the socket |")
    print("|---|---:|---:|")
    print(f"| driver.py -> socket (the UDF's speed) | {median(rates['driver']):,.0f} | 1.00 |")
    for name, label in (
        ("socket", "aioudf replay --socket"),
        ("in process", "aioudf replay MODULE:CLASS"),
    ):
        print(f"| {label} | {median(rates[name]):,.0f} | {median(ratios[name]):.2f} |")
    print("\n| Points from stdin (generated) | seconds | peak RSS |")
    print("|---:|---:|---:|")
    for size, seconds, peak in memory:
        print(f"| {size:,} | {seconds:.1f} | {peak / 2**20:.1f} MiB |")
    print("\n" + machine_line(machine, load_start, load_end))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
