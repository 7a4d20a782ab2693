"""The embedded engine: OPA's own evaluator in-process, no server needed.

    from veto_opa.engines import EmbeddedEngine
    from veto_opa.translators.bundle import read_bundle

    engine = EmbeddedEngine(read_bundle("build/veto.tar.gz"))
    answer = engine.decide({"tool": "execute_sql", "args": {...}, "context": {...},
                            "model": None, "call_id": None})
    answer.verdict.decision          # "allow" | "deny" | "require_approval"

One ``opa_bindings.OpaEngine`` evaluates one query at a time, but its Go call runs without the
GIL, so the engine keeps a *pool* of OPA engines loaded with the bundle and warmed (the first
evaluation prepares and caches the query); calls from several threads take an idle one from a
queue and evaluate in parallel, up to the pool size. :meth:`EmbeddedEngine.reload` builds a new
pool, swaps it in with one assignment, and closes the old engines as the calls still running on
them hand them back.

For the decision the engine evaluates ``data.veto.outcome`` (``rego/veto/decision.rego``): the
decision when a rule is true or in error for the call, null when none is — most calls. The
decision then is ``data.veto.no_rule_decision``, the same for every input, read once per pool.
A bundle without ``outcome`` (or another ``query``) is evaluated as it is.

:func:`reserve_go_heap` keeps a block of pointer-free memory alive in OPA's Go heap, so that
Go's garbage collector, which runs whenever the heap has doubled, runs less often; evaluations
that overlap a collection are the slowest ones. ``VETO_GO_HEAP_RESERVE`` sets its size.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from veto_opa.decision import Verdict
from veto_opa.engines.base import EngineAnswer
from veto_opa.errors import (
    EngineError, EngineEvaluationError, EngineUnavailable, PolicyNotLoaded, VetoError,
)
from veto_opa.translators.bundle import load_into_engine

if TYPE_CHECKING:
    from collections.abc import Mapping

    from veto_opa.translators.bundle import Bundle

log = logging.getLogger("veto_opa")

_WARM_INPUT: dict[str, object] = {"tool": "", "args": {}, "context": {}, "model": None,
                               "call_id": None}
_RETIRED = object()   # put into a pool's queue once all its engines are closed

_reserve_lock = threading.Lock()
_reserve_mib = 0                          # requested once per process, see reserve_go_heap
_reserve_done = threading.Event()         # set once the reserve is in place (or failed)
_reserve_holder: list[OpaEngine] = []     # the OPA engine whose data is the reserve


def reserve_go_heap(mib: int, *, wait: bool = False) -> int:
    """Keep ``mib`` MiB of pointer-free memory alive in OPA's Go heap, once per process.

    Fewer Go garbage collections, so fewer slow evaluations (see the module docstring). The
    memory is a string in the data of an OPA engine that is never evaluated; it is built on a
    background thread (about 0.3 s of Go work for 16 MiB, without the GIL) unless ``wait``.
    The first call with ``mib > 0`` decides the size for the life of the process; later
    calls only wait for it. Does nothing when the process was started with ``GOGC`` or
    ``GOMEMLIMIT`` in its environment: the collector is tuned there.

    Returns:
        The MiB reserved or being reserved in this process (0 for none).
    """
    global _reserve_mib
    with _reserve_lock:
        if (_reserve_mib == 0 and mib > 0 and "GOGC" not in os.environ
                and "GOMEMLIMIT" not in os.environ):
            _reserve_mib = mib
            threading.Thread(target=_build_reserve, args=(mib,), name="veto-go-heap-reserve",
                             daemon=True).start()
        reserved = _reserve_mib
    if wait and reserved:
        _reserve_done.wait()
    return reserved


def _build_reserve(mib: int) -> None:
    try:
        holder = OpaEngine()
        holder.add_data({"reserve": "x" * (mib << 20)})
        _reserve_holder.append(holder)
    except Exception:  # noqa: BLE001 - an optimisation: evaluations work the same without it
        log.warning("veto-opa could not reserve %d MiB of Go heap", mib, exc_info=True)
    finally:
        _reserve_done.set()


class _Pool:
    """OPA engines loaded with one bundle, and the queue of those currently idle.

    ``document`` is what each call evaluates: ``veto.outcome`` when the bundle defines it,
    with ``no_rule`` the verdict ``veto.no_rule_decision``; otherwise the engine's query,
    and ``no_rule`` is None.
    """

    __slots__ = ("document", "engines", "idle", "no_rule", "revision")

    def __init__(self, engines: list[OpaEngine], revision: str, document: str,
                 no_rule: Verdict | None) -> None:
        self.engines = engines
        self.revision = revision
        self.document = document
        self.no_rule = no_rule
        self.idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for engine in engines:
            self.idle.put(engine)

    def retire(self) -> None:
        """Close every engine as it comes back idle, then mark the pool retired.

        Waits for the calls running on this pool to finish (each returns its engine).
        """
        for _ in range(len(self.engines)):
            self.idle.get().close()
        self.idle.put(_RETIRED)


class EmbeddedEngine:
    """Decides in-process with a pool of embedded OPA engines.

    Args:
        bundle: the compiled bundle (``Compiled.bundle()`` or ``read_bundle(path)``).
        pool_size: OPA engines evaluating in parallel; default ``os.cpu_count()``.
        query: the document to evaluate, as a dotted path under ``data``.

    Raises:
        BundleError: an OPA engine rejected the bundle (with OPA's message).
        ValueError: ``pool_size`` is below 1.
    """

    name = "embedded"

    def __init__(self, bundle: Bundle, *, pool_size: int | None = None,
                 query: str = "veto.decision") -> None:
        size = pool_size if pool_size is not None else (os.cpu_count() or 1)
        if size < 1:
            raise ValueError(f"pool_size must be at least 1, found {size}")
        self.pool_size = size
        self.query = query
        self._undefined = f"data.{query} is undefined: is the veto bundle loaded?"
        self._failed = f"OPA could not evaluate data.{query}"
        self._lock = threading.Lock()      # serializes reload() and close()
        self._closed = False
        self._pool = self._build(bundle)

    @property
    def revision(self) -> str:
        """The manifest revision of the bundle currently loaded (``""`` when it has none)."""
        return self._pool.revision

    @property
    def document(self) -> str:
        """What each call evaluates, as a dotted path under ``data``: ``veto.outcome`` when
        the bundle defines it (see the module docstring), otherwise ``query``."""
        return self._pool.document

    def decide(self, input: Mapping[str, Any], *,
               headers: Mapping[str, str] | None = None) -> EngineAnswer:
        """Evaluate the decision for one input on an idle OPA engine of the pool.

        Args:
            input: the OPA input document.
            headers: ignored (no HTTP request is made).

        Returns:
            The checked verdict; ``opa_decision_id`` is always None.

        Raises:
            PolicyNotLoaded: the decision document is undefined.
            EngineEvaluationError: OPA raised while evaluating (with OPA's message), or the
                input is not JSON.
            EngineProtocolError: the document is not a decision object.
            EngineUnavailable: the engine has been closed.
        """
        pool = self._pool
        engine = pool.idle.get()
        if engine is _RETIRED:
            pool, engine = self._current(pool)
        try:
            value = engine.eval_document(pool.document, input)
        except OpaUndefinedError:
            raise PolicyNotLoaded(self._undefined) from None
        except OpaError as error:
            raise EngineEvaluationError(f"{self._failed}: {error.message}") from None
        except Exception as error:
            raise EngineEvaluationError(
                f"{self._failed}: {type(error).__name__}: {error}") from error
        finally:
            pool.idle.put(engine)
        if value is None and pool.no_rule is not None:
            return EngineAnswer(pool.no_rule)
        return EngineAnswer(Verdict.from_document(value))

    def reload(self, bundle: Bundle) -> None:
        """Load another bundle: build and warm a new pool, then swap it in atomically.

        Calls already running finish on the old engines, which are closed as they come back;
        calls that start after the swap see the new bundle. Returns once the old engines are
        closed.

        Raises:
            BundleError: the new bundle was rejected; the old one stays in use.
            EngineUnavailable: the engine has been closed.
        """
        with self._lock:
            if self._closed:
                raise EngineUnavailable("the embedded engine is closed")
            new = self._build(bundle)
            old, self._pool = self._pool, new
            old.retire()

    def close(self) -> None:
        """Close every OPA engine once the calls running on them finish; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pool.retire()

    def __enter__(self) -> EmbeddedEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _current(self, retired: _Pool) -> tuple[_Pool, OpaEngine]:
        """The pool that replaced a retired one, and an idle engine of it."""
        retired.idle.put(_RETIRED)   # for the other callers still holding the retired pool
        while True:
            if self._closed:
                raise EngineUnavailable("the embedded engine is closed")
            pool = self._pool
            engine = pool.idle.get()
            if engine is not _RETIRED:
                return pool, engine
            pool.idle.put(_RETIRED)

    def _build(self, bundle: Bundle) -> _Pool:
        # Compiling the bundle is Go work without the GIL: build the engines in parallel.
        with ThreadPoolExecutor(max_workers=min(self.pool_size, os.cpu_count() or 1)) as ex:
            futures = [ex.submit(self._loaded_engine, bundle) for _ in range(self.pool_size)]
        engines, errors = [], []
        for future in futures:
            try:
                engines.append(future.result())
            except BaseException as error:  # noqa: BLE001 - re-raised below
                errors.append(error)
        if errors:
            for engine in engines:
                engine.close()
            raise errors[0]
        document, no_rule = self._document(engines[0])
        return _Pool(engines, bundle.revision, document, no_rule)

    def _document(self, engine: OpaEngine) -> tuple[str, Verdict | None]:
        """``("veto.outcome", <no-rule decision as JSON>)`` when the bundle defines both and
        the no-rule decision is well formed; ``(query, None)`` otherwise (decide() then
        reports what is wrong, with the real input)."""
        if self.query != "veto.decision":
            return self.query, None
        try:
            engine.eval_document("veto.outcome", _WARM_INPUT)
            no_rule = Verdict.from_document(engine.eval_document("veto.no_rule_decision"))
        except (OpaError, EngineError):
            return self.query, None
        return "veto.outcome", no_rule

    def _loaded_engine(self, bundle: Bundle) -> OpaEngine:
        engine = OpaEngine()
        try:
            load_into_engine(bundle, engine)
            documents = [self.query]
            if self.query == "veto.decision":
                documents.append("veto.outcome")
            for document in documents:
                try:
                    # Prepares and caches the query, which otherwise costs tens of
                    # milliseconds on the first call.
                    engine.eval_document(document, _WARM_INPUT)
                except OpaError:
                    pass   # undefined or failing: decide() reports it, with the real input
        except BaseException:
            engine.close()
            raise
        return engine
