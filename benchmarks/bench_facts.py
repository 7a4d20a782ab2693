"""What SQL facts add to ``Veto.guard()`` for a 2 KB statement.

Rows, measured in interleaved chunks so that a noisy moment on this shared machine falls on
all of them alike (p50, p99 and process CPU per call, µs):

- ``facts off``: the seed policy (examples/policies.yaml), whose rules test the raw string;
- ``facts on, cached``: examples/hardened.yaml, the same intent on facts; the same statement
  again and again, so its facts come from the cache (HMAC of the argument, a dict lookup);
- ``facts on, parsed each call``: the same, with every statement different (a literal
  changes), so sqlglot parses each one;
- ``compute, parsed`` and ``compute, cached``: ``Facts.compute`` alone.

The target: at most 300 µs added at p50 by facts (``facts on, cached`` − ``facts off``).
Records and spans are off in every row (they cost the same with and without facts but for the
facts' bytes in the record, and would blur the difference).

    .venv/bin/python benchmarks/bench_facts.py [--seconds S]     (or ./dev bench facts ...)
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from pathlib import Path

from bench_guard import latency

from veto_opa import Veto
from veto_opa.facts import FactCache, Facts, FactSpec

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "policies.yaml"
HARDENED = ROOT / "examples" / "hardened.yaml"
CONTEXT = {"environment": "production", "user_role": "sre"}


def statement(n: int = 0) -> str:
    """A realistic read of about 2 KB; ``n`` changes one literal."""
    columns = ", ".join(f"o.col_{i}" for i in range(56))
    conditions = " AND ".join(f"o.metric_{i} > {i * 3}" for i in range(56))
    return (f"WITH recent AS (SELECT id, customer_id FROM orders WHERE created_at > now() - "
            f"interval '7 days') SELECT {columns}, c.name, c.region FROM recent r JOIN "
            f"orders o ON o.id = r.id JOIN customers c ON c.id = r.customer_id WHERE "
            f"c.region IN ('eu', 'us', 'apac') AND o.status <> 'void' AND o.batch = {n} AND "
            f"{conditions} ORDER BY o.col_1 DESC LIMIT 500")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    text = statement()
    call = {"statement": text, "database": "analytics"}
    fresh = itertools.count(1)
    off = Veto([SEED], records=False, spans=False, reload_interval=0)
    on = Veto([HARDENED], records=False, spans=False, reload_interval=0)
    assert off.guard("execute_sql", call, CONTEXT).decision == "allow"
    assert on.guard("execute_sql", call, CONTEXT).decision == "allow"
    facts = Facts({"execute_sql": {"statement": FactSpec("sql", {"dialect": "postgres"})}})
    uncached = Facts(facts.spec, cache=FactCache(max_entries=0))
    fns: dict[str, Callable[[], object]] = {
        "facts off": lambda: off.guard("execute_sql", call, CONTEXT),
        "facts on, cached": lambda: on.guard("execute_sql", call, CONTEXT),
        "facts on, parsed each call": lambda: on.guard(
            "execute_sql", {"statement": statement(next(fresh)), "database": "analytics"},
            CONTEXT),
        "compute, cached": lambda: facts.compute("execute_sql", call),
        "compute, parsed": lambda: uncached.compute("execute_sql", call),
    }
    results = latency(fns, args.seconds, chunk=50)
    base = results["facts off"][0]
    print(f"statement: {len(text)} characters; sqlglot with its compiled extension; "
          f"{args.seconds:g} s interleaved")
    print()
    print("what | p50 µs | p99 µs | CPU µs per call | p50 − facts off µs")
    print("---- | -----: | -----: | --------------: | -----------------:")
    for name, (p50, p99, cpu) in results.items():
        added = f"{p50 - base:+.0f}" if name.startswith("facts") else ""
        print(f"{name} | {p50:.0f} | {p99:.0f} | {cpu:.0f} | {added}")
    added = results["facts on, cached"][0] - base
    print()
    print(f"facts add {added:.0f} µs at p50 with the cache (target: at most 300 µs): "
          f"{'met' if added <= 300 else 'NOT met'}")
    off.close()
    on.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
