"""Throughput and latency of SQLiteRecordStore.append (group commit), per durability mode.

    .venv/bin/python benchmarks/bench_records.py [--seconds 2] [--threads 1,2,4,8] [--repeat 1]
                                                  [--processes 1,2]

Each cell runs the given threads appending realistic decision records for a fixed time into
a fresh database in a temporary directory, then checks the chain. Latency is measured around
each append() call, i.e. until the record is committed. With --repeat N each cell runs N times
and the run with the highest throughput is shown (the least disturbed on a shared machine).
With --processes P > 1 a cell is P processes, each with that many threads and its own store,
appending to the same file (one chain, as agent processes sharing VETO_HOME do).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

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


def run(synchronous: str, threads: int, seconds: float,
        processes: int = 1) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "records.sqlite3"
        if processes == 1:
            rate, latencies = _append_for(path, synchronous, threads, seconds, None)
        else:
            context = multiprocessing.get_context("spawn")
            SQLiteRecordStore(path, synchronous=synchronous).close()   # create it once
            with context.Manager() as manager, context.Pool(processes) as pool:
                start = manager.Barrier(processes)
                results = pool.starmap(_append_for, [(path, synchronous, threads, seconds, start)
                                                     for _ in range(processes)])
            rate = sum(r for r, _ in results)
            latencies = sorted(x for _, xs in results for x in xs)
        with SQLiteRecordStore(path) as store:
            verify = store.verify()
        if not verify.ok:
            raise SystemExit(f"chain broken: {verify}")
        n = len(latencies)
        p50 = statistics.median(latencies) * 1e6
        p99 = latencies[min(n - 1, int(n * 0.99))] * 1e6
        return rate, p50, p99, n


def _append_for(path: Path, synchronous: str, threads: int, seconds: float,
                start: Any) -> tuple[float, list[float]]:
    """Append from ``threads`` threads for ``seconds``; records/s and sorted latencies."""
    store = SQLiteRecordStore(path, synchronous=synchronous)
    for i in range(50):  # warm up: schema pages, WAL file
        store.append(_fields(i))
    # Fields are prepared up front: this measures the store, not prepare_arguments().
    pool = [_fields(i) for i in range(512)]
    if start is not None:
        start.wait()   # every process warmed up
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
    store.close()
    return len(all_latencies) / elapsed, all_latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each cell")
    parser.add_argument("--threads", default="1,2,4,8", help="comma-separated thread counts")
    parser.add_argument("--modes", default="normal,full", help="synchronous modes to run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the best is shown")
    parser.add_argument("--processes", default="1",
                        help="comma-separated process counts, all appending to one file")
    args = parser.parse_args(argv)
    thread_counts = [int(x) for x in args.threads.split(",")]
    process_counts = [int(x) for x in args.processes.split(",")]
    print("SQLiteRecordStore.append (group commit), records committed before return")
    print(f"{'synchronous':<12} {'processes':>9} {'threads':>7} {'appends/s':>10} {'p50 µs':>8} "
          f"{'p99 µs':>8} {'n':>7}")
    for mode in args.modes.split(","):
        for processes in process_counts:
            for threads in thread_counts:
                runs = [run(mode, threads, args.seconds, processes)
                        for _ in range(max(1, args.repeat))]
                rate, p50, p99, n = max(runs)
                print(f"{mode:<12} {processes:>9} {threads:>7} {rate:>10,.0f} {p50:>8.0f} "
                      f"{p99:>8.0f} {n:>7}")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
