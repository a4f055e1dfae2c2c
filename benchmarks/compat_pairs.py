"""Kapacitor's Python agent and ``aioudf compat`` on its script, run in turn: paired ratios.

run.py measures each peer in a block of its own, minutes apart; on a shared
machine the load moves between blocks by more than the difference sought.
This starts the agent's example and the same script under ``aioudf compat``
one after the other, round after round, on run.py's workload (the driver's
``throughput()``: pipes, the same bytes), and prints the median of each
round's ratio to the agent. ``--src DIR`` (repeatable) adds ``aioudf
compat`` with the aioudf of another checkout's ``src`` folder, to compare
code before and after a change in the same minutes::

    .venv/bin/python benchmarks/compat_pairs.py outliers --rounds 15
    .venv/bin/python benchmarks/compat_pairs.py moving_avg --src ../before/src

Each round runs every target at two lengths (``--batches`` or ``--points``,
a short and a long workload), and the report adds the *marginal* CPU a
point: the long run's CPU less the short run's, over the points between
them. That is what one more point costs once the process is warm, start-up
transients cancelled out, and it shows what a short run hides: Kapacitor's
agent parses every request into one message it reuses, whose memory
protobuf never gives back, so its cost a point grows as it runs (and its
heap with it), where aioudf's stays flat.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from driver import CommandTarget, init_request, query_info, throughput
from peers import COMPAT, peers_for
from workload import batch_stream, point_stream

_OPTIONS = {
    "outliers": {"field": ["usage_idle"], "scale": ["1.5"]},
    "moving_avg": {"field": ["usage_idle"], "size": ["10"]},
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("case", choices=sorted(_OPTIONS))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--batches", default="50,500", help="outliers: short and long run (default 50,500)"
    )
    parser.add_argument(
        "--points",
        default="50000,500000",
        help="moving_avg: short and long run (default 50000,500000)",
    )
    parser.add_argument("--src", action="append", default=[], help="another aioudf's src folder")
    args = parser.parse_args(argv)
    peers = {peer.name: peer for peer in peers_for(args.case)}
    if "Python agent" not in peers:
        parser.error("Kapacitor's Python agent was not found (shared/kapacitor/peers)")
    agent, compat = peers["Python agent"], peers[COMPAT]
    targets = {"Python agent": CommandTarget(agent.command(), agent.env)}
    targets["aioudf compat"] = CommandTarget(compat.command(), compat.env)
    for src in args.src:
        env = dict(compat.env)
        env["PYTHONPATH"] = f"{Path(src).resolve()}:{env['PYTHONPATH']}"
        targets[f"aioudf compat ({src})"] = CommandTarget(compat.command(), env)
    lengths = _lengths(parser, args.batches if args.case == "outliers" else args.points)
    workloads = [batch_stream(n) if args.case == "outliers" else point_stream(n) for n in lengths]
    inits = {name: init_request(_OPTIONS[args.case], query_info(t)) for name, t in targets.items()}
    # runs[name][length index]: (points/s, CPU µs a point, CPU seconds, points) per round
    runs: dict[str, list[list[tuple[float, float, float, int]]]] = {
        name: [[] for _ in lengths] for name in targets
    }
    for _ in range(args.rounds):
        for index, workload in enumerate(workloads):
            for name, target in targets.items():
                result = throughput(target, inits[name], workload)
                runs[name][index].append(
                    (
                        result.points_in / result.seconds,
                        result.udf_cpu / result.points_in * 1e6,
                        result.udf_cpu,
                        result.points_in,
                    )
                )
    base = runs["Python agent"]
    for index, length in enumerate(lengths):
        unit = "batches" if args.case == "outliers" else "points"
        print(f"{length:,} {unit}:", flush=True)
        for name in targets:
            rounds = runs[name][index]
            line = f"  {name}: {statistics.median(r[0] for r in rounds):,.0f} points/s, UDF CPU "
            line += f"{statistics.median(r[1] for r in rounds):.2f} µs/point"
            if name != "Python agent":
                pairs = list(zip(rounds, base[index], strict=True))
                rate = statistics.median(r[0] / a[0] for r, a in pairs)
                cpu = statistics.median(r[1] / a[1] for r, a in pairs)
                line += f"; / agent: points/s {rate:.2f} x, CPU a point {cpu:.2f} x"
            print(line, flush=True)
    print("marginal CPU a point (long run less short run):", flush=True)
    agent_margins = _margins(base)
    for name in targets:
        margins = _margins(runs[name])
        line = f"  {name}: {statistics.median(margins):.2f} µs/point"
        if name != "Python agent":
            ratios = [m / a for m, a in zip(margins, agent_margins, strict=True)]
            line += f"; / agent: {statistics.median(ratios):.2f} x"
        print(line, flush=True)
    return 0


def _lengths(parser: argparse.ArgumentParser, text: str) -> list[int]:
    try:
        short, long = (int(part) for part in text.split(","))
    except ValueError:
        parser.error(f"expected two lengths, SHORT,LONG: {text!r}")
    if not 0 < short < long:
        parser.error(f"expected 0 < SHORT < LONG: {text!r}")
    return [short, long]


def _margins(runs: list[list[tuple[float, float, float, int]]]) -> list[float]:
    """Per round: µs of CPU each point past the short run cost in the long one."""
    short, long = runs
    return [(lr[2] - sr[2]) / (lr[3] - sr[3]) * 1e6 for sr, lr in zip(short, long, strict=True)]


if __name__ == "__main__":
    raise SystemExit(main())
