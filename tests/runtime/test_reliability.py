"""Under load, across a crash, and against tampering, no decision record is lost or forged."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from tests.conftest import ROOT, SEED
from veto_opa import Veto
from veto_opa.records import SQLiteRecordStore, store_path

PROD = {"environment": "production", "user_role": "sre"}
CALLS = [
    ("execute_sql", {"statement": "DROP TABLE customers", "database": "analytics"}, "deny"),
    ("execute_sql", {"statement": "SELECT 1", "database": "analytics"}, "allow"),
    ("execute_sql", {"statement": "SELECT 1", "database": "billing"}, "require_approval"),
]


def test_8_threads_times_2000_guards_give_16000_records(tmp_path: Path) -> None:
    wrong: list[str] = []
    with Veto([SEED], home=tmp_path, reload_interval=0) as veto:
        def work(t: int) -> None:
            for i in range(2000):
                tool, args, expected = CALLS[(t + i) % len(CALLS)]
                d = veto.guard(tool, {**args, "n": i}, PROD)
                if d.decision != expected:
                    wrong.append(f"{t}/{i}: {d.decision} {d.reason}")

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert wrong == []
        # Each approval request is an entry of the chain too (its "requested" event).
        requests = len(veto.approvals.list(limit=20_000))
        assert 0 < requests <= 2000
        assert veto.records.count() == 16_000 + requests
        assert len(veto.records.query(limit=None)) == 16_000
        result = veto.records.verify()
        assert result.ok and result.count == 16_000 + requests, result.problem


CHILD = textwrap.dedent("""
    import sys
    from veto_opa import Veto
    veto = Veto([sys.argv[1]], home=sys.argv[2], reload_interval=0)
    print("ready", flush=True)
    i = 0
    while True:
        d = veto.guard("execute_sql", {"statement": f"SELECT {i}", "database": "analytics"},
                       {"environment": "production", "user_role": "sre"})
        print(d.decision_id, flush=True)
        i += 1
""")


def test_sigkill_loses_no_returned_decision(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(SEED), str(tmp_path / "home")],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    returned = []
    deadline = time.monotonic() + 60
    while len(returned) < 300 and time.monotonic() < deadline:
        returned.append(child.stdout.readline().strip())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    returned += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    child.stdout.close()
    assert len(returned) >= 300
    with SQLiteRecordStore(store_path(tmp_path / "home")) as store:
        missing = [d for d in returned if store.get(d) is None]
        assert missing == []
        assert store.verify().ok
        # The chain goes on after the crash.
    with Veto([SEED], home=tmp_path / "home", reload_interval=0) as veto:
        veto.guard("execute_sql", {"statement": "SELECT 1", "database": "analytics"}, PROD)
        assert veto.records.verify().ok
        assert veto.records.count() >= len(returned) + 1


def test_an_edited_record_is_caught(tmp_path: Path) -> None:
    with Veto([SEED], home=tmp_path, reload_interval=0) as veto:
        for tool, args, _ in CALLS * 3:
            veto.guard(tool, args, PROD)
        denied = veto.records.query(decision="deny", limit=1)[0]
        assert veto.records.verify().ok
    with sqlite3.connect(store_path(tmp_path)) as db:
        (doc,) = db.execute("SELECT json FROM records WHERE decision_id = ?",
                            (denied.decision_id,)).fetchone()
        db.execute("UPDATE records SET json = ? WHERE decision_id = ?",
                   (doc.replace('"decision":"deny"', '"decision":"allow"'), denied.decision_id))
    with Veto([SEED], home=tmp_path, reload_interval=0) as veto:
        result = veto.records.verify()
        assert not result.ok
        assert result.first_bad_sequence == denied.sequence
