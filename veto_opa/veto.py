"""``Veto``: decide every tool call before it runs, record it, trace it.

    from veto_opa import Veto

    veto = Veto()                                   # veto/policies.yaml, embedded OPA engine
    decision = veto.guard(tool="execute_sql", arguments={"statement": "DROP TABLE x"},
                          context={"environment": "production"})
    if decision.allowed:
        ...run the tool...

``guard()`` never raises for a bad tool call or a failing engine and never lets an error
through as an allow: engine unreachable, timeout, malformed answer, bundle not loaded,
arguments that are not a JSON object or too large, an exception inside the engine, a record
that cannot be written: each is a ``deny`` whose reason names the cause. This module is the
one place where that happens; engines and stores raise.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from veto_opa import spans
from veto_opa.config import VetoSettings
from veto_opa.decision import Decision
from veto_opa.errors import (
    ApprovalRequired, Denied, EngineError, InvalidToolCall, PolicyError, RecordError,
    VetoError,
)
from veto_opa.facts import NONE as NO_FACTS
from veto_opa.facts import Computed, Facts, span_attributes, spec_from_data
from veto_opa.facts import recorded as recorded_facts
from veto_opa.records.model import canonical_json, loads_json, new_decision_id

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from veto_opa.approvals import SQLiteApprovalStore
    from veto_opa.engines import Engine
    from veto_opa.facts import Spec
    from veto_opa.records import SQLiteRecordStore

log = logging.getLogger("veto_opa")
F = TypeVar("F", bound=Callable[..., Any])


class Veto:
    """Runtime authorization for tool calls.

    Args:
        policies: Veto YAML files for the embedded OPA engine (default ``VETO_POLICIES`` or
            ``veto/policies.yaml``).
        opa_url: an OPA server that already holds the bundle (default ``VETO_OPA_URL``); set,
            it is used instead of the embedded engine.
        bundle: a built bundle (``.tar.gz`` or directory) for the embedded engine.
        engine: any :class:`veto_opa.engines.Engine` (tests, custom transports).
        tracer_provider: where spans go; default the global provider.
        records: a record store to use instead of the SQLite store under ``VETO_HOME``.
        **settings: any setting of :class:`veto_opa.config.VetoSettings` (``home=``,
            ``records=False``, ``spans=False``, ``redact=[...]``, ``opa_timeout=``, ...),
            overriding its ``VETO_*`` variable.

    Raises:
        PolicyError: the policy files have problems (each as ``file:line:col: message``).
        VetoError: the configuration cannot work (unreadable bundle, bad redaction path).
    """

    def __init__(self, policies: Sequence[str | os.PathLike[str]] | None = None, *,
                 opa_url: str | None = None, bundle: str | os.PathLike[str] | None = None,
                 engine: Engine | None = None, tracer_provider: TracerProvider | None = None,
                 records: Any = None, **settings: Any) -> None:
        if policies is not None:
            settings["policies"] = [Path(p) for p in policies]
        if opa_url is not None:
            settings["opa_url"] = opa_url
        if bundle is not None:
            settings["bundle"] = Path(bundle)
        if (policies is not None or bundle is not None) and opa_url is None:
            settings["opa_url"] = None   # explicit local policies win over VETO_OPA_URL
        store = None
        if records is not None and not isinstance(records, bool):
            store = records
        elif isinstance(records, bool):
            settings["records"] = records
        self.settings = VetoSettings(**settings)
        s = self.settings
        self._lock = threading.Lock()
        self._policy_redact: tuple[str, ...] = ()
        self._sources: list[Path] = []
        self._mtimes: dict[Path, float] = {}
        self._fact_spec: Spec = {}
        self.engine = engine or self._make_engine()
        self._redact = self._parse_redact([*self._policy_redact, *s.redact])
        self._tracer = spans.tracer_for(tracer_provider) if s.spans else None
        self._key = b""
        self.records: SQLiteRecordStore | None = store
        self.approvals: SQLiteApprovalStore | None = None
        if s.records or store is not None:
            from veto_opa.approvals import SQLiteApprovalStore
            from veto_opa.records import SQLiteRecordStore, load_or_create_key, store_path

            s.home.mkdir(parents=True, exist_ok=True)
            self._key = load_or_create_key(s.home)
            if self.records is None:
                self.records = SQLiteRecordStore(store_path(s.home), synchronous=s.records_sync)
            self.approvals = SQLiteApprovalStore(s.home / "approvals.sqlite3",
                                                 ttl=s.approval_ttl)
        self._facts = Facts(self._fact_spec, key=self._key or None)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if self._sources and s.reload_interval > 0 and engine is None:
            self._watcher = threading.Thread(target=self._watch, name="veto-reload", daemon=True)
            self._watcher.start()

    # -- set-up ---------------------------------------------------------------------------

    def _make_engine(self) -> Engine:
        s = self.settings
        if s.opa_url:
            from veto_opa.engines import RestEngine

            verify: bool | str = False if s.opa_insecure else (str(s.opa_ca) if s.opa_ca
                                                                else True)
            rest = RestEngine(s.opa_url, timeout=s.opa_timeout, token=s.opa_token,
                              verify=verify, cert=str(s.opa_client_cert)
                              if s.opa_client_cert else None)
            self._fact_spec = _remote_facts(rest)
            return rest
        from veto_opa.engines import EmbeddedEngine
        from veto_opa.engines.embedded import reserve_go_heap

        reserve_go_heap(s.go_heap_reserve)
        return EmbeddedEngine(self._load_bundle(), pool_size=s.pool_size)

    def _load_bundle(self) -> Any:
        from veto_opa.translators import build
        from veto_opa.translators.bundle import read_bundle

        if self.settings.bundle is not None:
            bundle = read_bundle(self.settings.bundle)
        else:
            self._sources = [Path(p) for p in self.settings.policies]
            self._mtimes = self._stat_sources()
            compiled = build(self._sources)
            self._policy_redact = tuple(path for p in compiled.policies for path in p.redact)
            bundle = compiled.bundle()
        try:
            self._fact_spec = spec_from_data(bundle.data_documents())
        except ValueError as e:
            raise VetoError(f"the bundle's facts declarations are not usable: {e}") from None
        return bundle

    @staticmethod
    def _parse_redact(paths: Sequence[str]) -> list[Any]:
        from veto_opa.records import parse_redact_path

        parsed = []
        for path in dict.fromkeys(paths):
            try:
                parsed.append(parse_redact_path(path))
            except ValueError as e:
                raise VetoError(f"bad redaction path {path!r}: {e}") from None
        return parsed

    def _stat_sources(self) -> dict[Path, float]:
        mtimes = {}
        for path in self._sources:
            try:
                mtimes[path] = path.stat().st_mtime_ns
            except OSError:
                mtimes[path] = -1
        return mtimes

    # -- policies -----------------------------------------------------------------------------

    def reload(self) -> None:
        """Recompile the policy files and swap them in; calls in flight finish on the old ones.

        Raises:
            PolicyError: the files have problems; the policies in use stay in use.
        """
        if not self._sources:
            if self.settings.bundle is None:
                raise VetoError("reload() needs policy files; this Veto uses "
                                f"{self.engine.name}")
            with self._lock:
                self.engine.reload(self._load_bundle())  # type: ignore[attr-defined]
                self._facts = Facts(self._fact_spec, key=self._key or None)
            return
        with self._lock:
            bundle = self._load_bundle()
            self._redact = self._parse_redact([*self._policy_redact, *self.settings.redact])
            self.engine.reload(bundle)  # type: ignore[attr-defined]
            self._facts = Facts(self._fact_spec, key=self._key or None)

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.reload_interval):
            if self._stat_sources() == self._mtimes:
                continue
            try:
                self.reload()
                log.info("veto-opa reloaded policies from %s",
                         ", ".join(map(str, self._sources)))
            except PolicyError as e:
                self._mtimes = self._stat_sources()   # wait for the next change
                log.error("veto-opa kept the previous policies; the new ones have problems:"
                          "\n%s", e)
            except Exception:  # noqa: BLE001 - a reload must never stop the watcher
                log.exception("veto-opa could not reload the policies")

    # -- deciding -----------------------------------------------------------------------------

    def guard(self, tool: str, arguments: Any = None, context: Mapping[str, Any] | None = None,
              model: str | None = None, call_id: str | None = None) -> Decision:
        """Decide one tool call before it runs.

        Args:
            tool: the tool (function) name the model chose.
            arguments: its arguments: an object, or the JSON text the model sent.
            context: facts about the call the model does not choose (environment, user, role).
            model: the model that chose the call.
            call_id: the model's tool-call id.

        Returns:
            The :class:`Decision`; ``decision.allowed`` says whether the tool may run. Never
            raises for an unusable call or a failing engine: those are denies naming the cause.
        """
        started = time.perf_counter_ns()
        decision_id = new_decision_id()
        span = (spans.start(self._tracer, str(tool), call_id, model, decision_id)
                if self._tracer is not None else None)
        failure: BaseException | None = None
        cause: str | None = None
        opa_decision_id = None
        args: Any = None
        args_text: str | None = None
        ctx_text: str | None = None
        ctx: Any = context if context is not None else {}
        computed = NO_FACTS
        try:
            args, args_text = self._arguments(arguments)
            if not isinstance(tool, str) or not tool:
                raise InvalidToolCall(f"the tool name must be a non-empty string, found {tool!r}")
            if type(ctx) is not dict and not isinstance(ctx, Mapping):
                raise InvalidToolCall(f"context must be an object, found {type(ctx).__name__}")
            ctx = dict(ctx)
            try:
                ctx_text = canonical_json(ctx)   # the record's text of it
            except (TypeError, ValueError) as e:
                raise InvalidToolCall(f"context is not JSON: {e}") from None
            computed = self._facts.compute(tool, args)
            headers = (spans.trace_headers(span) if span is not None and
                       getattr(self.engine, "sends_headers", True) else None)
            input = {"tool": tool, "args": args, "context": ctx, "model": model,
                     "call_id": call_id}
            if computed.document:
                input["facts"] = computed.document
            if getattr(self.engine, "takes_text", False):
                answer = self.engine.decide(input, headers=headers, text=_input_text(
                    tool, args_text, ctx_text, model, call_id, computed))
            else:
                answer = self.engine.decide(input, headers=headers)
            opa_decision_id = answer.opa_decision_id
            d = _flatten(answer.decision)
        except (EngineError, InvalidToolCall) as e:
            failure, cause = e, e.cause
            d = _fail_closed(cause, str(e))
        except Exception as e:  # noqa: BLE001 - nothing may escape guard() as an allow
            failure, cause = e, "internal_error"
            d = _fail_closed(cause, f"{type(e).__name__}: {e}")
        approval_id = None
        if d["decision"] == "require_approval" and self.approvals is not None:
            d, approval_id, cause = self._approval(d, tool, arguments, ctx, decision_id, cause)
        trace_id, span_id = spans.ids(span)
        latency_us = (time.perf_counter_ns() - started) // 1000
        if self.records is not None:
            try:
                self._record(decision_id, tool, arguments, args, args_text, ctx, ctx_text, model,
                             call_id, d, approval_id, cause, latency_us, trace_id, span_id,
                             opa_decision_id, computed)
            except Exception as e:  # noqa: BLE001 - an unrecorded call must not run
                log.error("veto-opa could not record decision %s: %s", decision_id, e)
                failure, cause = e, "record_error"
                d = _fail_closed(cause, f"the decision record could not be written: {e}")
        if span is not None:
            shown = None
            if self.settings.capture_arguments and isinstance(args, dict):
                shown = self._redacted(args)
            if computed.document:
                span.set_attributes(span_attributes(computed, recorded_facts(
                    computed, self._redact, self._key or b"veto-opa")
                    if self.settings.capture_arguments else None))
            spans.finish(span, d, engine=self.engine.name, approval_id=approval_id, cause=cause,
                         failure=failure, opa_decision_id=opa_decision_id, arguments=shown)
        return Decision._of_guard({
            "decision": d["decision"], "allowed": d["decision"] == "allow",
            "reason": d["reason"], "rule": d.get("rule"), "approvers": d.get("approvers", []),
            "approval_id": approval_id, "decision_id": decision_id,
            "matched": d.get("matched", []), "errors": d.get("errors", []),
            "policy_name": d.get("policy_name"), "policy_revision": d.get("policy_revision"),
            "cause": cause, "trace_id": trace_id, "span_id": span_id})

    async def guard_async(self, tool: str, arguments: Any = None,
                          context: Mapping[str, Any] | None = None, model: str | None = None,
                          call_id: str | None = None) -> Decision:
        """:meth:`guard` for asyncio code: the evaluation runs in a worker thread (the engines
        release the GIL while they evaluate), so the event loop keeps serving."""
        return await asyncio.to_thread(self.guard, tool, arguments, context, model, call_id)

    def record_outcome(self, decision_id: str, status: str, error: str | None = None) -> None:
        """Record what happened after an allow (``executed``, ``failed``, ``skipped``, ...).

        Raises:
            RecordError: no such decision, or the store cannot be written.
        """
        if self.records is None:
            raise RecordError("decision records are turned off (VETO_RECORDS=false)")
        self.records.append_outcome(decision_id, status, error)

    # -- pieces of guard() ---------------------------------------------------------------------

    def _arguments(self, arguments: Any) -> tuple[dict[str, Any], str]:
        """The arguments as an object and its canonical JSON text: the engine's input holds
        it and the record's digest is taken over it.

        Raises:
            InvalidToolCall: not an object, not JSON, or over the size limit.
        """
        limit = self.settings.max_argument_bytes
        if arguments is None or arguments == "":
            return {}, "{}"
        if isinstance(arguments, (bytes, bytearray)):
            try:
                arguments = arguments.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InvalidToolCall(f"arguments are not UTF-8 text: {e}") from None
        if isinstance(arguments, str):
            if len(arguments) > limit:
                raise InvalidToolCall(f"arguments are {len(arguments)} characters of JSON, over "
                                      f"the limit of {limit} bytes")
            try:
                value = loads_json(arguments)
            except ValueError as e:
                raise InvalidToolCall(f"arguments are not valid JSON text: {e}") from None
        elif type(arguments) is dict or isinstance(arguments, Mapping):
            value = dict(arguments)
        else:
            raise InvalidToolCall("arguments must be a JSON object or its text, found "
                                  f"{_json_type(arguments)}")
        if not isinstance(value, dict):
            raise InvalidToolCall(f"arguments must be a JSON object, found {_json_type(value)}")
        try:
            # Keys of mixed types cannot be sorted: no canonical text, so no record, can hold
            # them; NaN and infinities have no JSON at all.
            text = canonical_json(value)
        except (TypeError, ValueError) as e:
            raise InvalidToolCall(f"arguments are not JSON: {e}") from None
        if len(text) > limit // 4:
            size = len(text.encode("utf-8"))    # at most 4 bytes a character
            if size > limit:
                raise InvalidToolCall(f"arguments are {size} bytes of JSON, over the limit of "
                                      f"{limit} bytes")
        return value, text

    def _redacted(self, args: dict[str, Any]) -> dict[str, Any]:
        from veto_opa.records import redact

        return redact(args, self._redact, self._key or b"veto-opa")[0] if self._redact else args

    def _approval(self, d: dict[str, Any], tool: str, arguments: Any, ctx: Any,
                  decision_id: str, cause: str | None) -> tuple[dict[str, Any], str | None,
                                                               str | None]:
        from veto_opa.records import arguments_digest

        subject = _subject(ctx)
        digest = arguments_digest(arguments if arguments not in (None, "") else {})
        try:
            granted = self.approvals.consume(tool=tool, arguments_sha256=digest,  # type: ignore
                                             subject=subject, decision_id=decision_id)
            if granted is not None:
                allowed = {**d, "decision": "allow",
                           "reason": f"approved by {granted.decided_by} (approval "
                                     f"{granted.approval_id}): {d['reason']}"}
                return allowed, granted.approval_id, cause
            pending = self.approvals.request(  # type: ignore[union-attr]
                tool=tool, arguments_sha256=digest, subject=subject,
                approvers=tuple(d.get("approvers", ())), rule=d.get("rule"), reason=d["reason"],
                decision_id=decision_id, policy_revision=d.get("policy_revision"))
            return d, pending.approval_id, cause
        except Exception as e:  # noqa: BLE001 - no approval store, no pending approval
            log.error("veto-opa could not create an approval for %s: %s", decision_id, e)
            return (_fail_closed("approval_error", f"the approval could not be requested: {e}"),
                    None, "approval_error")

    def _record(self, decision_id: str, tool: Any, arguments: Any, args: Any,
                args_text: str | None, ctx: Any, ctx_text: str | None,
                model: Any, call_id: Any, d: dict[str, Any], approval_id: str | None,
                cause: str | None, latency_us: int, trace_id: str | None, span_id: str | None,
                opa_decision_id: str | None, computed: Computed = NO_FACTS) -> None:
        from veto_opa.records import (
            arguments_digest, decision_document, now_timestamp,
            prepare_arguments, redact, sha256_digest,
        )

        texts: dict[str, str] = {}
        if isinstance(args, dict) and (isinstance(arguments, dict) or (
                isinstance(arguments, str) and arguments)):
            # What prepare_arguments() computes, without parsing or serialising again: the
            # digest of an object (or of text holding one) is that of its canonical JSON.
            recorded, erased = (redact(args, self._redact, self._key) if self._redact
                                else (args, []))
            text = args_text if args_text is not None else canonical_json(args)
            fields = {"arguments": recorded, "arguments_sha256": sha256_digest(text),
                      "erased": erased}
            if recorded is args:
                texts["arguments"] = text
        elif args is not None:
            fields = prepare_arguments(arguments if arguments is not None else {},
                                       self._redact, self._key).fields()
        else:
            # Unusable arguments are kept only as the digest of what was sent: they may be
            # huge, or not JSON at all.
            fields = {"arguments": None, "arguments_sha256": arguments_digest(_as_text(arguments)),
                      "erased": []}
        recorded_ctx = (ctx if isinstance(ctx, dict) and cause != "invalid_tool_call" else
                        _lossy_json(ctx))
        if recorded_ctx is ctx and ctx_text is not None:
            texts["context"] = ctx_text
        values = {
            "decision_id": decision_id, "tool": str(tool), **fields,
            "context": recorded_ctx,
            "model": model if isinstance(model, str) else None,
            "call_id": call_id if isinstance(call_id, str) else None,
            "decision": d["decision"], "rule": d.get("rule"), "reason": d["reason"],
            "approvers": d.get("approvers", []), "matched": d.get("matched", []),
            "errors": d.get("errors", []), "approval_id": approval_id,
            "policy_name": d.get("policy_name"), "policy_revision": d.get("policy_revision"),
            "engine": self.engine.name, "cause": cause, "latency_us": latency_us,
            "trace_id": trace_id, "span_id": span_id, "opa_decision_id": opa_decision_id,
            "facts": recorded_facts(computed, self._redact, self._key),
        }
        append_document = getattr(self.records, "append_document", None)
        if append_document is not None:
            # Every field above is built here from checked values: the store takes the
            # document without validating it again (see records.decision_document).
            # The canonical texts of the arguments and context, made when they were checked,
            # are the record's: the store does not serialise them again.
            append_document(decision_document(timestamp=now_timestamp(), **values), texts)
        else:
            self.records.append(values)  # type: ignore[union-attr]

    # -- decorating tools ------------------------------------------------------------------

    def tool(self, fn: F | None = None, *, name: str | None = None,
             context: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
             model: str | None = None) -> Any:
        """Guard a plain Python function: each call is decided first, and runs only if allowed.

        ::

            @veto.tool(context={"environment": "production"})
            def execute_sql(statement: str, database: str) -> str: ...

        The function's bound arguments (defaults applied) are the tool call's arguments; the
        tool name is ``name`` or the function's name; ``context`` is a mapping or a function
        returning one, read at each call. A denied call raises :class:`~veto_opa.Denied`, one
        that needs approval :class:`~veto_opa.ApprovalRequired`; both carry the decision. After
        an allowed call the outcome (``executed`` or ``failed``) is recorded. Coroutine
        functions are guarded with :meth:`guard_async`.
        """
        def decorate(func: F) -> F:
            tool_name = name or func.__name__
            signature = inspect.signature(func)

            def call_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                out: dict[str, Any] = {}
                for key, value in bound.arguments.items():
                    kind = signature.parameters[key].kind
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        out.update(value)
                    elif kind is inspect.Parameter.VAR_POSITIONAL:
                        out[key] = list(value)
                    else:
                        out[key] = value
                return out

            def current_context() -> Mapping[str, Any] | None:
                return context() if callable(context) else context

            def check(decision: Decision) -> None:
                if decision.decision == "deny":
                    raise Denied(decision)
                if decision.decision == "require_approval":
                    raise ApprovalRequired(decision)

            if inspect.iscoroutinefunction(func):
                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    decision = await self.guard_async(tool_name, call_arguments(args, kwargs),
                                                      current_context(), model)
                    check(decision)
                    return await self._run(decision, func, args, kwargs)

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                decision = self.guard(tool_name, call_arguments(args, kwargs),
                                      current_context(), model)
                check(decision)
                try:
                    result = func(*args, **kwargs)
                except BaseException as e:
                    self._outcome(decision, "failed", f"{type(e).__name__}: {e}")
                    raise
                self._outcome(decision, "executed")
                return result

            return wrapper  # type: ignore[return-value]

        return decorate(fn) if fn is not None else decorate

    async def _run(self, decision: Decision, func: Any, args: Any, kwargs: Any) -> Any:
        try:
            result = await func(*args, **kwargs)
        except BaseException as e:
            self._outcome(decision, "failed", f"{type(e).__name__}: {e}")
            raise
        self._outcome(decision, "executed")
        return result

    def _outcome(self, decision: Decision, status: str, error: str | None = None) -> None:
        if self.records is None:
            return
        try:
            self.records.append_outcome(decision.decision_id, status, error)
        except RecordError as e:
            log.error("veto-opa could not record the outcome of %s: %s", decision.decision_id, e)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop watching the policy files and release the engine and the stores."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self.engine.close()
        for store in (self.records, self.approvals):
            if store is not None:
                store.close()

    def __enter__(self) -> Veto:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _flatten(decision: dict[str, Any]) -> dict[str, Any]:
    policy = decision.get("policy") or {}
    return {**decision, "policy_name": policy.get("name"),
            "policy_revision": policy.get("revision")}


def _input_text(tool: str, args_text: str | None, ctx_text: str | None, model: Any,
                call_id: Any, computed: Computed = NO_FACTS) -> str | None:
    """The engine's input as JSON text, made from the canonical texts of the arguments and the
    context that guard() made when it checked them; None when it cannot be made that way (the
    engine then serialises the input itself, and reports what is wrong with it)."""
    if args_text is None or ctx_text is None:
        return None
    try:
        facts = f',"facts":{computed.text}' if computed.document else ""
        return (f'{{"tool":{json.dumps(tool)},"args":{args_text},"context":{ctx_text},'
                f'"model":{json.dumps(model)},"call_id":{json.dumps(call_id)}{facts}}}')
    except (TypeError, ValueError):
        return None


def _remote_facts(engine: Any) -> Spec:
    """The facts declarations of the bundle an OPA server holds (``data.veto.facts``); none
    when they cannot be read, logged: rules that read facts then fail closed."""
    try:
        return spec_from_data([("veto.facts", engine.document("veto/facts"))])
    except (EngineError, ValueError) as e:
        log.error("veto-opa could not read the facts declarations from OPA (rules reading "
                  "facts will fail closed): %s", e)
        return {}


def _fail_closed(cause: str, message: str) -> dict[str, Any]:
    return {"decision": "deny", "rule": None, "reason": f"{cause}: {message}", "approvers": [],
            "matched": [], "errors": [], "policy_name": None, "policy_revision": None}


def _as_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    if isinstance(arguments, (bytes, bytearray)):
        return arguments.decode("utf-8", "replace")
    try:
        return json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(arguments)


def _lossy_json(value: Any) -> dict[str, Any]:
    """A JSON object as close to ``value`` as can be recorded: a context that is not JSON is
    kept with non-JSON values as their ``repr`` (``NaN`` as text), anything else as ``{}``."""
    if not isinstance(value, Mapping):
        return {}
    try:
        text = json.dumps(dict(value), ensure_ascii=False, default=repr, skipkeys=True)
        return json.loads(text, parse_constant=str)
    except (TypeError, ValueError, RecursionError):
        return {}


def _subject(ctx: Any) -> str | None:
    if isinstance(ctx, Mapping):
        for key in ("subject", "user", "user_id"):
            value = ctx.get(key)
            if isinstance(value, str):
                return value
    return None


def _json_type(value: Any) -> str:
    from veto_opa.translators.types import type_name

    try:
        return type_name(value)
    except TypeError:
        return type(value).__name__
