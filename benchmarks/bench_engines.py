"""Latency and throughput of the engines, next to what they are built on.

    .venv/bin/python benchmarks/bench_engines.py [--seconds 2] [--threads 4] [--rounds 5]

Rows, all deciding the seed policy (examples/policies.yaml) for a cycle of realistic inputs:

- raw ``OpaEngine.eval_document`` — the embedded OPA engine without veto-opa;
- ``EmbeddedEngine.decide`` on one thread, then on ``--threads`` threads (pool: cpu count),
  and once more against raw evaluation on the very OPA engine it uses (a pool of one), which
  isolates the engine's own per-call cost from differences between OPA engine instances;
- ``RestEngine.decide`` against the OPA stand-in (tests/opa_standin.py) running in a child
  process, as OPA runs in its own, one thread;
- a bare ``http.client`` POST over a kept-alive connection to the same stand-in, sending the
  same bytes as the engine (the engine's headers and its body: checked on the requests an
  in-process stand-in records), so the difference is the engine's own cost: its HTTP client (httpx),
  serialising the input into the body, injecting the trace context, parsing and checking
  the answer. The requirement: REST engine <= 1.5 x the bare POST at p50.

Latency is measured around each call. Paired rows (raw vs embedded, REST vs http.client)
alternate call by call, so that load from other processes hits both alike; ops/s of a paired
row is its share of the time (calls / seconds spent in that row's calls). REST vs bare runs in
``--rounds`` rounds (the stand-in's own cost dominates both and drifts); each round's p50s and
ratio are printed, and the table rows (c) and (d) pool every round.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opa_bindings import OpaEngine  # noqa: E402

from tests.opa_standin import OpaStandin  # noqa: E402
from veto_opa.engines.embedded import EmbeddedEngine  # noqa: E402
from veto_opa.engines.rest import RestEngine  # noqa: E402
from veto_opa.translators.bundle import load_into_engine, write_tar_gz  # noqa: E402
from veto_opa.translators.compiler import compile_policies  # noqa: E402
from veto_opa.translators.loader import load_policy  # noqa: E402


def _call(tool: str, args: dict[str, Any], **context: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args, "context": context, "model": "mistral-large-latest",
            "call_id": "call_1"}


INPUTS = [
    _call("execute_sql", {"statement": "DROP TABLE users", "database": "analytics"},
          environment="production"),
    _call("execute_sql", {"statement": "SELECT * FROM orders", "database": "analytics"},
          environment="production", user_role="analyst"),
    _call("execute_sql", {"statement": "SELECT 1", "database": "billing"},
          environment="staging"),
    _call("rotate_secret", {"service": "stripe", "secret_path": "/secrets/app/key"}),
    _call("send_email", {"to": "oncall@example.com", "subject": "disk full"}),
]

Samples = list[float]


def measure(fn: Callable[[dict[str, Any]], Any], seconds: float, threads: int = 1) -> Samples:
    """Per-call latencies (seconds) of ``fn`` over the inputs, from ``threads`` threads."""
    for input in INPUTS * 4:   # warm up
        fn(input)
    deadline = time.perf_counter() + seconds
    results: list[Samples] = [[] for _ in range(threads)]

    def worker(out: Samples) -> None:
        i = 0
        clock = time.perf_counter
        while True:
            started = clock()
            fn(INPUTS[i % len(INPUTS)])
            ended = clock()
            out.append(ended - started)
            i += 1
            if ended > deadline:
                return

    workers = [threading.Thread(target=worker, args=(out,)) for out in results]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return [s for out in results for s in out]


def paired(cells: dict[str, Callable[[dict[str, Any]], Any]],
           seconds: float, *, warm: bool = True) -> dict[str, Samples]:
    """Latencies of several functions called in turn on the same inputs, one call each.

    Alternating call by call (the order flipping every round) makes load from other processes
    and CPU frequency changes hit every function alike, so their ratio is meaningful.
    """
    names = list(cells)
    for input in INPUTS * 4 if warm else ():   # warm up
        for name in names:
            cells[name](input)
    samples: dict[str, Samples] = {name: [] for name in names}
    clock = time.perf_counter
    deadline = clock() + seconds * len(names)
    i = 0
    while clock() < deadline:
        input = INPUTS[i % len(INPUTS)]
        for name in (names if i % 2 else reversed(names)):
            started = clock()
            cells[name](input)
            samples[name].append(clock() - started)
        i += 1
    return samples


def percentiles(samples: Samples) -> tuple[float, float]:
    """p50 and p99 in µs."""
    ordered = sorted(samples)
    return (statistics.median(ordered) * 1e6,
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6)


def row(name: str, samples: Samples, seconds: float | None, threads: int) -> str:
    """A table row; ops/s over ``seconds`` of wall time, or over the calls' own time if None."""
    p50, p99 = percentiles(samples)
    ops = len(samples) / (seconds if seconds is not None else sum(samples))
    return f"| {name:<44} | {threads:>7} | {p50:>8.1f} | {p99:>8.1f} | {ops:>9,.0f} |"


def _engine_headers(bundle: Any, input: dict[str, Any]) -> dict[str, str]:
    """The headers the REST engine sends, as a stand-in receives them (http.client adds Host
    and Content-Length itself)."""
    standin = OpaStandin(bundle, pool_size=1)
    with standin as url, RestEngine(url) as engine:
        engine.decide(input)
    return {name: value for name, value in standin.requests[-1].headers.items()
            if name not in ("host", "content-length")}


