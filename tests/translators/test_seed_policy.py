"""The seed policy (examples/policies.yaml, loaded verbatim) decides tool calls as specified.

Every rule, the precedence between rules, and missing and ill-typed values, evaluated by the
real OPA engine on the compiled bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import opa_bindings
import pytest

from veto_opa.translators import build
from veto_opa.translators.bundle import load_into_engine

SEED = Path(__file__).resolve().parents[2] / "examples" / "policies.yaml"
PROD_SRE = {"environment": "production", "user_role": "sre"}
STAGING_SRE = {"environment": "staging", "user_role": "sre"}

DROP = "Destructive SQL is not allowed on production databases"
SCOPE = "Database access outside analytics/sandbox needs approval"
SCHEMA = "Schema changes must go through migrations, not the agent"
ROOT = "Root and master secrets are out of scope for agents"
VIEWER = "Viewer role is read-only"
HIGH_VALUE = ("High-value services need security approval to rotate "
              "(rule secret_rotation_high_value requires approval for this call)")


def unevaluable(rule: str, detail: str) -> str:
    return f"rule {rule} could not be evaluated: {detail}"


# (id, tool, args, context, decision, deciding rule, reason, approvers, rules in error)
CASES: list[tuple[Any, ...]] = [
    ("select_on_analytics", "execute_sql", {"statement": "SELECT 1", "database": "analytics"},
     PROD_SRE, "allow", None, "no rule applies; policy policies defaults to allow", [], []),
    ("drop_table_in_production", "execute_sql",
     {"statement": "DROP TABLE customers", "database": "analytics"}, PROD_SRE,
     "deny", "block_production_database_deletes", DROP, [], []),
    ("drop_table_lowercase_in_production", "execute_sql",
     {"statement": "drop table customers", "database": "analytics"}, PROD_SRE,
     "deny", "block_production_database_deletes", DROP, [], []),
    ("truncate_in_production", "execute_sql",
     {"statement": "TRUNCATE audit_log", "database": "sandbox"}, PROD_SRE,
     "deny", "block_production_database_deletes", DROP, [], []),
    ("delete_in_production", "execute_sql",
     {"statement": "delete from sessions", "database": "sandbox"}, PROD_SRE,
     "deny", "block_production_database_deletes", DROP, [], []),
    ("delete_not_at_start_is_not_caught", "execute_sql",
     {"statement": "WITH x AS (SELECT 1) DELETE FROM t", "database": "sandbox"}, PROD_SRE,
     "allow", None, "no rule applies; policy policies defaults to allow",
     [], []),
    ("drop_table_in_staging_is_allowed", "execute_sql",
     {"statement": "DROP TABLE tmp", "database": "sandbox"}, STAGING_SRE,
     "allow", None, "no rule applies; policy policies defaults to allow",
     [], []),
    ("alter_table_in_production", "execute_sql",
     {"statement": "ALTER TABLE users ADD c int", "database": "analytics"}, PROD_SRE,
     "deny", "block_schema_changes", SCHEMA, [], []),
    ("create_table_in_production", "execute_sql",
     {"statement": "create table t (x int)", "database": "analytics"}, PROD_SRE,
     "deny", "block_schema_changes", SCHEMA, [], []),
    ("unscoped_database_needs_platform_approval", "execute_sql",
     {"statement": "SELECT * FROM payments", "database": "billing"}, PROD_SRE,
     "require_approval", "scope_database_access", SCOPE, ["platform-team"], []),
    ("deny_beats_approval", "execute_sql",
     {"statement": "DROP TABLE payments", "database": "billing"}, PROD_SRE,
     "deny", "block_production_database_deletes", DROP, [], []),
    ("first_deny_in_file_order_decides", "execute_sql",
     {"statement": "TRUNCATE t; ALTER TABLE u", "database": "sandbox"},
     {"environment": "production", "user_role": "viewer"},
     "deny", "block_production_database_deletes", DROP, [], []),
    ("viewer_cannot_update", "execute_sql",
     {"statement": "UPDATE users SET admin = true", "database": "analytics"},
     {"environment": "staging", "user_role": "viewer"}, "deny", "read_only_for_viewer",
     VIEWER, [], []),
    ("viewer_can_select", "execute_sql", {"statement": "select * from x", "database": "sandbox"},
     {"environment": "staging", "user_role": "viewer"}, "allow", None,
     "no rule applies; policy policies defaults to allow", [], []),
    ("missing_role_with_mutating_sql_fails_closed", "execute_sql",
     {"statement": "UPDATE users SET admin = true", "database": "analytics"},
     {"environment": "staging"}, "deny", "read_only_for_viewer",
     unevaluable("read_only_for_viewer", "context.user_role is missing"), [],
     ["read_only_for_viewer"]),
    ("missing_role_with_select_is_fine", "execute_sql",
     {"statement": "SELECT 1", "database": "analytics"}, {"environment": "staging"},
     "allow", None, "no rule applies; policy policies defaults to allow",
     [], []),
    ("missing_database_fails_closed_to_approval", "execute_sql", {"statement": "SELECT 1"},
     STAGING_SRE, "require_approval", "scope_database_access",
     unevaluable("scope_database_access", "args.database is missing"), ["platform-team"],
     ["scope_database_access"]),
    ("missing_environment_and_role", "execute_sql",
     {"statement": "DROP TABLE customers", "database": "analytics"}, {},
     "deny", "block_production_database_deletes",
     unevaluable("block_production_database_deletes", "context.environment is missing"), [],
     # block_schema_changes is false, not an error: its right side is false (false && error).
     ["block_production_database_deletes", "read_only_for_viewer"]),
    ("statement_not_a_string_fails_closed", "execute_sql",
     {"statement": 42, "database": "analytics"}, PROD_SRE, "deny",
     "block_production_database_deletes",
     unevaluable("block_production_database_deletes",
                 "args.statement.upper(): upper() cannot take number"), [],
     ["block_production_database_deletes", "block_schema_changes"]),
    # A value of another JSON type than the list's is an error, not "not in the list".
    ("database_given_as_a_list_fails_closed", "execute_sql",
     {"statement": "SELECT 1", "database": ["analytics"]}, PROD_SRE,
     "require_approval", "scope_database_access",
     unevaluable("scope_database_access",
                 "(args.database in ['analytics', 'sandbox']): the list holds string, not "
                 "array"),
     ["platform-team"], ["scope_database_access"]),
    ("service_given_as_a_list_fails_closed", "rotate_secret",
     {"secret_path": "/secrets/app/stripe", "service": ["stripe"]}, {}, "require_approval",
     "secret_rotation_high_value",
     unevaluable("secret_rotation_high_value",
                 'args.service in ["stripe", "auth-service", "vault-root"]: the list holds '
                 "string, not array"), ["security-team"], ["secret_rotation_high_value"]),
    ("service_given_as_null_fails_closed", "rotate_secret",
     {"secret_path": "/secrets/app/stripe", "service": None}, {}, "require_approval",
     "secret_rotation_high_value",
     unevaluable("secret_rotation_high_value",
                 'args.service in ["stripe", "auth-service", "vault-root"]: the list holds '
                 "string, not null"), ["security-team"], ["secret_rotation_high_value"]),
    ("environment_given_as_a_list_fails_closed", "execute_sql",
     {"statement": "DROP TABLE customers", "database": "analytics"},
     {"environment": ["production"], "user_role": "sre"}, "deny",
     "block_production_database_deletes",
     unevaluable("block_production_database_deletes",
                 'context.environment == "production": cannot compare array with string'), [],
     ["block_production_database_deletes"]),
    ("rotate_ordinary_secret", "rotate_secret",
     {"secret_path": "/secrets/app/api", "service": "search"}, {}, "allow", None,
     "no rule applies; policy policies defaults to allow", [], []),
    ("rotate_high_value_service", "rotate_secret",
     {"secret_path": "/secrets/app/stripe", "service": "stripe"}, {}, "require_approval",
     "secret_rotation_high_value", HIGH_VALUE, ["security-team"], []),
    ("rotate_root_secret_denied_over_approval", "rotate_secret",
     {"secret_path": "/secrets/root/ca", "service": "vault-root"}, {}, "deny",
     "block_root_secret_paths", ROOT, [], []),
    ("rotate_master_key_anywhere", "rotate_secret",
     {"secret_path": "/kv/team/master-key-2", "service": "search"}, {}, "deny",
     "block_root_secret_paths", ROOT, [], []),
    ("rotate_without_service_fails_closed", "rotate_secret", {"secret_path": "/secrets/app"},
     {}, "require_approval", "secret_rotation_high_value",
     unevaluable("secret_rotation_high_value", "args.service is missing"), ["security-team"],
     ["secret_rotation_high_value"]),
    ("rotate_root_path_of_wrong_type", "rotate_secret",
     {"secret_path": None, "service": "search"}, {}, "deny", "block_root_secret_paths",
     unevaluable("block_root_secret_paths",
                 "args.secret_path.startswith(\"/secrets/root\"): startswith() cannot take "
                 "null, string"), [], ["block_root_secret_paths"]),
    ("ungoverned_tool", "send_email", {"to": "x@example.com"}, {}, "allow", None,
     "no rule applies; policy policies defaults to allow", [], []),
]


@pytest.fixture(scope="module")
def engine() -> opa_bindings.OpaEngine:
    e = opa_bindings.OpaEngine()
    load_into_engine(build([SEED]).bundle(), e)
    yield e
    e.close()


def test_table_covers_every_rule_and_outcome() -> None:
    assert len(CASES) >= 20
    deciding = {c[5] for c in CASES}
    rules = {r.name for r in build([SEED]).policies[0].rules}
    assert rules <= deciding
    assert {c[4] for c in CASES} == {"allow", "deny", "require_approval"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_seed_decides(engine: opa_bindings.OpaEngine, case: tuple[Any, ...]) -> None:
    _, tool, args, context, decision, rule, reason, approvers, erring = case
    d = engine.eval_document("veto.decision", {"tool": tool, "args": args, "context": context,
                                               "model": None, "call_id": None})
    assert (d["decision"], d["rule"], d["reason"]) == (decision, rule, reason)
    assert d["approvers"] == approvers
    assert [e["rule"] for e in d["errors"]] == erring
    assert d["policy"]["name"] == "policies"
    assert d["policy"]["revision"].startswith("sha256:")
    if rule is not None:
        assert d["matched"][0]["rule"] == rule or rule in [m["rule"] for m in d["matched"]]
