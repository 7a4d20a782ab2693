"""Throughput and latency of SQLiteRecordStore.append (group commit), per durability mode.

    .venv/bin/python benchmarks/bench_records.py [--seconds 2] [--threads 1,2,4,8] [--repeat 1]

Each cell runs the given threads appending realistic decision records for a fixed time into
a fresh database in a temporary directory, then checks the chain. Latency is measured around
each append() call, i.e. until the record is committed. With --repeat N each cell runs N times
and the run with the highest throughput is shown (the least disturbed on a shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from veto_opa.records import SQLiteRecordStore, arguments_digest, prepare_arguments

KEY = b"k" * 32


def _fields(i: int) -> dict[str, object]:
    raw = (
        f'{{"database": "analytics", "statement": "SELECT * FROM orders WHERE id = {i}", '
        '"password": "hunter2"}'
    )
    prepared = prepare_arguments(raw, ["args.password"], KEY)
    return {
        "tool": "execute_sql",
        **prepared.fields(),
        "context": {"environment": "production", "subject": "user:alice"},
        "model": "mistral-large-latest",
        "call_id": f"call_{i}",
        "decision": "deny",
        "rule": "block_production_database_deletes",
        "reason": "Destructive SQL is not allowed on production databases",
        "matched": [{"rule": "block_production_database_deletes", "action": "deny"}],
        "policy_name": "sre",
        "policy_revision": arguments_digest(raw),
        "engine": "embedded",
        "latency_us": 180,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
    }


def run(synchronous: str, threads: int, seconds: float) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as home:
        store = SQLiteRecordStore(Path(home) / "records.sqlite3", synchronous=synchronous)
        for i in range(50):  # warm up: schema pages, WAL file
            store.append(_fields(i))
        # Fields are prepared up front: this measures the store, not prepare_arguments().
        pool = [_fields(i) for i in range(512)]
        latencies: list[list[float]] = [[] for _ in range(threads)]
        start_gate = threading.Barrier(threads + 1)
        deadline = 0.0

        def worker(slot: int) -> None:
            nonlocal deadline
            mine = latencies[slot]
            start_gate.wait()
            i = 0
            while True:
                fields = pool[i % len(pool)]
                t0 = time.perf_counter()
                if t0 >= deadline:
                    return
                store.append(fields)
                mine.append(time.perf_counter() - t0)
                i += 1

        workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for thread in workers:
            thread.start()
        begin = time.perf_counter()
        deadline = begin + seconds
        start_gate.wait()
        for thread in workers:
            thread.join()
        elapsed = time.perf_counter() - begin
        all_latencies = sorted(x for per_thread in latencies for x in per_thread)
        verify = store.verify()
        store.close()
        if not verify.ok:
            raise SystemExit(f"chain broken: {verify}")
        n = len(all_latencies)
        p50 = statistics.median(all_latencies) * 1e6
        p99 = all_latencies[min(n - 1, int(n * 0.99))] * 1e6
        return n / elapsed, p50, p99, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each cell")
    parser.add_argument("--threads", default="1,2,4,8", help="comma-separated thread counts")
    parser.add_argument("--modes", default="normal,full", help="synchronous modes to run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the best is shown")
    args, _ = parser.parse_known_args(argv)  # ./dev bench passes its arguments to every bench
    thread_counts = [int(x) for x in args.threads.split(",")]
    print("SQLiteRecordStore.append (group commit), records committed before return")
    print(
        f"{'synchronous':<12} {'threads':>7} {'appends/s':>10} {'p50 µs':>8} {'p99 µs':>8} {'n':>7}"
    )
    for mode in args.modes.split(","):
        for threads in thread_counts:
            runs = [run(mode, threads, args.seconds) for _ in range(max(1, args.repeat))]
            rate, p50, p99, n = max(runs)
            print(f"{mode:<12} {threads:>7} {rate:>10,.0f} {p50:>8.0f} {p99:>8.0f} {n:>7}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
