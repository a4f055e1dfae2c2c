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
    parser.add_argument("--batches", type=int, default=50, help="outliers (default 50)")
    parser.add_argument("--points", type=int, default=50_000, help="moving_avg (default 50,000)")
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
    workload = batch_stream(args.batches) if args.case == "outliers" else point_stream(args.points)
    inits = {name: init_request(_OPTIONS[args.case], query_info(t)) for name, t in targets.items()}
    cpu: dict[str, list[float]] = {name: [] for name in targets}
    rate: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(args.rounds):
        for name, target in targets.items():
            result = throughput(target, inits[name], workload)
            cpu[name].append(result.udf_cpu / result.points_in * 1e6)
            rate[name].append(result.points_in / result.seconds)
    for name in targets:
        line = f"{name}: {statistics.median(rate[name]):,.0f} points/s, UDF CPU "
        line += f"{statistics.median(cpu[name]):.2f} µs/point"
        if name != "Python agent":
            base_rate, base_cpu = rate["Python agent"], cpu["Python agent"]
            pairs = zip(rate[name], base_rate, cpu[name], base_cpu, strict=True)
            ratios = [(r / ra, c / ca) for r, ra, c, ca in pairs]
            line += f"; / agent: points/s {statistics.median(r for r, _ in ratios):.2f} x, "
            line += f"CPU a point {statistics.median(c for _, c in ratios):.2f} x"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
