"""Processes: a writer killed with SIGKILL loses nothing it reported, and two writer processes
extend one chain."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from veto_opa.records import SQLiteRecordStore

from .conftest import decision_fields

# Appends forever (or COUNT times) from THREADS threads; prints each decision_id once
# append() has returned, i.e. once the record is committed.
WRITER = textwrap.dedent(
    """
    import hashlib, os, sys, threading, time
    from veto_opa.records import SQLiteRecordStore

    path, threads, count, tool, go = sys.argv[1:]
    threads, count = int(threads), int(count)
    store = SQLiteRecordStore(path)
    fields = {
        "tool": tool, "arguments": {"n": 1},
        "arguments_sha256": "sha256:" + hashlib.sha256(b'{"n":1}').hexdigest(),
        "decision": "allow", "reason": "no rule applies", "engine": "embedded", "latency_us": 1,
    }
    out = threading.Lock()
    print("ready", flush=True)
    while go != "-" and not os.path.exists(go):
        time.sleep(0.001)

    def work():
        n = 0
        while count == 0 or n < count:
            record = store.append(fields)
            with out:
                sys.stdout.write(record.decision_id + "\\n")
                sys.stdout.flush()
            n += 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    store.close()
    """
)


def start_writer(
    path: Path, *, threads: int = 1, count: int = 0, tool: str = "t", go: str = "-"
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(threads), str(count), tool, go],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n", process.stderr.read() if process.stderr else ""
    return process


def complete_ids(lines: list[str]) -> list[str]:
    # A line cut short by the kill was never fully reported; ignore it.
    return [line[:-1] for line in lines if line.endswith("\n") and len(line) == 37]


@pytest.mark.parametrize("threads", [1, 4])
def test_sigkill_loses_no_reported_record(tmp_path: Path, threads: int) -> None:
    path = tmp_path / "records.sqlite3"
    SQLiteRecordStore(path).close()  # created up front, as Veto() does at start-up
    writer = start_writer(path, threads=threads)
    assert writer.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while len(seen) < 300 and time.monotonic() < deadline:
        seen.append(writer.stdout.readline())
    os.kill(writer.pid, signal.SIGKILL)
    rest, _ = writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    reported = complete_ids(seen + rest.splitlines(keepends=True))
    assert len(reported) >= 300

    with SQLiteRecordStore(path) as store:
        missing = [decision_id for decision_id in reported if store.get(decision_id) is None]
        assert missing == []
        result = store.verify()
        assert result.ok, result
        assert result.count >= len(reported)
        record = store.append(decision_fields())
        assert record.sequence == result.count + 1
        assert record.prev_hash == result.head_hash
        assert store.verify().ok


def test_two_processes_extend_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    SQLiteRecordStore(path).close()
    go = tmp_path / "go"
    writers = {
        # Enough records that the two processes are still writing when the other starts.
        tool: start_writer(path, threads=2, count=600, tool=tool, go=str(go))
        for tool in ("proc_a", "proc_b")
    }
    go.touch()
    reported = {}
    for tool, writer in writers.items():
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        reported[tool] = complete_ids(out.splitlines(keepends=True))

    with SQLiteRecordStore(path) as store:
        result = store.verify()
        assert result.ok, result
        assert result.count == 2400
        for tool, ids in reported.items():
            assert len(ids) == 1200
            stored = {record.decision_id for record in store.query(tool=tool, limit=None)}
            assert stored == set(ids)
        # the processes really interleaved: their records alternate somewhere in the chain
        tools = [record.tool for record in store.query(limit=None)]
        switches = sum(1 for a, b in itertools.pairwise(tools) if a != b)
        assert switches > 1
