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

**What a call costs besides OPA's evaluation.** For the decision, the engine evaluates
``data.veto.outcome`` (``rego/veto/decision.rego``): the decision when a rule is true or in error
for the call, null when none is. Most calls are of the second kind, and their decision, the
same for every input, is ``data.veto.no_rule_decision``, read once when the pool is built; a
null costs OPA less to return, and Python less to parse, than the whole object. A bundle built
before ``outcome`` existed (or another ``query``) is evaluated as is. Each evaluation calls the
bindings' C function directly (:func:`_evaluate`) with the input's JSON text, which
``Veto.guard()`` already holds in canonical form: ``OpaEngine.eval_document`` serialises the
input again, parses OPA's answer through ``json``'s encoding detection and takes a lock that the
pool makes redundant. Together that was about a fifth of a raw evaluation of the seed
policy's decision here (``benchmarks/bench_guard.py`` prints both evaluations). The direct call
relies on two private names of ``opa_bindings`` (pinned in ``pyproject.toml``); without them
the engine uses ``eval_document``.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import opa_bindings.engine
from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from veto_opa.engines.base import EngineAnswer, check_decision, input_text
from veto_opa.errors import (
    EngineError, EngineEvaluationError, EngineUnavailable, PolicyNotLoaded,
)
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


def _native_library() -> Any:
    """The bindings' ctypes library, when this version of ``opa_bindings`` exposes it the way
    :func:`_evaluate` expects (0.4.4 does); None otherwise."""
    get_lib = getattr(opa_bindings.engine, "_get_lib", None)
    try:
        lib = get_lib() if get_lib is not None else None
    except Exception:  # noqa: BLE001 - the public API still works
        return None
    if lib is None or not all(hasattr(lib, name)
                              for name in ("OpaEvalDocument", "OpaFreeString")):
        return None
    return lib


_LIB = _native_library()
_string_at = ctypes.string_at
_loads = json.loads


def _evaluate(engine: OpaEngine, document: str, path: bytes, text: str) -> Any:
    """``engine.eval_document(document, input)`` for the input's JSON ``text``.

    The same C call and the same answer as the public method (its envelope is read the same
    way), without serialising the input again or taking the engine's lock: the pool hands an
    engine to one call at a time, and no Python builtins are registered on it.

    Raises:
        OpaUndefinedError: the document is undefined.
        OpaError: OPA's error, or a text that is not UTF-8.
    """
    handle = getattr(engine, "_handle", None)
    if _LIB is None or handle is None:
        return engine.eval_document(document, _loads(text))
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise OpaError("invalid_argument", f"value is not valid UTF-8: {e}") from None
    pointer = _LIB.OpaEvalDocument(handle, path, data, 0, 0)
    if not pointer:
        raise OpaError("internal", "native call returned NULL")
    try:
        raw = _string_at(pointer)
    finally:
        _LIB.OpaFreeString(pointer)
    envelope = _loads(raw.decode("utf-8"))
    error = envelope.get("error")
    if error is not None:
        raise OpaError(error.get("code", "unknown"), error.get("message", ""))
    for printed in envelope.get("prints") or ():   # Rego print(): as the bindings show them
        print(f"{printed['location']}: {printed['message']}", file=sys.stderr)
    results = envelope.get("result")
    if not results or not results[0].get("expressions"):
        raise OpaUndefinedError(f"data.{document}")
    return results[0]["expressions"][0]["value"]


class _Pool:
    """OPA engines loaded with one bundle, and the queue of those currently idle.

    ``document`` is what each call evaluates: ``veto.outcome`` when the bundle defines it,
    with ``no_rule`` the JSON text of ``veto.no_rule_decision``; otherwise the engine's query,
    and ``no_rule`` is None.
    """

    __slots__ = ("document", "engines", "idle", "no_rule", "path", "revision")

    def __init__(self, engines: list[OpaEngine], revision: str, document: str,
                 no_rule: str | None) -> None:
        self.engines = engines
        self.revision = revision
        self.document = document
        self.path = document.encode("utf-8")
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

    #: In-process: there is no request to carry trace context.
    sends_headers = False

    #: ``decide`` takes the input's JSON text (``text=``) instead of serialising the input.
    takes_text = True

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

    def decide(self, input: dict[str, Any], *, headers: Mapping[str, str] | None = None,
               text: str | None = None) -> EngineAnswer:
        """Evaluate the decision for one input on an idle OPA engine of the pool.

        Args:
            input: the OPA input document.
            headers: ignored (no HTTP request is made).
            text: the JSON text of ``input``, when the caller has it (keys in any order);
                then ``input`` itself is not read.

        Returns:
            The checked decision; ``opa_decision_id`` is always None.

        Raises:
            PolicyNotLoaded: the decision document is undefined.
            EngineEvaluationError: OPA raised while evaluating (with OPA's message).
            EngineProtocolError: the document is not a decision object.
            EngineUnavailable: the engine has been closed.
        """
        if text is None:
            try:
                text = input_text(input)
            except Exception as error:
                raise EngineEvaluationError(
                    f"{self._failed}: {type(error).__name__}: {error}") from error
        pool = self._pool
        engine = pool.idle.get()
        if engine is _RETIRED:
            pool, engine = self._current(pool)
        try:
            value = _evaluate(engine, pool.document, pool.path, text)
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
            value = _loads(pool.no_rule)    # a fresh object: the caller may keep and change it
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
        document, no_rule = self._document(engines[0])
        return _Pool(engines, bundle.revision, document, no_rule)

    def _document(self, engine: OpaEngine) -> tuple[str, str | None]:
        """``("veto.outcome", <no-rule decision as JSON>)`` when the bundle defines both and
        the no-rule decision is well formed; ``(query, None)`` otherwise (decide() then
        reports what is wrong, with the real input)."""
        if self.query != "veto.decision":
            return self.query, None
        try:
            engine.eval_document("veto.outcome", _WARM_INPUT)
            no_rule = check_decision(engine.eval_document("veto.no_rule_decision"))
        except (OpaError, EngineError):
            return self.query, None
        return "veto.outcome", json.dumps(no_rule, ensure_ascii=False)

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
