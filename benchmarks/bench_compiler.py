"""Compiler and decision benchmark: cost of more rules for *other* tools.

For policies of 10, 100 and 1,000 rules it measures the time to translate the YAML into a
bundle (load, check, generate), the time to load that bundle into the embedded OPA engine
(add the modules and compile them, which OPA does on the first query), and the p50/p99
latency of ``data.veto.decision`` for one tool call. The queried tool has the same five rules
at every size; the added rules govern other tools (spread over 100 tool names), with
realistic conditions, so the table shows what rule indexing on ``input.tool`` saves.

    ./dev bench                        # all benchmarks
    .venv/bin/python benchmarks/bench_compiler.py [--calls N]

Targets: 1,000 rules translated and loaded in under 2 s; p50 at 1,000 rules at most
1.3 × p50 at 10 rules. Compare ratios from one run; the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import opa_bindings
import yaml

from veto_opa.translators import build
from veto_opa.translators.bundle import load_into_engine

QUERIED_RULES = [
    {"name": "block_prod_deletes", "tool": "execute_sql", "action": "deny",
     "when": 'context.environment == "production" && (args.statement.upper().contains("DROP '
             'TABLE") || args.statement.upper().startswith("DELETE"))'},
    {"name": "scope_databases", "tool": "execute_sql", "action": "require_approval",
     "approvers": ["platform-team"], "when": "!(args.database in ['analytics', 'sandbox'])"},
    {"name": "block_schema_changes", "tool": "execute_sql", "action": "deny",
     "when": 'context.environment == "production" && args.statement.matches("(?i)(alter|'
             'create)\\\\s+table")'},
    {"name": "viewers_read_only", "tool": "execute_sql", "action": "deny",
     "when": 'context.user_role == "viewer" && !args.statement.upper().startswith("SELECT")'},
    {"name": "big_results_need_limit", "tool": "execute_sql", "action": "require_approval",
     "approvers": ["dba"], "when": 'size(args.statement) > 2000 || (has(args.limit) && '
                                   'args.limit > 10000)'},
]

CONDITIONS = [
    'args.namespace == "kube-system" || args.name.startsWith("system-")',
    'context.environment == "production" && !(args.region in ["eu-west-1", "us-east-1"])',
    'args.path.lower().contains("secret") && context.user_role != "admin"',
    "args.replicas > 20 || (args.replicas > 5 && context.environment == 'production')",
    'size(args.recipients) > 50 && !args.subject.matches("(?i)^\\\\[internal\\\\]")',
    'args.amount >= 1000 && args.currency in ["EUR", "USD"] && !has(args.approval_ref)',
    'args.url.startsWith("http://") || args.url.contains("169.254.169.254")',
    'args.items.exists(i, i.price * i.quantity > 500) && context.user_role == "agent"',
]


def policy(size: int, r: random.Random) -> dict:
    rules = [dict(rule) for rule in QUERIED_RULES]
    for i in range(size - len(rules)):
        rules.append({
            "name": f"rule_{i}", "tool": f"tool_{i % 100}",
            "action": r.choice(["deny", "require_approval", "allow"]),
            "when": r.choice(CONDITIONS),
        })
        if rules[-1]["action"] == "require_approval":
            rules[-1]["approvers"] = ["team-a"]
    return {"policy": f"bench_{size}", "rules": rules}


CALL = {"tool": "execute_sql",
        "args": {"statement": "SELECT * FROM orders LIMIT 10", "database": "analytics"},
        "context": {"environment": "production", "user_role": "sre"},
        "model": "mistral-large-latest", "call_id": None}


def measure(size: int, calls: int, tmp: Path) -> dict:
    path = tmp / f"bench_{size}.yaml"
    path.write_text(yaml.safe_dump(policy(size, random.Random(size))), encoding="utf-8")
    t0 = time.perf_counter()
    bundle = build([path]).bundle()
    t1 = time.perf_counter()
    engine = opa_bindings.OpaEngine()
    load_into_engine(bundle, engine)
    decision = engine.eval_document("veto.decision", CALL)   # OPA compiles on first query
    t2 = time.perf_counter()
    assert decision["decision"] == "allow", decision
    for _ in range(200):
        engine.eval_document("veto.decision", CALL)
    samples = []
    for _ in range(calls):
        s = time.perf_counter()
        engine.eval_document("veto.decision", CALL)
        samples.append(time.perf_counter() - s)
    engine.close()
    samples.sort()
    return {"rules": size, "translate": t1 - t0, "load": t2 - t1,
            "p50": statistics.median(samples) * 1e6,
            "p99": samples[int(len(samples) * 0.99) - 1] * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(size, args.calls, Path(tmp)) for size in (10, 100, 1000)]
    base = rows[0]["p50"]
    print("rules | translate ms | load ms | translate+load ms | p50 µs | p99 µs | p50 / p50@10")
    print("----: | -----------: | ------: | ----------------: | -----: | -----: | -----------:")
    for row in rows:
        print(f"{row['rules']:>5} | {row['translate'] * 1e3:>12.0f} | {row['load'] * 1e3:>7.0f} |"
              f" {(row['translate'] + row['load']) * 1e3:>17.0f} | {row['p50']:>6.1f} |"
              f" {row['p99']:>6.1f} | {row['p50'] / base:>11.2f}")
    big = rows[-1]
    ok_time = big["translate"] + big["load"] < 2.0
    ok_ratio = big["p50"] / base <= 1.3
    print(f"\n1,000 rules translated and loaded in under 2 s: {'yes' if ok_time else 'NO'}; "
          f"p50@1000 ≤ 1.3 × p50@10: {'yes' if ok_ratio else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
