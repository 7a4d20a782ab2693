"""``veto-opa decisions list|show|export|verify``: output and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from pathlib import Path

import pytest

from veto_opa.records import DecisionRecord, SQLiteRecordStore, store_path, verify_export
from veto_opa.records.cli import main, register

from .conftest import decision_fields


@pytest.fixture
def records(home: Path) -> list[DecisionRecord]:
    with SQLiteRecordStore(store_path(home)) as store:
        made = [
            store.append(
                decision_fields(
                    decision="deny",
                    tool="execute_sql",
                    rule="block_deletes",
                    reason="Destructive SQL is not allowed on production databases, not ever, "
                    "not even on a Friday afternoon",
                    timestamp="2026-11-25T08:00:00.123456Z",
                )
            ),
            store.append(
                decision_fields(
                    decision="allow",
                    tool="read_file",
                    rule=None,
                    reason="no rule applies",
                    timestamp="2026-11-25T09:00:00Z",
                )
            ),
            store.append(
                decision_fields(
                    decision="require_approval",
                    tool="send_email\x1b[31m",
                    rule="external_mail",
                    reason="needs\napproval",
                    approvers=["platform-team", "security"],
                    timestamp="2026-11-25T10:00:00Z",
                )
            ),
        ]
        store.append_outcome(made[1].decision_id, "failed", "exit status 2")
        store.append_outcome(made[0].decision_id, "skipped")
    return made


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_an_aligned_table_newest_first(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    code, out, err = run(capsys, "decisions", "list", "--home", str(home))

    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["time", "decision", "tool", "rule", "reason", "decision_id"]
    assert [row.split()[1] for row in rows] == ["require_approval", "allow", "deny"]
    assert [row.split()[-1] for row in rows] == [r.decision_id for r in reversed(records)]
    assert rows[2].startswith("2026-11-25T08:00:00Z  deny")
    # columns line up: every row's decision_id starts where the header's does
    column = header.index("decision_id")
    assert all(
        row.index(r.decision_id) == column for row, r in zip(rows, reversed(records), strict=True)
    )
    assert "Destructive SQL is not allowed on production da…  " in out  # 48 wide
    assert " - " in rows[1]  # no rule
    assert "\x1b" not in out and "send_email?[31m" in out  # control characters neutralised
    assert "needs?approval" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--decision", "deny"], ["deny"]),
        (["--tool", "read_file"], ["allow"]),
        (["--rule", "block_deletes"], ["deny"]),
        (["--since", "2026-11-25T09:00:00Z"], ["require_approval", "allow"]),
        (["--until", "2026-11-25T09:00:00Z"], ["deny"]),
        (["--limit", "1"], ["require_approval"]),
    ],
)
def test_list_filters(
    capsys: pytest.CaptureFixture[str],
    home: Path,
    records: list[DecisionRecord],
    args: list[str],
    expected: list[str],
) -> None:
    code, out, _ = run(capsys, "decisions", "list", "--home", str(home), *args)
    assert code == 0
    assert [row.split()[1] for row in out.splitlines()[1:]] == expected


def test_list_without_matches(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    code, out, _ = run(capsys, "decisions", "list", "--home", str(home), "--tool", "nothing")
    assert (code, out) == (0, "no matching decisions\n")


def test_list_json(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    code, out, _ = run(capsys, "decisions", "list", "--home", str(home), "--json")
    assert code == 0
    assert json.loads(out) == [r.document() for r in reversed(records)]


def test_list_uses_veto_home(
    capsys: pytest.CaptureFixture[str],
    home: Path,
    records: list[DecisionRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VETO_HOME", str(home))
    code, out, _ = run(capsys, "decisions", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 3


def test_list_defaults_to_dot_veto(
    capsys: pytest.CaptureFixture[str],
    home: Path,
    records: list[DecisionRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VETO_HOME", raising=False)
    monkeypatch.chdir(home.parent)
    assert home.name == ".veto"
    code, out, _ = run(capsys, "decisions", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 3


def test_missing_store_is_an_error_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "decisions", "list", "--home", str(tmp_path / "nowhere"))
    assert (code, out) == (1, "")
    assert "no decision record store at" in err
    assert not (tmp_path / "nowhere").exists()


def test_show_text(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    allow = records[1]
    code, out, err = run(capsys, "decisions", "show", allow.decision_id, "--home", str(home))

    assert (code, err) == (0, "")
    lines = out.splitlines()
    fields = dict(line.split(None, 1) for line in lines if not line.startswith(" ") and " " in line)
    assert fields["decision_id"] == allow.decision_id
    assert fields["decision"] == "allow"
    assert fields["rule"] == "-"
    assert fields["reason"] == "no rule applies"
    assert json.loads(fields["arguments"]) == allow.arguments
    assert fields["record_hash"] == allow.record_hash
    outcome_lines = lines[lines.index("outcomes") + 1 :]
    assert [line.split()[2:] for line in outcome_lines] == [
        ["failed", "exit", "status", "2"],
    ]


def test_show_lists_approvers(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    code, out, _ = run(capsys, "decisions", "show", records[2].decision_id, "--home", str(home))
    assert code == 0
    assert "approvers         platform-team, security" in out
    assert "outcomes          -" in out
    assert "\x1b" not in out


def test_show_json(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    allow = records[1]
    code, out, _ = run(
        capsys, "decisions", "show", allow.decision_id, "--json", "--home", str(home)
    )
    assert code == 0
    shown = json.loads(out)
    assert shown["record"] == allow.document()
    assert [o["status"] for o in shown["outcomes"]] == ["failed"]
    assert all(o["kind"] == "outcome" for o in shown["outcomes"])


def test_show_unknown_id(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    code, out, err = run(capsys, "decisions", "show", "nope", "--home", str(home))
    assert (code, out) == (1, "")
    assert err == "veto-opa: error: no decision 'nope'\n"


def test_export_jsonl_then_verify_it(
    capsys: pytest.CaptureFixture[str],
    home: Path,
    records: list[DecisionRecord],
    tmp_path: Path,
) -> None:
    target = tmp_path / "audit.jsonl"
    code, out, _ = run(capsys, "decisions", "export", str(target), "--home", str(home))

    assert code == 0
    assert out == f"wrote 5 records to {target} (digest in {target}.sha256)\n"
    assert verify_export(target).ok

    code, out, _ = run(capsys, "decisions", "verify", "--export", str(target))
    assert code == 0
    assert out.startswith(f"ok: {target}: 5 records, chain intact, head sha256:")

    lines = target.read_text(encoding="utf-8").splitlines()
    document = json.loads(lines[1])
    document["decision"] = "deny"
    lines[1] = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "decisions", "verify", "--export", str(target))
    assert code == 1
    assert out.startswith(f"FAILED: {target}: sequence 2: record_hash ")
    assert "1 records before it are intact" in out


def test_export_csv_by_suffix_with_filters(
    capsys: pytest.CaptureFixture[str],
    home: Path,
    records: list[DecisionRecord],
    tmp_path: Path,
) -> None:
    target = tmp_path / "allowed.CSV"
    code, out, _ = run(
        capsys, "decisions", "export", str(target), "--decision", "allow", "--home", str(home)
    )
    assert (code, out) == (0, f"wrote 2 records to {target}\n")
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("kind,sequence,timestamp,decision_id,")
    assert [line.split(",")[0] for line in lines[1:]] == ["decision", "outcome"]


def test_export_format_option_wins(
    capsys: pytest.CaptureFixture[str],
    home: Path,
    records: list[DecisionRecord],
    tmp_path: Path,
) -> None:
    target = tmp_path / "audit.csv"
    code, _, _ = run(
        capsys, "decisions", "export", str(target), "--format", "jsonl", "--home", str(home)
    )
    assert code == 0
    assert json.loads(target.read_text(encoding="utf-8").splitlines()[0])["sequence"] == 1


def test_verify_store(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    code, out, _ = run(capsys, "decisions", "verify", "--home", str(home))
    assert code == 0
    assert out.startswith(f"ok: {store_path(home)}: 5 records, chain intact, head sha256:")

    with sqlite3.connect(store_path(home)) as conn:
        conn.execute("UPDATE records SET decision = 'allow' WHERE sequence = 3")
    code, out, _ = run(capsys, "decisions", "verify", "--home", str(home))
    assert code == 1
    assert out.splitlines() == [
        f"FAILED: {store_path(home)}: sequence 3: column decision='allow' does not match "
        "the record's decision='require_approval'",
        "2 records before it are intact",
    ]

    code, out, _ = run(capsys, "decisions", "verify", "--home", str(home), "--json")
    assert code == 1
    report = json.loads(out)
    assert (report["ok"], report["first_bad_sequence"], report["count"]) == (False, 3, 2)


def test_verify_prints_an_anchor_that_a_later_verify_checks(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    code, out, _ = run(capsys, "decisions", "verify", "--home", str(home), "--json")
    report = json.loads(out)
    anchor = f"{report['head_sequence']}:{report['head_hash']}"
    assert report["head_sequence"] == 5
    code, out, _ = run(capsys, "decisions", "verify", "--home", str(home))
    assert code == 0 and out.rstrip().endswith(f"(anchor: --anchor {anchor})")

    code, out, _ = run(capsys, "decisions", "verify", "--home", str(home), "--anchor", anchor)
    assert code == 0 and "chain intact" in out

    with sqlite3.connect(store_path(home)) as conn:   # cut short: a whole chain of 4 is left
        conn.execute("DELETE FROM records WHERE sequence = 5")
    code, out, _ = run(capsys, "decisions", "verify", "--home", str(home))
    assert code == 0
    code, out, _ = run(capsys, "decisions", "verify", "--home", str(home), "--anchor", anchor)
    assert code == 1
    assert out.splitlines()[0] == (
        f"FAILED: {store_path(home)}: sequence 5: the chain ends at sequence 4, before the "
        "anchored sequence 5: records were removed")


@pytest.mark.parametrize("anchor", ["5", "x:sha256:" + "0" * 64, "5:sha256:abc",
                                    "0:sha256:" + "0" * 64, "5:md5:" + "0" * 64])
def test_verify_refuses_a_malformed_anchor(
    capsys: pytest.CaptureFixture[str], home: Path, anchor: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(capsys, "decisions", "verify", "--home", str(home), "--anchor", anchor)
    assert exited.value.code == 2
    assert "expected SEQUENCE:sha256:<64 hex digits>" in capsys.readouterr().err


def test_verify_refuses_two_anchors_for_one_sequence(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    code, _, err = run(capsys, "decisions", "verify", "--home", str(home),
                       "--anchor", "2:sha256:" + "0" * 64, "--anchor", "2:sha256:" + "1" * 64)
    assert code == 1 and "two anchors for sequence 2" in err


def test_verify_allow_gaps_needs_export(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    code, _, err = run(capsys, "decisions", "verify", "--allow-gaps", "--home", str(home))
    assert code == 1 and "--allow-gaps applies to --export only" in err


def test_verify_missing_export(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "decisions", "verify", "--export", str(tmp_path / "x.jsonl"))
    assert code == 1 and "cannot read export" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["decisions", "list", "--since", "yesterday"],
        ["decisions", "list", "--limit", "0"],
        ["decisions", "list", "--decision", "maybe"],
        ["decisions", "export", "x", "--format", "xml"],
        ["decisions", "show"],
        ["decisions", "frobnicate"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_group_without_command_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decisions"]) == 2
    assert "list" in capsys.readouterr().err
    assert main([]) == 2


@pytest.mark.parametrize("command", ["list", "show", "export", "verify"])
def test_every_subcommand_help_has_an_example(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["decisions", command, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out
    assert f"veto-opa decisions {command}" in out.split("example", 1)[1]


def test_register_plugs_into_another_parser(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    parser = argparse.ArgumentParser(prog="veto-opa")
    subparsers = parser.add_subparsers(dest="command")
    subparsers.add_parser("check")
    group = register(subparsers)
    assert group.prog == "veto-opa decisions"

    args = parser.parse_args(["decisions", "list", "--home", str(home), "--json"])
    assert args.func(args) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_show_takes_a_unique_prefix_of_the_id(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord]
) -> None:
    allow = records[1]
    code, out, _ = run(capsys, "decisions", "show", allow.decision_id[:24], "--json",
                       "--home", str(home))
    assert code == 0 and json.loads(out)["record"]["decision_id"] == allow.decision_id
    # Version 7 ids made in the same millisecond share their first characters.
    shared = os.path.commonprefix([r.decision_id for r in records])
    if shared:
        code, _, err = run(capsys, "decisions", "show", shared, "--home", str(home))
        assert code == 1 and "the start of several decision ids" in err
    code, _, err = run(capsys, "decisions", "show", "zzz", "--home", str(home))
    assert code == 1 and "no decision 'zzz'" in err


def test_verify_of_a_filtered_export_hints_at_allow_gaps(
    capsys: pytest.CaptureFixture[str], home: Path, records: list[DecisionRecord],
    tmp_path: Path
) -> None:
    target = tmp_path / "denies.jsonl"
    run(capsys, "decisions", "export", str(target), "--decision", "allow", "--home", str(home))
    code, out, _ = run(capsys, "decisions", "verify", "--export", str(target))
    assert code == 1 and "FAILED" in out and "verify it with --allow-gaps" in out
    code, out, _ = run(capsys, "decisions", "verify", "--export", str(target), "--allow-gaps")
    assert code == 0 and out.startswith("ok: ")
