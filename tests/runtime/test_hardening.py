"""Defects found by trying veto-opa as an attacker: each test failed on the code before it.

- a redacted low-entropy value could be recovered from the plain digest of the arguments;
- some hostile calls were denied without any record;
- the veto home and its databases were readable by every local user;
- ``@veto.tool`` on a method sent ``self`` as an argument, and values that are not JSON could
  not be converted.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import SEED
from veto_opa import Veto
from veto_opa._json import canonical_json

PROD = {"environment": "production", "user_role": "sre"}


def _pin_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "payments.yaml"
    policy.write_text("redact: [args.pin]\n"
                      "rules:\n  - name: big_refunds\n    tool: refund\n"
                      "    when: args.amount > 1000\n    action: deny\n")
    return policy


def _candidates_matching(digests: set[str], arguments: dict[str, object]) -> list[str]:
    """Every 4-digit PIN whose arguments hash to one of ``digests``, as an attacker with the
    records (or an export) but without the key would search."""
    found = []
    for n in range(10_000):
        pin = f"{n:04d}"
        text = canonical_json({**arguments, "pin": pin})
        if "sha256:" + hashlib.sha256(text.encode()).hexdigest() in digests:
            found.append(pin)
    return found


def test_a_redacted_pin_cannot_be_recovered_from_the_record_or_export(tmp_path: Path) -> None:
    arguments = {"account": "acct-7", "amount": 20, "pin": "4821"}
    with Veto([_pin_policy(tmp_path)], home=tmp_path / "home", spans=False) as veto:
        d = veto.guard("refund", arguments, PROD)
        record = veto.records.get(d.decision_id)
        export = tmp_path / "audit.jsonl"
        veto.records.export(export)
    assert record.arguments["pin"].startswith("hmac-sha256:") and record.erased == ["args.pin"]
    assert record.arguments_sha256 is None and record.arguments_hmac.startswith("hmac-sha256:")
    public = {k: v for k, v in arguments.items() if k != "pin"}
    digests = {value for value in json.dumps(record.document()).split('"') if "sha256:" in value}
    digests |= {value for line in export.read_text().splitlines()
                for value in line.split('"') if "sha256:" in value}
    digests |= {value.removeprefix("hmac-") for value in set(digests)}   # strip to be thorough
    assert _candidates_matching(digests, public) == []


def test_without_redaction_the_plain_digest_stays_for_auditors(tmp_path: Path) -> None:
    arguments = {"statement": "SELECT 1", "database": "analytics"}
    with Veto([SEED], home=tmp_path, spans=False) as veto:
        record = veto.records.get(veto.guard("execute_sql", arguments, PROD).decision_id)
    assert record.arguments_hmac is None
    assert record.arguments_sha256 == "sha256:" + hashlib.sha256(
        canonical_json(arguments).encode()).hexdigest()


def _deep_dict(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("arguments, context, phrase", [
    ('{"a":' * 100_000 + "1" + "}" * 100_000, PROD, "nested too deeply"),
    (_deep_dict(5_000), PROD, "nest deeper than 200 levels"),
    ({"statement": "SELECT '\ud800'"}, PROD, "lone surrogate"),
    ('{"statement": "SELECT \'\\ud800\'"}', PROD, "lone surrogate"),
    ({"statement": "SELECT 1"}, {"environment": "production\udfff"}, "lone surrogate"),
    ({"statement": "SELECT 1"}, {"nested": _deep_dict(5_000)}, "nest deeper than 200"),
])
def test_every_hostile_call_is_denied_and_recorded(tmp_path: Path, arguments: object,
                                                   context: dict[str, object],
                                                   phrase: str) -> None:
    with Veto([SEED], home=tmp_path, spans=False) as veto:
        d = veto.guard("execute_sql", arguments, context)
        assert (d.decision, d.cause) == ("deny", "invalid_tool_call")
        assert phrase in d.reason
        record = veto.records.get(d.decision_id)
        assert record is not None, "the denial must leave a record"
        assert record.reason == d.reason and record.arguments in (None, {"statement":
                                                                        "SELECT 1"})
        assert (record.arguments_sha256 or "").startswith("sha256:")
        if record.context == {} and context is not PROD:
            assert record.context_digest is not None   # kept as a digest of what was sent
        assert veto.records.verify().ok


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_home_and_its_files_are_private(tmp_path: Path) -> None:
    home = tmp_path / "new" / ".veto"
    with Veto([SEED], home=home, spans=False) as veto:
        veto.guard("rotate_secret", {"secret_path": "/x", "service": "stripe"}, {"user": "a"})
        files = sorted(home.iterdir())
        assert {p.name for p in files} >= {"records.sqlite3", "approvals.sqlite3",
                                          "record.key", "records.sqlite3-wal"}
        assert _mode(home) == 0o700
        for path in files:
            assert _mode(path) == 0o600, path


def test_an_existing_home_keeps_its_mode(tmp_path: Path) -> None:
    home = tmp_path / "shared"
    home.mkdir(mode=0o750)
    os.chmod(home, 0o750)
    with Veto([SEED], home=home, spans=False):
        pass
    assert _mode(home) == 0o750
    assert _mode(home / "records.sqlite3") == 0o600


def test_a_method_is_guarded_without_self(tmp_path: Path) -> None:
    with Veto([SEED], home=tmp_path, spans=False) as veto:
        class Client:
            @veto.tool(name="execute_sql", context=PROD)
            def query(self, statement: str, database: str = "analytics") -> str:
                return "rows"

            @classmethod
            @veto.tool(name="execute_sql", context=PROD)
            def ping(cls, statement: str, database: str = "analytics") -> str:
                return "pong"

        assert Client().query("SELECT 1") == "rows"
        assert Client.ping("SELECT 1") == "pong"
        recorded = [r.arguments for r in veto.records.query(tool="execute_sql")]
        assert recorded == [{"statement": "SELECT 1", "database": "analytics"}] * 2


def test_arguments_that_are_not_json_are_converted_by_a_mapper(tmp_path: Path) -> None:
    def as_json(arguments: dict[str, object]) -> dict[str, object]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in arguments.items()}

    with Veto([SEED], home=tmp_path, spans=False) as veto:
        @veto.tool(context=PROD)
        def schedule(at: datetime) -> str:
            return "ok"

        @veto.tool(name="schedule", context=PROD, arguments=as_json)
        def schedule_converted(at: datetime) -> str:
            return "ok"

        from veto_opa import Denied

        with pytest.raises(Denied, match="not JSON"):
            schedule(datetime(2026, 12, 6, 12, 0))
        assert schedule_converted(datetime(2026, 12, 6, 12, 0)) == "ok"
        assert veto.records.query(limit=1)[0].arguments == {"at": "2026-12-06T12:00:00"}


@pytest.mark.parametrize("levels, denied", [(199, False), (200, False), (201, True), (900, True)])
def test_nesting_is_bounded_at_200_levels_whatever_the_text_length(
        tmp_path: Path, levels: int, denied: bool) -> None:
    # Lists nest in two characters a level: the shortest text of a given depth.
    value: object = 1
    for _ in range(levels - 1):
        value = [value]
    with Veto([SEED], home=tmp_path, spans=False) as veto:
        d = veto.guard("execute_sql", {"statement": value}, PROD)
    assert (d.cause == "invalid_tool_call") is denied, d.reason
    if denied:
        assert "nest deeper than 200 levels" in d.reason


def test_a_built_bundle_keeps_the_policys_redaction(tmp_path: Path) -> None:
    # Deployed as a bundle (built once, loaded by Veto(bundle=...)), the policy's redact: must
    # still keep the PIN out of the record, and the digests keyed.
    from veto_opa.translators import build
    from veto_opa.translators.bundle import write_tar_gz

    archive = tmp_path / "veto.tar.gz"
    write_tar_gz(build([_pin_policy(tmp_path)]).bundle(), archive)
    with Veto(bundle=archive, home=tmp_path / "home", spans=False) as veto:
        d = veto.guard("refund", {"account": "acct-7", "amount": 20, "pin": "4821"}, PROD)
        record = veto.records.get(d.decision_id)
    assert record.erased == ["args.pin"] and "4821" not in json.dumps(record.document())
    assert record.arguments_sha256 is None and record.arguments_hmac is not None


def test_an_opa_servers_bundle_keeps_the_policys_redaction(tmp_path: Path) -> None:
    from tests.opa_standin import OpaStandin
    from veto_opa.translators import build

    with OpaStandin(build([_pin_policy(tmp_path)]).bundle()) as url, \
            Veto(opa_url=url, home=tmp_path / "home", spans=False) as veto:
        d = veto.guard("refund", {"account": "acct-7", "amount": 20, "pin": "4821"}, PROD)
        record = veto.records.get(d.decision_id)
    assert record.erased == ["args.pin"] and "4821" not in json.dumps(record.document())


def test_redaction_an_opa_server_cannot_tell_redacts_every_argument(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:          # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # OPA unreachable while Veto starts: the policies' paths are unknown, so nothing is kept
    # in clear.
    with Veto(opa_url=url, home=tmp_path / "home", spans=False) as veto:
        d = veto.guard("refund", {"account": "acct-7", "amount": 20, "pin": "4821"}, PROD)
        record = veto.records.get(d.decision_id)
    assert d.cause == "engine_unavailable"
    assert sorted(record.erased) == ["args.account", "args.amount", "args.pin"]
    assert "4821" not in json.dumps(record.document())


def test_before_a_bundle_service_delivers_every_argument_is_redacted(tmp_path: Path) -> None:
    # No bundle yet (the service is down, nothing persisted): the call is denied, and its
    # record must not keep what the bundle to come may say to hide.
    with Veto(bundle_url="http://127.0.0.1:9/veto.tar.gz", home=tmp_path / "home",
              spans=False) as veto:
        d = veto.guard("refund", {"account": "acct-7", "amount": 20, "pin": "4821"}, PROD)
        record = veto.records.get(d.decision_id)
    assert d.decision == "deny"
    assert sorted(record.erased) == ["args.account", "args.amount", "args.pin"]
    assert "4821" not in json.dumps(record.document())


def test_calls_recorded_while_a_new_policy_is_swapped_in_redact_for_both(
        tmp_path: Path) -> None:
    # The old policy redacts args.pin, the new one args.token: a call decided on either
    # while the engine swaps them keeps both out of its record; afterwards only the new
    # policy's path is redacted.
    policy = _pin_policy(tmp_path)
    arguments = {"account": "acct-7", "amount": 20, "pin": "4821", "token": "tok-5"}
    with Veto([policy], home=tmp_path / "home", spans=False, reload_interval=0) as veto:
        during: list[str] = []
        swap = veto.engine.reload

        def reload_deciding_meanwhile(bundle: object) -> None:
            during.append(veto.guard("refund", arguments, PROD).decision_id)
            swap(bundle)  # type: ignore[arg-type]

        veto.engine.reload = reload_deciding_meanwhile  # type: ignore[method-assign]
        policy.write_text(policy.read_text().replace("args.pin", "args.token"))
        veto.reload()
        after = veto.guard("refund", arguments, PROD)
        recorded = veto.records.get(during[0]), veto.records.get(after.decision_id)
    assert sorted(recorded[0].erased) == ["args.pin", "args.token"]
    assert recorded[1].erased == ["args.token"] and recorded[1].arguments["pin"] == "4821"
