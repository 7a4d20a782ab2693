"""What a call with rules in error costs, against the same call without errors.

The seed policy (``examples/policies.yaml``) in the embedded OPA engine, ``data.veto.decision``
for ``execute_sql`` calls: one that no rule applies to (allowed by default), one that two deny
rules apply to (the same decision as two rules in error, without errors), one where two rules
are in error (no ``statement``), one where three are (neither ``statement`` nor
``context.user_role``). A rule in error costs its status chain's last alternative and the
generated detail rule, which checks the condition's error sites in order until one fires.

    .venv/bin/python benchmarks/bench_details.py [--calls N]

Target: p50 with two rules in error at most 1.5 × p50 without errors; both calls without
errors are shown (a decision with rules that apply costs more than one without: OPA then
builds the matched list and the deciding rule's reason). The machines are
shared and noisy, so the calls are sampled in interleaved rounds: a slow minute slows every
row alike and the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import opa_bindings

from veto_opa.translators import build
from veto_opa.translators.bundle import load_into_engine

SEED = Path(__file__).resolve().parents[1] / "examples" / "policies.yaml"
ROUNDS = 20


def _call(args: dict, context: dict) -> dict:
    return {"tool": "execute_sql", "args": args, "context": context,
            "model": "mistral-large-latest", "call_id": None}


CALLS = {
    "no rule applies": _call({"statement": "SELECT * FROM orders LIMIT 10",
                              "database": "analytics"},
                             {"environment": "production", "user_role": "sre"}),
    "2 rules apply": _call({"statement": "DROP TABLE x; ALTER TABLE y", "database": "analytics"},
                           {"environment": "production", "user_role": "sre"}),
    "2 rules in error": _call({"database": "analytics"},
                              {"environment": "production", "user_role": "sre"}),
    "3 rules in error": _call({"database": "analytics"}, {"environment": "production"}),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="evaluations per row")
    args = parser.parse_args()
    engine = opa_bindings.OpaEngine()
    load_into_engine(build([SEED]).bundle(), engine)
    errors = {}
    for name, call in CALLS.items():
        decision = engine.eval_document("veto.decision", call)
        errors[name] = len(decision["errors"])
        for _ in range(500):
            engine.eval_document("veto.decision", call)
    assert [errors[n] for n in CALLS] == [0, 0, 2, 3], errors
    samples: dict[str, list[float]] = {name: [] for name in CALLS}
    for _ in range(ROUNDS):
        for name, call in CALLS.items():
            for _ in range(max(1, args.calls // ROUNDS)):
                s = time.perf_counter()
                engine.eval_document("veto.decision", call)
                samples[name].append(time.perf_counter() - s)
    engine.close()
    none = statistics.median(samples["no rule applies"])
    applying = statistics.median(samples["2 rules apply"])
    print(f"seed policy, embedded engine, data.veto.decision; {args.calls} calls per row in "
          f"{ROUNDS} interleaved rounds\n")
    print("call             | p50 µs | p99 µs | p50 / no rule applies | p50 / 2 rules apply")
    print("---------------- | -----: | -----: | --------------------: | ------------------:")
    for name, values in samples.items():
        ordered = sorted(values)
        p50 = statistics.median(ordered)
        p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
        print(f"{name:<16} | {p50 * 1e6:>6.1f} | {p99 * 1e6:>6.1f} | {p50 / none:>21.2f} |"
              f" {p50 / applying:>18.2f}")
    errors_p50 = statistics.median(samples["2 rules in error"])
    for label, base in (("no rule applies", none), ("2 rules apply", applying)):
        ok = errors_p50 / base <= 1.5
        print(f"two rules in error ≤ 1.5 × {label} (p50): {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