def _check_same_requests(bundle: Any, bodies: dict[int, bytes],
                         headers: dict[str, str]) -> None:
    """The engine and the bare POST send the same request for every input."""
    standin = OpaStandin(bundle, pool_size=1)
    with standin as url, RestEngine(url) as engine:
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port))
        try:
            for input in INPUTS:
                engine.decide(input)
                connection.request("POST", "/v1/data/veto/decision", body=bodies[id(input)],
                                   headers=headers)
                connection.getresponse().read()
                engine_sent, bare_sent = standin.requests[-2:]
                assert engine_sent == bare_sent, (engine_sent, bare_sent)
        finally:
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per row")
    parser.add_argument("--threads", type=int, default=4, help="threads of the parallel row")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of REST vs bare POST, --seconds each")
    options = parser.parse_args()

    bundle = compile_policies([load_policy(ROOT / "examples" / "policies.yaml")]).bundle()
    raw = OpaEngine()
    load_into_engine(bundle, raw)
    embedded = EmbeddedEngine(bundle)
    single = EmbeddedEngine(bundle, pool_size=1)
    inner = single._pool.engines[0]   # the one OPA engine behind `single`
    # The same requests from both clients, checked on an in-process stand-in that records
    # them; the timed rounds go to a stand-in in a child process, as OPA is another process
    # (in one process, the client's Python work and the server's take turns on the GIL).
    # The bare POST sends the bytes the engine makes of each input (which the engine makes
    # again on every call: that is part of its cost).
    bodies = {id(i): json.dumps({"input": i}, separators=(",", ":"), ensure_ascii=False).encode()
              for i in INPUTS}
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "veto.tar.gz"
        write_tar_gz(bundle, archive)
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.opa_standin", str(archive), "--decision-logs"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdin is not None
        url = child.stdout.readline().strip()
    rest = RestEngine(url)
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    headers = _engine_headers(bundle, INPUTS[0])

    def rest_decide(input: dict[str, Any]) -> Any:
        return rest.decide(input)

    def bare_post(input: dict[str, Any]) -> Any:
        connection.request("POST", "/v1/data/veto/decision", body=bodies[id(input)],
                           headers=headers)
        return json.loads(connection.getresponse().read())

    try:
        _check_same_requests(bundle, bodies, headers)
        local = paired({"raw": lambda i: raw.eval_document("veto.decision", i),
                        "embedded": embedded.decide}, options.seconds)
        parallel = measure(embedded.decide, options.seconds, options.threads)
        same = paired({"raw": lambda i: inner.eval_document("veto.decision", i),
                       "decide": single.decide}, options.seconds)
        rounds = [paired({"rest": rest_decide, "bare": bare_post},
                         options.seconds, warm=r == 0)
                  for r in range(options.rounds)]
    finally:
        connection.close()
        rest.close()
        child.stdin.close()
        child.wait(timeout=30)
        embedded.close()
        single.close()
        raw.close()

    seconds = options.seconds
    print(f"engines on the seed policy; {os.cpu_count()} CPUs, pool size {embedded.pool_size}, "
          f"{seconds:g} s per row, load average {os.getloadavg()[0]:.2f}")
    print()
    print(f"| {'what':<44} | threads | p50 µs   | p99 µs   | ops/s     |")
    print(f"|{'-' * 46}|---------|----------|----------|-----------|")
    print(row("(a) raw OpaEngine.eval_document", local["raw"], None, 1))
    print(row("(b) EmbeddedEngine.decide", local["embedded"], None, 1))
    print(row("(b) EmbeddedEngine.decide", parallel, seconds, options.threads))
    remote = {name: [s for r in rounds for s in r[name]] for name in ("rest", "bare")}
    print(row("(c) RestEngine.decide -> stand-in process", remote["rest"], None, 1))
    print(row("(d) http.client POST -> same, kept alive", remote["bare"], None, 1))
    print()
    print("| round | (c) p50 µs | (d) p50 µs | (c) p99 µs | (d) p99 µs | (c)/(d) p50 |")
    print("|-------|------------|------------|------------|------------|-------------|")
    for r, samples in enumerate(rounds, 1):
        (rest50, rest99), (bare50, bare99) = (percentiles(samples["rest"]),
                                              percentiles(samples["bare"]))
        print(f"| {r:>5} | {rest50:>10.1f} | {bare50:>10.1f} | {rest99:>10.1f} | {bare99:>10.1f} "
              f"| {rest50 / bare50:>11.2f} |")
    print()
    ratio = statistics.median(local["embedded"]) / statistics.median(local["raw"])
    overhead = (statistics.median(local["embedded"]) - statistics.median(local["raw"])) * 1e6
    same_ratio = statistics.median(same["decide"]) / statistics.median(same["raw"])
    same_overhead = (statistics.median(same["decide"]) - statistics.median(same["raw"])) * 1e6
    client = (statistics.median(remote["rest"]) - statistics.median(remote["bare"])) * 1e6
    print(f"embedded / raw at p50: {ratio:.3f}x ({overhead:+.1f} µs per call; two OPA engines, "
          "which differ by tens of µs between instances)")
    print(f"decide / eval_document on the same OPA engine (pool of 1) at p50: {same_ratio:.3f}x "
          f"({same_overhead:+.1f} µs per call: the engine's own overhead)")
    print(f"REST client cost over a bare http.client POST at p50: {client:+.1f} µs per call")
    rest_ratio = statistics.median(remote["rest"]) / statistics.median(remote["bare"])
    print(f"REST engine / bare POST p50: {rest_ratio:.2f} (target ≤ 1.5)")


if __name__ == "__main__":
    main()
