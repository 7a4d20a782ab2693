"""The main job of ``./dev demo``: an SRE agent's tool calls, decided by the example policy.

Each call is one a Mistral model might emit while triaging a ticket, prompt injection
included; each is decided before it would run, and the decision is printed with its rule and
reason.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "policies.yaml"

CALLS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("execute_sql", {"statement": "SELECT count(*) FROM orders", "database": "analytics"},
     {"environment": "production", "user_role": "sre"}),
    ("execute_sql", {"statement": "DROP TABLE customers", "database": "analytics"},
     {"environment": "production", "user_role": "sre"}),
    ("execute_sql", {"statement": "delete from sessions", "database": "sandbox"},
     {"environment": "production", "user_role": "sre"}),
    ("execute_sql", {"statement": "DELETE FROM sessions", "database": "sandbox"},
     {"environment": "staging", "user_role": "sre"}),
    ("execute_sql", {"statement": "ALTER TABLE users ADD COLUMN x int", "database": "sandbox"},
     {"environment": "production", "user_role": "sre"}),
    ("execute_sql", {"statement": "SELECT * FROM payments", "database": "billing"},
     {"environment": "production", "user_role": "sre"}),
    ("execute_sql", {"statement": "UPDATE users SET admin = true", "database": "analytics"},
     {"environment": "staging", "user_role": "viewer"}),
    ("execute_sql", {"statement": "UPDATE users SET admin = true", "database": "analytics"},
     {"environment": "staging"}),
    ("execute_sql", {"statement": "SELECT 1"}, {"environment": "staging", "user_role": "sre"}),
    ("rotate_secret", {"secret_path": "/secrets/app/api", "service": "search"}, {}),
    ("rotate_secret", {"secret_path": "/secrets/app/stripe", "service": "stripe"}, {}),
    ("rotate_secret", {"secret_path": "/secrets/root/ca", "service": "vault-root"}, {}),
    ("kubectl_apply", {"manifest": "kind: Deployment"}, {"environment": "production"}),
]


def run_demo(policies: Sequence[str] | None = None) -> int:
    """Decide every call in :data:`CALLS` and print a table; returns the exit status."""
    from veto_opa.translators import build, bundle as bundles
    import opa_bindings

    paths = list(policies or [str(EXAMPLE)])
    bundle = build(paths).bundle()
    engine = opa_bindings.OpaEngine()
    bundles.load_into_engine(bundle, engine)
    print(f"policies: {', '.join(paths)}  (revision {bundle.revision[:19]}…)\n")
    for tool, args, context in CALLS:
        d = engine.eval_document("veto.decision", {
            "tool": tool, "args": args, "context": context, "model": "mistral-large-latest",
            "call_id": None})
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        print(f"{d['decision'].upper():<17} {tool}({shown})")
        print(f"{'':17} {d['rule'] or '(no rule)'}: {d['reason']}")
        if d["approvers"]:
            print(f"{'':17} approvers: {', '.join(d['approvers'])}")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_demo(sys.argv[1:]))
