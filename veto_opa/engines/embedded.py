"""The embedded engine: OPA's own evaluator in-process, no server needed.

    from veto_opa.engines import EmbeddedEngine
    from veto_opa.translators.bundle import read_bundle

    engine = EmbeddedEngine(read_bundle("build/veto.tar.gz"))
    answer = engine.decide({"tool": "execute_sql", "args": {...}, "context": {...},
                            "model": None, "call_id": None})
    answer.decision["decision"]          # "allow" | "deny" | "require_approval"

One ``opa_bindings.OpaEngine`` evaluates one query at a time (it holds a lock around the Go
call), but the Go call runs without the GIL, so the engine keeps a *pool* of OPA engines, each
loaded with the bundle and warmed — one evaluation at construction caches the prepared query,
which otherwise costs tens of milliseconds on the first call. A call takes an idle OPA engine
from a ``queue.SimpleQueue`` and puts it back (about 0.2 µs together; a list used as a stack
is 0.1 µs but needs a slower wait path when empty), so calls from several threads evaluate in
parallel, up to the pool size.

:meth:`EmbeddedEngine.reload` builds and warms a new pool, swaps it in with one assignment,
then closes the old OPA engines as the calls still running on them hand them back.

**Go's garbage collector.** Every evaluation allocates in OPA's Go heap, and Go collects
whenever the heap has doubled since the last collection (``GOGC=100``). With a few engines
loaded the live heap is small, so it collects every few hundred evaluations, and the
evaluations that run during a collection help mark and take 1–5 ms instead of 0.3 ms: that
was most of the slowest percent of ``guard()`` calls. Go reads ``GOGC`` only from the
environment the process was started with, so it cannot be tuned from here;
:func:`reserve_go_heap` instead keeps a block of memory that holds no pointers alive in the Go
heap (a "ballast"). It is never scanned, but it counts towards the heap size, so collections
come that much less often. Measured on this project's 2-vCPU machine with 16 MiB, raw
evaluations' p99 fell from about 1.4 ms to 0.4–0.5 ms and their CPU time by a fifth, for
about 45 MB more resident memory (``VETO_GO_HEAP_RESERVE=0 .venv/bin/python
benchmarks/bench_guard.py`` gives the numbers without it). ``Veto`` reserves
``VETO_GO_HEAP_RESERVE`` MiB (16 by default, ``0`` for none) once per process, unless the
process was started with ``GOGC`` or ``GOMEMLIMIT`` set, which tune the collector directly.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from veto_opa.engines.base import EngineAnswer, check_decision
from veto_opa.errors import EngineEvaluationError, EngineUnavailable, PolicyNotLoaded
from veto_opa.translators.bundle import load_into_engine

if TYPE_CHECKING:
    from collections.abc import Mapping

    from veto_opa.translators.bundle import Bundle

log = logging.getLogger("veto_opa")

_WARM_INPUT: dict[str, Any] = {"tool": "", "args": {}, "context": {}, "model": None,
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
    """OPA engines loaded with one bundle, and the queue of those currently idle."""

    __slots__ = ("engines", "idle", "revision")

    def __init__(self, engines: list[OpaEngine], revision: str) -> None:
        self.engines = engines
        self.revision = revision
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

    #: In-process: there is no request to carry trace context.

    sends_headers = False

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

    def decide(self, input: dict[str, Any], *,
               headers: Mapping[str, str] | None = None) -> EngineAnswer:
        """Evaluate the decision for one input on an idle OPA engine of the pool.

        Args:
            input: the OPA input document.
            headers: ignored (no HTTP request is made).

        Returns:
            The checked decision; ``opa_decision_id`` is always None.

        Raises:
            PolicyNotLoaded: the decision document is undefined.
            EngineEvaluationError: OPA raised while evaluating (with OPA's message).
            EngineProtocolError: the document is not a decision object.
            EngineUnavailable: the engine has been closed.
        """
        pool = self._pool
        engine = pool.idle.get()
        if engine is _RETIRED:
            pool, engine = self._current(pool)
        try:
            value = engine.eval_document(self.query, input)
        except OpaUndefinedError:
            raise PolicyNotLoaded(self._undefined) from None
        except OpaError as error:
            raise EngineEvaluationError(f"{self._failed}: {error.message}") from None
        except Exception as error:
            raise EngineEvaluationError(
                f"{self._failed}: {type(error).__name__}: {error}") from error
        finally:
            pool.idle.put(engine)
        return EngineAnswer(check_decision(value))

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
        return _Pool(engines, bundle.revision)

    def _loaded_engine(self, bundle: Bundle) -> OpaEngine:
        engine = OpaEngine()
        try:
            load_into_engine(bundle, engine)
            try:
                engine.eval_document(self.query, _WARM_INPUT)   # prepares and caches the query
            except OpaError:
                pass   # undefined or failing: decide() reports it, with the real input
        except BaseException:
            engine.close()
            raise
        return engine
