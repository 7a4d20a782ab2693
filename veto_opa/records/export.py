"""Export files of decision records, and their offline verification.

JSONL is the audit format: one entry per line in sequence order, each line exactly the stored
canonical JSON document (``"kind": "decision"`` or ``"outcome"``), so every line's
``record_hash`` can be recomputed by anyone with :func:`verify_export` — or twenty lines of
any language. A ``<file>.sha256`` manifest in ``sha256sum`` format is written beside it.

CSV is for reading in a spreadsheet: a fixed header (:data:`CSV_COLUMNS`), nested values as
JSON text, empty cells for null. Text cells that a spreadsheet would run as a formula
(starting with ``= + - @``, tab or carriage return) get a leading ``'``, as OWASP advises
against CSV injection — the tool names and arguments in a record come from a language model.
CSV is therefore not verifiable; JSONL is.

Both are written atomically: to a temporary file in the same directory, fsynced, then renamed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from veto_opa.errors import RecordError
from veto_opa._json import canonical_json
from veto_opa.records.model import ChainChecker, VerifyResult

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

CSV_COLUMNS: tuple[str, ...] = (
    "kind",
    "sequence",
    "timestamp",
    "decision_id",
    "tool",
    "decision",
    "rule",
    "reason",
    "approvers",
    "approval_id",
    "matched",
    "errors",
    "arguments",
    "arguments_sha256",
    "erased",
    "context",
    "facts",
    "model",
    "call_id",
    "policy_name",
    "policy_revision",
    "engine",
    "cause",
    "latency_us",
    "trace_id",
    "span_id",
    "opa_decision_id",
    "status",
    "error",
    "prev_hash",
    "record_hash",
)

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """Where the ``sha256sum``-style manifest of an export lives: ``<path>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _write_atomically(path: Path, write: Callable[[IO[str]], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_jsonl(path: str | os.PathLike[str], lines: Iterable[str]) -> int:
    """Write canonical JSON documents one per line, plus the ``.sha256`` manifest.

    Returns:
        The number of lines written.
    """
    path = Path(path)
    digest = hashlib.sha256()
    count = 0

    def write(handle: IO[str]) -> None:
        nonlocal count
        for text in lines:
            line = text + "\n"
            handle.write(line)
            digest.update(line.encode("utf-8"))
            count += 1

    _write_atomically(path, write)
    manifest = f"{digest.hexdigest()}  {path.name}\n"
    def write_manifest(handle: IO[str]) -> None:
        handle.write(manifest)

    _write_atomically(manifest_path(path), write_manifest)
    return count


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_STARTS) else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return canonical_json(value)


def write_csv(path: str | os.PathLike[str], documents: Iterable[dict[str, Any]]) -> int:
    """Write documents as CSV rows under :data:`CSV_COLUMNS`.

    Returns:
        The number of rows written (the header not counted).
    """
    count = 0

    def write(handle: IO[str]) -> None:
        nonlocal count
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for document in documents:
            writer.writerow([_csv_cell(document.get(column)) for column in CSV_COLUMNS])
            count += 1

    _write_atomically(Path(path), write)
    return count


def verify_export(path: str | os.PathLike[str], *, allow_gaps: bool = False,
                  anchors: Mapping[int, str] | None = None) -> VerifyResult:
    """Check a JSONL export offline: every hash, every link, and the manifest if present.

    Args:
        path: the ``.jsonl`` file written by ``RecordStore.export``.
        allow_gaps: accept missing sequences, as in an export made with filters. Without it
            the file must hold the whole chain from sequence 1.
        anchors: ``{sequence: record_hash}`` kept from earlier verifications: each anchored
            entry in the file must have that hash (see ``ChainChecker``).

    Returns:
        A :class:`VerifyResult` naming the first bad sequence.

    Raises:
        RecordError: the file cannot be read.
    """
    path = Path(path)
    checker = ChainChecker(allow_gaps=allow_gaps, anchors=anchors)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                digest.update(raw)
                if not checker.ok:
                    continue
                try:
                    document = json.loads(raw)
                except ValueError as exc:
                    checker.fail(
                        checker.last_sequence + 1, f"line {number} is not valid JSON: {exc}"
                    )
                    continue
                checker.feed(document)
    except OSError as exc:
        raise RecordError(f"cannot read export {path}: {exc}") from exc
    result = checker.result()
    manifest = manifest_path(path)
    if result.ok and manifest.exists():
        try:
            expected = manifest.read_text(encoding="utf-8").split()[0]
        except (OSError, IndexError):
            expected = ""
        if expected != digest.hexdigest():
            return VerifyResult(
                False,
                result.count,
                None,
                f"file digest sha256:{digest.hexdigest()} does not match {manifest.name}",
                result.head_hash,
            )
    return result
