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


def run_demo(policies: Sequence[str] | None = None, home: str | None = None) -> int:
    """Guard every call in :data:`CALLS` with :class:`veto_opa.Veto` and print each decision.

    Records go to ``home`` (default ``VETO_HOME`` or ``.veto``), so ``veto-opa decisions list``
    shows them afterwards.
    """
    from veto_opa import Veto

    paths = list(policies or [str(EXAMPLE)])
    settings = {"reload_interval": 0}
    if home is not None:
        settings["home"] = home
    with Veto(paths, **settings) as veto:
        print(f"policies: {', '.join(paths)}")
        print(f"records:  {veto.settings.home / 'records.sqlite3'}\n")
        for tool, args, context in CALLS:
            d = veto.guard(tool, args, context, model="mistral-large-latest")
            shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
            print(f"{d.decision.upper():<17} {tool}({shown})")
            print(f"{'':17} {d.rule or '(no rule)'}: {d.reason}")
            if d.approval_id:
                print(f"{'':17} approval {d.approval_id} (approvers: {', '.join(d.approvers)})")
            if d.allowed:
                veto.record_outcome(d.decision_id, "executed")
        result = veto.records.verify()
        chain = "intact" if result.ok else "BROKEN"
        print(f"\n{result.count} records (decisions, outcomes and approval events), hash "
              f"chain {chain}; see them with: veto-opa decisions list")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo(sys.argv[1:]))
