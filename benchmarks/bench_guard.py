"""Cost of ``Veto.guard()`` over raw evaluation of the same query in the same engine.

Measures p50/p99 latency, process CPU time per call and throughput of: raw
``OpaEngine.eval_document("veto.decision")``, the baseline: the same answer from the same OPA
engine without veto-opa; raw ``eval_document`` of the document the guard's embedded engine
evaluates instead (``veto.outcome``: the decision, or null when no rule applies, as here; see
``veto_opa.engines.embedded``), for reference; ``guard()`` with records and spans off; with
durable records on and spans off (the condition of the throughput target); with durable
records and spans on (an SDK tracer provider with a batch processor and an exporter that drops
spans). Single thread, and 4 threads sharing one Veto (throughput); raw evaluation then uses
as many OPA engines as the guard's pool (one per core). The call is the seed policy's
``execute_sql`` SELECT on analytics in production (allowed after four rules are evaluated).

    .venv/bin/python benchmarks/bench_guard.py [--seconds S]     (or ./dev bench guard ...)

Targets (embedded engine), against the fixed baseline raw ``eval_document("veto.decision")``:
guard p50 ≤ 1.15 × raw with records and spans off; ≤ 2.5 × with durable records and spans on,
and p99 under 2 ms; CPU efficiency with records on at 4 threads — guards/s at least 0.85 ×
(cores × 10⁶ / CPU µs per call), i.e. no CPU left idle. Ratios are measured in one run; the
machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import opa_bindings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from veto_opa import Veto
from veto_opa.records import SQLiteRecordStore
from veto_opa.engines.embedded import reserve_go_heap
from veto_opa.translators import build
from veto_opa.translators.bundle import load_into_engine

SEED = Path(__file__).resolve().parent.parent / "examples" / "policies.yaml"
TOOL = "execute_sql"
ARGS = {"statement": "SELECT count(*) FROM orders", "database": "analytics"}
CONTEXT = {"environment": "production", "user_role": "sre"}
INPUT = {"tool": TOOL, "args": ARGS, "context": CONTEXT, "model": "mistral-large-latest",
         "call_id": None}


class _Drop(SpanExporter):
    def export(self, spans):  # noqa: ANN001
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def latency(fns: dict[str, Callable[[], object]], seconds: float,
            chunk: int = 100) -> dict[str, tuple[float, float, float]]:
    """p50 and p99 wall time of one call, and the process CPU time per call (every thread:
    OPA's Go runtime collects garbage on threads of its own), all in µs, for each function.

    The functions take turns in chunks of ``chunk`` calls for ``seconds`` in all, so that a
    noisy moment on this shared machine falls on all of them alike; each one's percentiles
    are over all of its calls.
    """
    for fn in fns.values():
        for _ in range(200):
            fn()
    samples: dict[str, list[int]] = {name: [] for name in fns}
    cpu = dict.fromkeys(fns, 0)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for name, fn in fns.items():
            out = samples[name]
            started = time.process_time_ns()
            for _ in range(chunk):
                t = time.perf_counter_ns()
                fn()
                out.append(time.perf_counter_ns() - t)
            cpu[name] += time.process_time_ns() - started
    result = {}
    for name, xs in samples.items():
        xs.sort()
        result[name] = (statistics.median(xs) / 1e3, xs[int(len(xs) * 0.99)] / 1e3,
                        cpu[name] / len(xs) / 1e3)
    return result


def throughput(fn: Callable[[], object], threads: int, seconds: float) -> float:
    return throughput_and_cpu(fn, threads, seconds)[0]


def throughput_and_cpu(fn: Callable[[], object], threads: int,
                       seconds: float) -> tuple[float, float]:
    """Calls per second from ``threads`` threads, and the process CPU µs per call."""
    counts = [0] * threads
    stop = threading.Event()

    def work(i: int) -> None:
        while not stop.is_set():
            fn()
            counts[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.process_time()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    cpu = time.process_time() - started
    calls = max(1, sum(counts))
    return calls / seconds, cpu / calls * 1e6


def _paused_latency(fn: Callable[[], object], seconds: float) -> float:
    """p50 µs of ``fn`` called after a 0.3 ms pause each time (only the call is timed)."""
    samples = []
    end = time.perf_counter() + seconds / 2
    while time.perf_counter() < end:
        time.sleep(0.0003)
        t = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples) / 1e3


def _process_turn(home: str, seconds: float, start: object) -> tuple[float, float]:
    veto = Veto([SEED], home=home, spans=False, reload_interval=0)
    reserve_go_heap(0, wait=True)
    fn = lambda: veto.guard(TOOL, ARGS, CONTEXT, "mistral-large-latest")  # noqa: E731
    for _ in range(300):
        fn()
    start.wait()  # type: ignore[attr-defined]
    started = time.process_time()
    rate = throughput(fn, 2, seconds)
    cpu = time.process_time() - started
    veto.close()
    return rate, cpu


def processes_throughput(processes: int, seconds: float) -> tuple[float, float]:
    """Guards/s summed over processes sharing one record file, and CPU µs per call."""
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as home, context.Manager() as manager, \
            context.Pool(processes) as pool:
        start = manager.Barrier(processes)
        results = pool.starmap(_process_turn, [(home, seconds, start)] * processes)
        with SQLiteRecordStore(Path(home) / "records.sqlite3") as store:
            assert store.verify().ok
    rate = sum(r for r, _ in results)
    return rate, sum(c for _, c in results) / (rate * seconds) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--scaling", default="",
                        help="also the guards/s of the records rows on these thread counts, "
                             "e.g. 1,2,4,8")
    parser.add_argument("--processes", type=int, default=0,
                        help="also guards/s with records on (spans off) from this many "
                             "processes of 2 threads each, sharing one VETO_HOME")
    args = parser.parse_args()
    s = args.seconds
    bundle = build([SEED]).bundle()
    # As many raw OPA engines as the guard's pool holds (one per core), taken from a queue the
    # same way, so that the 4-thread row compares like with like.
    raw_engines: queue.SimpleQueue[opa_bindings.OpaEngine] = queue.SimpleQueue()
    for _ in range(os.cpu_count() or 1):
        engine = opa_bindings.OpaEngine()
        load_into_engine(bundle, engine)
        raw_engines.put(engine)

    def evaluation(document: str) -> Callable[[], object]:
        def raw() -> object:
            engine = raw_engines.get()
            try:
                return engine.eval_document(document, INPUT)
            finally:
                raw_engines.put(engine)
        return raw

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop()))
    with tempfile.TemporaryDirectory() as home:
        plain = Veto([SEED], records=False, spans=False, reload_interval=0)
        recorded = Veto([SEED], home=Path(home) / "records-only", spans=False,
                        reload_interval=0)
        full = Veto([SEED], home=home, tracer_provider=provider, reload_interval=0)
        guard_plain = lambda: plain.guard(TOOL, ARGS, CONTEXT, "mistral-large-latest")  # noqa
        guard_rec = lambda: recorded.guard(TOOL, ARGS, CONTEXT, "mistral-large-latest")  # noqa
        guard_full = lambda: full.guard(TOOL, ARGS, CONTEXT, "mistral-large-latest")  # noqa
        # Raw: the decision through the bindings' public method. For reference, the document
        # the guard's engine evaluates to get the same answer (veto.outcome).
        document = plain.engine.document
        fns = {"raw": evaluation("veto.decision"), "outcome": evaluation(document),
               "plain": guard_plain, "records": guard_rec, "full": guard_full}
        assert guard_full().decision == "allow"
        # The Go heap reserve Veto made (VETO_GO_HEAP_RESERVE) serves the raw engines too: they
        # share the process's Go heap. Wait until it is in place.
        reserved = reserve_go_heap(0, wait=True)
        # Interleave the measurements so that a noisy moment hurts all of them alike.
        best = latency(fns, s)
        # Throughput in turns of half a second each, for the same reason.
        turns = max(1, round(s / 0.5))
        tp = dict.fromkeys(fns, 0.0)
        tp_cpu = dict.fromkeys(fns, 0.0)
        for _ in range(turns):
            for name, fn in fns.items():
                rate, cpu_per_call = throughput_and_cpu(fn, 4, s / turns)
                tp[name] += rate / turns
                tp_cpu[name] += cpu_per_call / turns
        scaling = {}
        for n in [int(x) for x in args.scaling.split(",") if x.strip()]:
            for name in ("records", "full"):
                fn = fns[name]
                started = time.process_time()
                rate = throughput(fn, n, s)
                scaling[n, name] = (rate, (time.process_time() - started) / (rate * s) * 1e6)
        paused = _paused_latency(evaluation("veto.decision"), s)
        count = full.records.count() + recorded.records.count()
        ok = full.records.verify().ok and recorded.records.verify().ok
        for veto in (plain, recorded, full):
            veto.close()
    provider.shutdown()
    labels = {"raw": "raw eval_document(veto.decision)",
              "outcome": f"raw eval_document({document}), what the guard evaluates",
              "plain": "guard, records+spans off",
              "records": "guard, records on, spans off", "full": "guard, records+spans on"}
    cores = os.cpu_count() or 1
    print("what | p50 µs | p99 µs | p50 / raw p50 | CPU µs per call | 4 threads ops/s | "
          "CPU µs per call, 4 threads | CPU efficiency")
    print("---- | -----: | -----: | ------------: | --------------: | --------------: | "
          "---: | ---:")
    efficiency = {}
    for key in labels:
        p50, p99, cpu = best[key]
        efficiency[key] = tp[key] / (cores * 1e6 / tp_cpu[key])
        print(f"{labels[key]} | {p50:.0f} | {p99:.0f} | {p50 / best['raw'][0]:.2f} | "
              f"{cpu:.0f} | {tp[key]:.0f} | {tp_cpu[key]:.0f} | {efficiency[key]:.2f}")
    if scaling:
        print("\nthreads | records on, spans off: ops/s | CPU µs per call | "
              "records+spans on: ops/s | CPU µs per call")
        print("------: | ---: | ---: | ---: | ---:")
        for n in sorted({n for n, _ in scaling}):
            (r1, c1), (r2, c2) = scaling[n, "records"], scaling[n, "full"]
            print(f"{n} | {r1:.0f} | {c1:.0f} | {r2:.0f} | {c2:.0f}")
    if args.processes:
        rate, cpu = processes_throughput(args.processes, s)
        print(f"\n{args.processes} processes × 2 threads, one record file, records on, spans off: "
              f"{rate:.0f} guards/s, {cpu:.0f} CPU µs per call")
    print(f"\nraw eval_document(veto.decision) after a 0.3 ms pause (as between an agent's "
          f"calls, and in guard() after its record): p50 {paused:.0f} µs, "
          f"{paused / best['raw'][0]:.2f} × the raw p50 of a tight loop (OPA's Go threads park "
          "when idle and wake for the next call)")
    plain_ratio = best["plain"][0] / best["raw"][0]
    full_ratio = best["full"][0] / best["raw"][0]
    print(f"\nrecords written: {count}, chain verifies: {ok}; Go heap reserve: {reserved} MiB "
          f"(VETO_GO_HEAP_RESERVE; GOGC={os.environ.get('GOGC', 'unset')})")
    print(f"targets: plain ≤ 1.15× raw: {'yes' if plain_ratio <= 1.15 else 'NO'} "
          f"({plain_ratio:.2f}); full ≤ 2.5× raw: {'yes' if full_ratio <= 2.5 else 'NO'} "
          f"({full_ratio:.2f}); full p99 < 2 ms: {'yes' if best['full'][1] < 2000 else 'NO'} "
          f"({best['full'][1] / 1000:.2f} ms); CPU efficiency with records ≥ 0.85: "
          f"{'yes' if efficiency['records'] >= 0.85 else 'NO'} ({efficiency['records']:.2f}, "
          f"{tp['records']:.0f} guards/s at {tp_cpu['records']:.0f} CPU µs per call on "
          f"{cores} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
