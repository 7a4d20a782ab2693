"""Every way around require_approval that issue 11 reproduced on the old code, end to end
through ``Veto.guard()`` and the real OPA engine; each test fails on that code (which had
no Approver, no per-rule requirements, no binding beyond tool, arguments and a string
subject, and no chain entries for approvals)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from veto_opa import Veto
from veto_opa.approvals import Approver
from veto_opa.approvals.cli import main as approvals_main
from veto_opa.approvals.registry import Signer
from veto_opa.engines.fake import FakeEngine
from veto_opa.errors import ApprovalError
from veto_opa.records.cli import main as decisions_main

PROD = {"environment": "production", "user": "bob"}
STAGING = {"environment": "staging", "user": "bob"}
RELEASE = {"service": "payments", "version": "2.4.1"}
MakeApprover = Callable[[str], Approver]


def approval_db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "approvals.sqlite3", isolation_level=None)


def verify(home: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = decisions_main(["decisions", "verify", "--home", str(home)])
    return code, capsys.readouterr().out


# -- self-approval, and an agent that approves ---------------------------------------------


@pytest.mark.parametrize("subject", [
    "bob", "Bob", " BOB ", "user:bob", {"id": "bob"}, ["team-a", "bob"], {"employee": 4711},
    4711,
])
def test_the_requester_cannot_approve_their_own_call(veto: Veto, approver: MakeApprover,
                                                     subject: Any) -> None:
    pending = veto.guard("deploy", RELEASE, {"environment": "production", "user": subject})
    assert pending.decision == "require_approval"
    with pytest.raises(ApprovalError, match="bob requested this call and cannot approve it"):
        approver("bob").approve(pending.approval_id)
    assert veto.approvals.get(pending.approval_id).status == "pending"
    assert veto.guard("deploy", RELEASE, {"environment": "production",
                                          "user": subject}).decision == "require_approval"


def test_the_agents_veto_cannot_approve(veto: Veto) -> None:
    pending = veto.guard("deploy", RELEASE, PROD)
    assert not hasattr(veto.approvals, "approve") and not hasattr(veto.approvals, "reject")
    assert not hasattr(veto.approvals, "vote")
    assert veto.approvals.wait(pending.approval_id, 0).status == "pending"


def test_a_vote_signed_with_any_other_key_is_refused(veto: Veto, home: Path) -> None:
    # An agent that reaches into the store and signs as alice, without alice's credential.
    pending = veto.guard("deploy", RELEASE, PROD)
    store = veto._approval_service.store          # what code in the agent's process can reach
    registry = veto._approval_service.registry.current()
    alice = registry.approvers["alice"]
    forged = Signer(alice, alice.keys[0].key_id, Ed25519PrivateKey.generate())
    with pytest.raises(ApprovalError, match="signature of alice's vote does not verify"):
        store.vote(pending.approval_id, signer=forged, verdict="approved", justification=None,
                   registry=registry)
    assert veto.guard("deploy", RELEASE, PROD).decision == "require_approval"


def test_the_cli_takes_a_credential_not_a_name(veto: Veto, home: Path, tokens: dict[str, str],
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pending = veto.guard("deploy", RELEASE, PROD)
    with pytest.raises(SystemExit) as usage:
        approvals_main(["approvals", "approve", pending.approval_id, "--as", "alice",
                        "--group", "sre-oncall", "--home", str(home)])
    assert usage.value.code == 2
    assert approvals_main(["approvals", "approve", pending.approval_id,
                           "--home", str(home)]) == 1
    assert "deciding needs your credential" in capsys.readouterr().err
    wrong = tmp_path / "wrong"
    wrong.write_text(tokens["alice"][:-4] + "AAAA")
    assert approvals_main(["approvals", "approve", pending.approval_id, "--token-file",
                           str(wrong), "--home", str(home)]) == 1
    assert "the approver token is not valid" in capsys.readouterr().err
    assert veto.guard("deploy", RELEASE, PROD).decision == "require_approval"
    good = tmp_path / "alice"
    good.write_text(tokens["alice"] + "\n")
    assert approvals_main(["approvals", "approve", pending.approval_id, "--token-file",
                           str(good), "--home", str(home)]) == 0
    assert "approved " + pending.approval_id + " as alice" in capsys.readouterr().out
    assert veto.guard("deploy", RELEASE, PROD).allowed


# -- a rule without approvers ---------------------------------------------------------------


def test_an_engine_answer_without_approvers_is_denied(home: Path) -> None:
    # `veto-opa check` refuses such a policy; a bundle built elsewhere may still say it.
    def answer(_: dict[str, Any]) -> dict[str, Any]:
        return {"decision": "require_approval", "rule": "ask", "reason": "why not",
                "approvers": [], "errors": [], "policy": {"name": "p", "revision": "r"},
                "matched": [{"rule": "ask", "action": "require_approval", "message": "m",
                             "policy": "p", "approvers": [], "approvals": 1}],
                "binding": ["environment"]}

    with Veto(engine=FakeEngine(answer), home=home, spans=False) as v:
        d = v.guard("anything", {}, {"user": "carol"})
        assert (d.decision, d.cause, d.approval_id) == ("deny", "approval_error", None)
        assert "names no approvers, so nobody may approve" in d.reason
        assert v.records.get(d.decision_id).cause == "approval_error"


# -- reuse across context and rule, and policy changes ---------------------------------------


def test_a_staging_grant_does_not_let_the_production_call_through(
        veto: Veto, approver: MakeApprover) -> None:
    staging = veto.guard("deploy", RELEASE, STAGING)
    production = veto.guard("deploy", RELEASE, PROD)
    assert staging.approval_id != production.approval_id      # never merged
    with pytest.raises(ApprovalError, match="dave is not in any approver group"):
        approver("dave").approve(production.approval_id)
    approver("dave").approve(staging.approval_id)
    assert veto.guard("deploy", RELEASE, PROD).decision == "require_approval"
    assert veto.approvals.get(production.approval_id).status == "pending"
    assert veto.guard("deploy", RELEASE, STAGING).allowed
    # ... and an environment-less call is yet another call
    nowhere = veto.guard("deploy", RELEASE, {"user": "bob"})
    assert nowhere.approval_id not in (staging.approval_id, production.approval_id)


def test_every_context_key_the_policy_reads_is_bound(veto: Veto, approver: MakeApprover) -> None:
    gold = {"tier": "gold", "user": "carol"}
    pending = veto.guard("restart", {"service": "db"}, gold)
    approver("dave").approve(pending.approval_id)                  # approvers: [any]
    platinum = veto.guard("restart", {"service": "db"}, {**gold, "tier": "platinum"})
    assert platinum.decision == "require_approval"     # tier is read by the policy: bound
    assert platinum.approval_id != pending.approval_id
    assert veto.guard("restart", {"service": "db"}, {**gold, "extra": 1}).allowed  # not read
    again = veto.guard("restart", {"service": "db"}, gold)
    assert again.decision == "require_approval"                     # used up


def test_a_policy_change_of_the_asking_rule_invalidates_grants(
        home: Path, policy: Path, approver: MakeApprover) -> None:
    with Veto([policy], home=home, reload_interval=0, spans=False) as veto:
        pending = veto.guard("deploy", RELEASE, PROD)
        unused = veto.guard("deploy", {**RELEASE, "version": "9"}, PROD)
        approver("alice").approve(unused.approval_id)
        policy.write_text(policy.read_text().replace("approvers: [sre-oncall]",
                                                     "approvers: [sre-leads]"))
        veto.reload()
        again = veto.guard("deploy", {**RELEASE, "version": "9"}, PROD)
        assert again.decision == "require_approval" and again.approval_id != unused.approval_id
        old = veto.approvals.get(unused.approval_id)
        assert (old.status, old.expired_cause) == ("expired", "policy_changed")
        renewed = veto.guard("deploy", RELEASE, PROD)
        assert renewed.approval_id != pending.approval_id
        assert veto.approvals.get(pending.approval_id).status == "expired"
        with pytest.raises(ApprovalError, match="alice is not in any approver group"):
            approver("alice").approve(renewed.approval_id)


# -- each rule's groups, not their union ----------------------------------------------------


def test_each_asking_rule_needs_its_own_groups(veto: Veto, approver: MakeApprover) -> None:
    call = {"table": "users", "rows": 50_000}
    ctx = {"environment": "production", "user": "carol"}
    pending = veto.guard("migrate", call, ctx)
    assert pending.approvers == ("dba", "privacy-office")
    dba = approver("dana").approve(pending.approval_id, "rows checked")
    assert dba.status == "pending"
    assert [(r.rule, n) for r, n in dba.missing()] == [("personal_data", 1)]
    assert veto.guard("migrate", call, ctx).decision == "require_approval"
    with pytest.raises(ApprovalError, match="dana has already voted"):
        approver("dana").approve(pending.approval_id)
    assert approver("pria").approve(pending.approval_id).status == "approved"
    granted = veto.guard("migrate", call, ctx)
    assert granted.allowed and granted.reason.startswith("approved by dana, pria")


def test_approvals_2_needs_two_distinct_approvers(veto: Veto, approver: MakeApprover) -> None:
    ctx = {"user": "carol"}
    pending = veto.guard("wire", {"amount": 10_000}, ctx)
    assert approver("fin1").approve(pending.approval_id).status == "pending"
    with pytest.raises(ApprovalError, match="fin1 has already voted"):
        approver("fin1").approve(pending.approval_id)
    assert veto.guard("wire", {"amount": 10_000}, ctx).decision == "require_approval"
    assert approver("fin2").approve(pending.approval_id).status == "approved"
    assert veto.guard("wire", {"amount": 10_000}, ctx).allowed


# -- tampering ------------------------------------------------------------------------------


def test_a_status_flipped_in_the_database_lets_nothing_through(
        veto: Veto, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pending = veto.guard("deploy", RELEASE, PROD)
    with approval_db(home) as db:
        document = json.loads(db.execute("SELECT document FROM approvals").fetchone()[0])
        document["status"] = "approved"
        db.execute("UPDATE approvals SET status = 'approved', document = ?",
                   (json.dumps(document),))
    assert verify(home, capsys)[0] == 1
    d = veto.guard("deploy", RELEASE, PROD)
    assert d.decision == "require_approval" and d.approval_id != pending.approval_id
    code, out = verify(home, capsys)
    assert code == 1
    assert f"approval {pending.approval_id}: its status is approved but the record chain " \
           "says pending" in out


def test_a_forged_row_lets_nothing_through(veto: Veto, home: Path, approver: MakeApprover,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # A real grant for another call, copied into a row for this call: "approved by ghost".
    other = veto.guard("deploy", {**RELEASE, "version": "1"}, PROD)
    approver("alice").approve(other.approval_id)
    pending = veto.guard("deploy", RELEASE, PROD)
    with approval_db(home) as db:
        row = db.execute("SELECT binding, call, document FROM approvals WHERE approval_id = ?",
                         (pending.approval_id,)).fetchone()
        granted = json.loads(db.execute("SELECT document FROM approvals WHERE approval_id = ?",
                                        (other.approval_id,)).fetchone()[0])
        forged = {**json.loads(row[2]), "approval_id": str(uuid.uuid4()), "status": "approved",
                  "votes": granted["votes"], "events": granted["events"]}
        db.execute("INSERT INTO approvals (approval_id, status, binding, call, tool, "
                   "requested_at, expires_at, document) VALUES (?, 'approved', ?, ?, "
                   "'deploy', '2026-01-01T00:00:00.000000Z', '2999-01-01T00:00:00.000000Z', ?)",
                   (forged["approval_id"], row[0], row[1], json.dumps(forged)))
    d = veto.guard("deploy", RELEASE, PROD)
    assert d.decision == "require_approval" and d.approval_id == pending.approval_id
    code, out = verify(home, capsys)
    assert code == 1 and f"approval {forged['approval_id']}: the record chain has no entry" in out


def test_a_used_grant_set_back_to_approved_is_not_replayed(
        veto: Veto, home: Path, approver: MakeApprover,
        capsys: pytest.CaptureFixture[str]) -> None:
    pending = veto.guard("deploy", RELEASE, PROD)
    approver("alice").approve(pending.approval_id)
    assert veto.guard("deploy", RELEASE, PROD).allowed
    with approval_db(home) as db:
        document = json.loads(db.execute("SELECT document FROM approvals").fetchone()[0])
        document.update(status="approved", used_by_decision=None, used_at=None,
                        events=document["events"][:-1])
        db.execute("UPDATE approvals SET status = 'approved', document = ?",
                   (json.dumps(document),))
    replay = veto.guard("deploy", RELEASE, PROD)
    assert replay.decision == "require_approval"
    assert verify(home, capsys)[0] == 1


@pytest.mark.parametrize(("granted_call", "wanted_call"), [
    (("deploy", {"service": "docs", "version": "1"}, STAGING), ("deploy", RELEASE, PROD)),
    (("restart", {"svc": "x"}, {**PROD, "tier": "gold"}), ("wire", {"amount": 10**7}, PROD)),
])
def test_a_grant_moved_to_another_binding_in_the_database_lets_nothing_through(
        veto: Veto, home: Path, approver: MakeApprover, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, granted_call: tuple[Any, ...],
        wanted_call: tuple[Any, ...]) -> None:
    # A benign call approved by whoever may approve it; its row's binding column set to
    # the binding of a call that needs other approvers (or another tool altogether).
    benign = veto.guard(*granted_call)
    approver("dave").approve(benign.approval_id)
    wanted = veto.guard(*wanted_call)
    assert wanted.decision == "require_approval"
    with approval_db(home) as db:
        binding = db.execute("SELECT binding FROM approvals WHERE approval_id = ?",
                             (wanted.approval_id,)).fetchone()[0]
        db.execute("UPDATE approvals SET binding = ? WHERE approval_id = ?",
                   (binding, benign.approval_id))
    d = veto.guard(*wanted_call)
    assert d.decision == "require_approval"
    assert f"refused approval {benign.approval_id}: its chain entry 1 is for another " \
           "binding" in caplog.text
    code, out = verify(home, capsys)
    assert code == 1
    assert f"approval {benign.approval_id}: its chain entry" in out
    assert "is for another binding" in out


def test_approvers_are_shown_the_call_the_chain_holds_not_an_edited_row(
        veto: Veto, home: Path, approver: MakeApprover) -> None:
    pending = veto.guard("deploy", RELEASE, PROD)
    with approval_db(home) as db:
        document = json.loads(db.execute("SELECT document FROM approvals").fetchone()[0])
        real = document["request"]
        document["request"] = {**real, "context": {**real["context"], "environment": "staging"},
                               "requirements": [{**r, "groups": ["dev-leads"]}
                                                for r in real["requirements"]]}
        document["reason"] = "routine staging redeploy"
        db.execute("UPDATE approvals SET document = ?", (json.dumps(document),))
    alice = approver("alice")
    for shown in (alice.get(pending.approval_id), alice.pending()[0],
                  veto.approvals.get(pending.approval_id)):
        assert shown.request.document() == real
        assert shown.reason == pending.reason
    with pytest.raises(ApprovalError, match="dave is not in any approver group"):
        approver("dave").approve(pending.approval_id)
    assert alice.approve(pending.approval_id).status == "approved"
    assert veto.guard("deploy", RELEASE, PROD).allowed


def test_a_row_whose_call_the_chain_does_not_hold_cannot_be_shown_or_voted_on(
        veto: Veto, home: Path, approver: MakeApprover,
        caplog: pytest.LogCaptureFixture) -> None:
    # A row pointed at another chain request: neither the approver's list nor a vote
    # takes it as it stands.
    first = veto.guard("deploy", RELEASE, PROD)
    second = veto.guard("deploy", {**RELEASE, "version": "9"}, PROD)
    with approval_db(home) as db:
        binding = db.execute("SELECT binding FROM approvals WHERE approval_id = ?",
                             (first.approval_id,)).fetchone()[0]
        db.execute("UPDATE approvals SET binding = ? WHERE approval_id = ?",
                   (binding, second.approval_id))
    alice = approver("alice")
    with pytest.raises(ApprovalError, match="not supported by the record chain"):
        alice.get(second.approval_id)
    with pytest.raises(ApprovalError, match="not supported by the record chain"):
        alice.approve(second.approval_id)
    assert [a.approval_id for a in alice.pending()] == [first.approval_id]
    assert f"approval {second.approval_id} is not supported" in caplog.text


def test_a_used_entry_hidden_by_editing_its_columns_is_caught_by_verify(
        veto: Veto, home: Path, approver: MakeApprover,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The guard selects a grant's chain entries by their indexed columns; an edited column
    # hides an entry from it (a known limit: whoever can write records.sqlite3 can also
    # rewrite its tail), and ``decisions verify`` reports the edit.
    pending = veto.guard("deploy", RELEASE, PROD)
    approver("alice").approve(pending.approval_id)
    assert veto.guard("deploy", RELEASE, PROD).allowed
    with sqlite3.connect(home / "records.sqlite3", isolation_level=None) as db:
        db.execute("UPDATE records SET decision_id = 'hidden' WHERE kind = 'approval' "
                   "AND json_extract(json, '$.event') = 'used'")
    code, out = verify(home, capsys)
    assert code == 1 and "column decision_id='hidden' does not match" in out


def test_a_vote_chained_by_hand_without_the_approvers_key_is_refused(
        veto: Veto, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pending = veto.guard("deploy", RELEASE, PROD)
    approval = veto.approvals.get(pending.approval_id)
    key = Ed25519PrivateKey.generate()
    registry = veto._approval_service.registry.current()
    alice = registry.approvers["alice"]
    vote = {"approval_id": approval.approval_id, "binding": approval.binding,
            "verdict": "approved", "approver": "alice", "key_id": alice.keys[0].key_id,
            "justification": None, "signed_at": approval.requested_at}
    signature = Signer(alice, alice.keys[0].key_id, key).sign(vote)
    veto.records.append_event({
        "kind": "approval", "decision_id": approval.requested_by_decision,
        "timestamp": approval.requested_at, "approval_id": approval.approval_id,
        "event": "approved", "status": "approved", "tool": "deploy",
        "binding": approval.binding, "detail": {}, "vote": vote, "signature": signature})
    with approval_db(home) as db:
        db.execute("UPDATE approvals SET status = 'approved'")
    assert veto.guard("deploy", RELEASE, PROD).decision == "require_approval"
    code, out = verify(home, capsys)
    assert code == 1 and "does not verify" in out


# -- subjects that are not strings ----------------------------------------------------------


@pytest.mark.parametrize(("granted", "other"), [
    (42, "42"), ("42", 42), (42, None), (None, 42), ({"id": "carol"}, None),
    ({"id": "carol"}, {"id": "dave"}), ({"id": "carol"}, "carol"), ([1, 2], [2, 1]),
    (True, "true"), (None, ""),
])
def test_a_grant_binds_the_subject_as_json(veto: Veto, approver: MakeApprover, granted: Any,
                                           other: Any) -> None:
    def ctx(subject: Any) -> dict[str, Any]:
        return {"environment": "staging"} | ({} if subject is None else {"user": subject})

    pending = veto.guard("deploy", RELEASE, ctx(granted))
    approver("dave").approve(pending.approval_id)
    assert veto.guard("deploy", RELEASE, ctx(other)).decision == "require_approval"
    assert veto.guard("deploy", RELEASE, ctx(granted)).allowed


def test_subject_user_and_user_id_are_all_bound(veto: Veto, approver: MakeApprover) -> None:
    ctx = {"environment": "staging", "user": "carol"}
    pending = veto.guard("deploy", RELEASE, ctx)
    approver("dave").approve(pending.approval_id)
    assert veto.guard("deploy", RELEASE, {**ctx, "subject": "mallory"}).decision \
        == "require_approval"
    assert veto.guard("deploy", RELEASE, {**ctx, "user_id": 7}).decision == "require_approval"


# -- a rejection reaches the agent ----------------------------------------------------------


def test_a_rejection_is_told_to_the_agent_and_holds(make_veto: Callable[..., Veto],
                                                   approver: MakeApprover) -> None:
    with make_veto(rejection_ttl=0.5) as veto:
        pending = veto.guard("deploy", RELEASE, PROD)
        approver("alice").reject(pending.approval_id, "freeze until Monday")
        denied = veto.guard("deploy", RELEASE, PROD)
        assert (denied.decision, denied.cause, denied.approval_id) == (
            "deny", "approval_rejected", pending.approval_id)
        message = json.loads(denied.tool_message())
        assert message["status"] == "rejected"
        assert message["reason"] == (f"rejected by alice (approval {pending.approval_id}): "
                                     "freeze until Monday")
        assert veto.records.get(denied.decision_id).cause == "approval_rejected"
        assert veto.guard("deploy", RELEASE, PROD).decision == "deny"     # still
        assert len(veto.approvals.list()) == 1                             # no new request
        time.sleep(0.55)
        after = veto.guard("deploy", RELEASE, PROD)
        assert after.decision == "require_approval" and after.approval_id != pending.approval_id


def test_a_rejection_needs_a_justification(veto: Veto, approver: MakeApprover) -> None:
    pending = veto.guard("deploy", RELEASE, PROD)
    with pytest.raises(ApprovalError, match="a rejection needs a justification"):
        approver("alice").reject(pending.approval_id, " ")


# -- validity counts from the approval, and waiting ------------------------------------------


def test_a_late_approval_gets_its_whole_grant_time(make_veto: Callable[..., Veto],
                                                  approver: MakeApprover) -> None:
    with make_veto(approval_ttl=1.5, approval_grant_ttl=3.0) as veto:
        alice = approver("alice")
        asked = time.monotonic()
        pending = veto.guard("deploy", RELEASE, PROD)
        time.sleep(0.7)
        alice.approve(pending.approval_id)
        time.sleep(max(0.0, asked + 1.6 - time.monotonic()))
        # past the request's expiry (1.5 s after it was made), well within the grant
        assert veto.guard("deploy", RELEASE, PROD).allowed


def test_an_unused_grant_expires(make_veto: Callable[..., Veto],
                                 approver: MakeApprover) -> None:
    with make_veto(approval_grant_ttl=0.5) as veto:
        pending = veto.guard("deploy", RELEASE, PROD)
        approver("alice").approve(pending.approval_id)
        time.sleep(0.6)
        again = veto.guard("deploy", RELEASE, PROD)
        assert again.decision == "require_approval" and again.approval_id != pending.approval_id
        old = veto.approvals.get(pending.approval_id)
        assert (old.status, old.expired_cause) == ("expired", "grant_unused")


def test_guard_waits_for_the_approval_and_uses_it(veto: Veto, approver: MakeApprover) -> None:
    first = veto.guard("deploy", RELEASE, PROD)
    alice = approver("alice")
    timer = threading.Timer(0.3, lambda: alice.approve(first.approval_id))
    timer.start()
    started = time.monotonic()
    decided = veto.guard("deploy", RELEASE, PROD, wait_for_approval=10)
    timer.join()
    assert decided.allowed and decided.approval_id == first.approval_id
    assert 0.25 < time.monotonic() - started < 5
    assert veto.approvals.get(first.approval_id).status == "used"


def test_guard_waits_then_reports_a_rejection_or_still_pending(
        veto: Veto, approver: MakeApprover) -> None:
    started = time.monotonic()
    pending = veto.guard("deploy", RELEASE, PROD, wait_for_approval=0.3)
    assert pending.decision == "require_approval" and time.monotonic() - started >= 0.3
    alice = approver("alice")
    timer = threading.Timer(0.2, lambda: alice.reject(pending.approval_id, "no"))
    timer.start()
    rejected = veto.guard("deploy", RELEASE, PROD, wait_for_approval=10)
    timer.join()
    assert rejected.decision == "deny" and rejected.cause == "approval_rejected"


def test_guard_async_waits_without_blocking_the_loop(veto: Veto, approver: MakeApprover) -> None:
    first = veto.guard("deploy", RELEASE, PROD)
    alice = approver("alice")

    async def main() -> tuple[Any, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, lambda: threading.Thread(
            target=alice.approve, args=(first.approval_id,)).start())
        decided = await veto.guard_async("deploy", RELEASE, PROD, wait_for_approval=10)
        ticker.cancel()
        return decided, ticks

    decided, ticks = asyncio.run(main())
    assert decided.allowed and ticks >= 5     # the loop ran while guard_async waited


# -- one grant, one call --------------------------------------------------------------------


def test_threads_racing_for_a_grant_get_exactly_one_allow(veto: Veto,
                                                          approver: MakeApprover) -> None:
    alice = approver("alice")
    for round in range(3):
        args = {**RELEASE, "version": str(round)}
        pending = veto.guard("deploy", args, PROD)
        alice.approve(pending.approval_id)
        barrier = threading.Barrier(8)
        results: list[str] = []

        def work() -> None:
            barrier.wait()
            results.append(veto.guard("deploy", args, PROD).decision)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == ["allow"] + ["require_approval"] * 7


RACER = textwrap.dedent("""
    import os, sys, time
    from veto_opa import Veto

    policy, home, go = sys.argv[1:]
    with Veto([policy], home=home, reload_interval=0, spans=False, pool_size=1) as veto:
        print("ready", flush=True)
        while not os.path.exists(go):
            time.sleep(0.001)
        results = [veto.guard("deploy", {"service": "payments", "version": "2.4.1"},
                              {"environment": "production", "user": "bob"}).decision
                   for _ in range(5)]
    print(" ".join(results), flush=True)
""")


def test_two_processes_racing_for_a_grant_get_exactly_one_allow(
        veto: Veto, home: Path, policy: Path, approver: MakeApprover, tmp_path: Path) -> None:
    pending = veto.guard("deploy", RELEASE, PROD)
    approver("alice").approve(pending.approval_id)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(policy), str(home), str(go)],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    outputs = [proc.communicate(timeout=60)[0].split() for proc in procs]
    decisions = [d for out in outputs for d in out]
    assert len(decisions) == 10
    assert decisions.count("allow") == 1
    assert veto.approvals.get(pending.approval_id).status == "used"
    assert veto.records.verify().ok


def test_a_registry_the_agent_can_write_is_warned_about(
        make_veto: Callable[..., Veto], home: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The registry is the trust root: an agent that can write it can add itself.
    make_veto()
    assert f"the approvers registry {home / 'approvers.yaml'} can be written by this " \
           "process" in caplog.text
