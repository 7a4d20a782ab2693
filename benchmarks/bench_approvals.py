"""Latency of guard() on the approval paths, beside a plain deny measured in the same run.

    .venv/bin/python benchmarks/bench_approvals.py [--calls 300]

One thread, the real embedded engine, records on (synchronous=normal), spans off, in a fresh
veto home. Rows:

- deny: a call a deny rule refuses (no approval work: the baseline);
- pending again: a call whose request is already pending (found by its binding);
- new request: a call asking for the first time (a chained ``requested`` event, a row);
- grant used: an approved call let through (the chain entries checked, the Ed25519 vote
  verified against the registry, a chained ``used`` event).

The approvals store commits with synchronous=FULL (an fsync per transaction), so the disk
decides most of the approval rows; the ratios to the deny row are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from veto_opa import Veto
from veto_opa.approvals.registry import Identity, Registry, new_token_key

POLICY = """\
policy: bench
rules:
  - name: no_drops
    tool: execute_sql
    when: args.statement.startsWith('DROP')
    action: deny
  - name: prod_writes
    tool: execute_sql
    environments: [production]
    when: "!args.statement.startsWith('SELECT')"
    action: require_approval
    approvers: [dba]
"""
CTX = {"environment": "production", "user": "carol"}


def timed(fn: object, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        started = time.perf_counter()
        fn(i)   # type: ignore[operator]
        out.append((time.perf_counter() - started) * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    calls = parser.parse_args().calls
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / ".veto"
        policy = Path(tmp) / "bench.yaml"
        policy.write_text(POLICY)
        token, key = new_token_key()
        registry = Registry({}).with_approver(Identity("dana", ("dba",), (), (key,)))
        registry.save(home / "approvers.yaml")
        with Veto([policy], home=home, reload_interval=0, spans=False) as veto:
            store = veto._approval_service.store   # the bench approves in-process
            signer = registry.signer_for_token(token)

            def guard(statement: str) -> object:
                return veto.guard("execute_sql", {"statement": statement}, CTX)

            for i in range(50):   # warm up
                guard(f"DROP TABLE t{i}")
            rows = {"deny": timed(lambda i: guard(f"DROP TABLE t{i}"), calls)}
            ids = [guard(f"UPDATE t SET a = {i}").approval_id for i in range(calls)]
            rows["pending again"] = timed(lambda i: guard(f"UPDATE t SET a = {i}"), calls)
            rows["new request"] = timed(lambda i: guard(f"DELETE FROM t WHERE a = {i}"), calls)
            for approval_id in ids:
                store.vote(approval_id, signer=signer, verdict="approved", justification=None,
                           registry=registry)
            rows["grant used"] = timed(lambda i: guard(f"UPDATE t SET a = {i}"), calls)
            assert all(guard(f"UPDATE t SET a = {i}").decision == "require_approval"
                       for i in range(3))
    base = statistics.median(rows["deny"])
    print(f"guard() latency, {calls} calls per row, one thread (µs)")
    print(f"{'path':<16}{'median':>10}{'p99':>10}{'× deny':>9}")
    for name, values in rows.items():
        values.sort()
        median = statistics.median(values)
        p99 = values[int(len(values) * 0.99) - 1]
        print(f"{name:<16}{median:>10.0f}{p99:>10.0f}{median / base:>9.1f}")


if __name__ == "__main__":
    main()
