"""What the Go heap reserve (``VETO_GO_HEAP_RESERVE``) buys: guard latency with and without it.

The reserve changes the Go runtime of the whole process, so each setting runs in processes of
its own; the two take turns, ``--rounds`` times, each turn a fresh process deciding the seed
policy's ``execute_sql`` SELECT ``--calls`` times (records and spans off, one thread).
Percentiles are over the calls of all turns of a setting.

    .venv/bin/python benchmarks/bench_reserve.py [--rounds 6] [--calls 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SEED = Path(__file__).resolve().parent.parent / "examples" / "policies.yaml"


def turn(calls: int) -> None:
    """One process's turn: print the latencies (ns) and CPU time of ``calls`` guards."""
    from veto_opa import Veto
    from veto_opa.engines.embedded import reserve_go_heap

    args = {"statement": "SELECT count(*) FROM orders", "database": "analytics"}
    context = {"environment": "production", "user_role": "sre"}
    with Veto([SEED], records=False, spans=False, reload_interval=0, pool_size=1) as veto:
        reserve_go_heap(0, wait=True)
        for _ in range(500):
            veto.guard("execute_sql", args, context)
        samples = []
        started = time.process_time_ns()
        for _ in range(calls):
            t = time.perf_counter_ns()
            veto.guard("execute_sql", args, context)
            samples.append(time.perf_counter_ns() - t)
        cpu = time.process_time_ns() - started
    print(json.dumps({"samples": samples, "cpu": cpu}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--turn", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.turn:
        turn(args.calls)
        return 0
    results: dict[str, list[int]] = {"0": [], "16": []}
    cpu = dict.fromkeys(results, 0)
    for _ in range(args.rounds):
        for mib in results:
            env = {k: v for k, v in os.environ.items() if k not in ("GOGC", "GOMEMLIMIT")}
            env["VETO_GO_HEAP_RESERVE"] = mib
            out = subprocess.run([sys.executable, __file__, "--turn", "--calls", str(args.calls)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            turn_result = json.loads(out.strip().splitlines()[-1])
            results[mib] += turn_result["samples"]
            cpu[mib] += turn_result["cpu"]
    print("VETO_GO_HEAP_RESERVE | p50 µs | p99 µs | p99.9 µs | CPU µs per call")
    print("---: | ---: | ---: | ---: | ---:")
    rows = {}
    for mib, samples in results.items():
        samples.sort()
        rows[mib] = (statistics.median(samples) / 1e3, samples[int(len(samples) * 0.99)] / 1e3,
                     samples[int(len(samples) * 0.999)] / 1e3, cpu[mib] / len(samples) / 1e3)
        p50, p99, p999, per_call = rows[mib]
        print(f"{mib} MiB | {p50:.0f} | {p99:.0f} | {p999:.0f} | {per_call:.0f}")
    off, on = rows["0"], rows["16"]
    print(f"\nwith the reserve: p50 {on[0] / off[0]:.2f}×, p99 {on[1] / off[1]:.2f}×, "
          f"CPU {on[3] / off[3]:.2f}× of without ({args.rounds} rounds of {args.calls} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
