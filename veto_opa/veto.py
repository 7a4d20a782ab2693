"""``Veto``: decide every tool call before it runs, record it, trace it.

    from veto_opa import Veto

    veto = Veto()                                   # veto/policies.yaml, embedded OPA engine
    decision = veto.guard(tool="execute_sql", arguments={"statement": "DROP TABLE x"},
                          context={"environment": "production"})
    if decision.allowed:
        ...run the tool...

``guard()`` never raises for a bad tool call or a failing engine and never lets an error
through as an allow: engine unreachable, timeout, malformed answer, bundle not loaded,
unusable arguments, an exception inside the engine, a record that cannot be written: each is
a ``deny`` whose reason names the cause. This module is the one place where that happens;
engines and stores raise.
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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from veto_opa import decision_logs, spans
from veto_opa._json import canonical_json, sha256_digest
from veto_opa._paths import APPROVALS_FILE, RECORDS_FILE, ensure_home
from veto_opa.call import ToolCall, check_call
from veto_opa.config import VetoSettings, load_settings
from veto_opa.decision import Decision, Verdict
from veto_opa.errors import (
    ApprovalRequired, BundleError, ConfigurationError, Denied, EngineError, InvalidToolCall,
    PolicyError, RecordError, VetoError,
)
from veto_opa.facts import NONE as NO_FACTS
from veto_opa.facts import Computed, Facts, span_attributes, spec_from_data
from veto_opa.facts import recorded as recorded_facts
from veto_opa.records.model import (
    GuardRecord, RecordedCall, digest_text, new_decision_id, now_timestamp,
)
from veto_opa.records.redaction import Redactor
from veto_opa.translators import REDACTION_DATA

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from veto_opa.decision_logs import DecisionLogs

    from veto_opa.approvals.service import ApprovalService, ApprovalView
    from veto_opa.bundles import BundleService
    from veto_opa.engines import Engine
    from veto_opa.engines.rest import RestEngine
    from veto_opa.facts import Spec
    from veto_opa.records.store import RecordStore
    from veto_opa.translators.bundle import Bundle

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
        verification_key: the public key (or HS* secret) file bundles must be signed with
            (``VETO_BUNDLE_KEY``); needs ``key_id``. Unsigned or tampered bundles are refused.
        key_id: the verification key's id (``VETO_BUNDLE_KEY_ID``), as OPA's signing.keyid.
        bundle_url: a bundle service to poll (``VETO_BUNDLE_URL``), see veto_opa.bundles.
        engine: any :class:`veto_opa.engines.Engine` (tests, custom transports).
        tracer_provider: where spans go; default the global provider.
        records: a :class:`~veto_opa.records.store.RecordStore` to use instead of the SQLite
            store under ``VETO_HOME``, or False for no records.
        **settings: any setting of :class:`veto_opa.config.VetoSettings` (``home=``,
            ``spans=False``, ``redact=[...]``, ``opa_timeout=``, ...), overriding its
            ``VETO_*`` variable.

    Raises:
        PolicyError: the policy files have problems (each as ``file:line:col: message``).
        VetoError: the configuration cannot work (an invalid setting, naming its variable;
            an unreadable bundle; a home that cannot be created; a bad redaction path).
    """

    def __init__(self, policies: Sequence[str | os.PathLike[str]] | None = None, *,
                 opa_url: str | None = None, bundle: str | os.PathLike[str] | None = None,
                 engine: Engine | None = None, tracer_provider: TracerProvider | None = None,
                 records: RecordStore | bool | None = None,
                 verification_key: str | os.PathLike[str] | None = None,
                 key_id: str | None = None, bundle_url: str | None = None,
                 **settings: Any) -> None:
        if policies is not None:
            settings["policies"] = [Path(p) for p in policies]
        if opa_url is not None:
            settings["opa_url"] = opa_url
        if bundle is not None:
            settings["bundle"] = Path(bundle)
        if verification_key is not None:
            settings["bundle_key"] = Path(verification_key)
        if key_id is not None:
            settings["bundle_key_id"] = key_id
        if bundle_url is not None:
            settings["bundle_url"] = bundle_url
        if (policies is not None or bundle is not None) and bundle_url is None:
            settings["bundle_url"] = None
        if (policies is not None or bundle is not None or bundle_url is not None) \
                and opa_url is None:
            settings["opa_url"] = None   # explicit local policies win over VETO_OPA_URL
        store: RecordStore | None = None
        if isinstance(records, bool):
            settings["records"] = records
        elif records is not None:
            store = records
        self.settings: VetoSettings = load_settings(**settings)
        s = self.settings
        self._lock = threading.Lock()
        self._policy_redact: tuple[str, ...] = ()
        self._sources: list[Path] = []
        self._mtimes: dict[Path, int] = {}
        self._fact_spec: Spec = {}
        self.bundle_service: BundleService | None = None
        self.engine: Engine = engine or self._make_engine()
        self._tracer = spans.tracer_for(tracer_provider) if s.spans else None
        self.records: RecordStore | None = store
        self._approval_service: ApprovalService | None = None
        self.approvals: ApprovalView | None = None   # read and wait; approving needs Approver
        key = os.urandom(32)   # for redacted span arguments when nothing is recorded
        if s.records or store is not None:
            from veto_opa.records.store import SQLiteRecordStore, load_or_create_key

            try:
                ensure_home(s.home)
            except OSError as e:
                raise ConfigurationError(f"cannot create the veto home {s.home} (VETO_HOME): "
                                         f"{e.strerror or e}") from None
            key = load_or_create_key(s.home)
            if self.records is None:
                self.records = SQLiteRecordStore(s.home / RECORDS_FILE,
                                                 synchronous=s.records_sync)
            if isinstance(self.records, SQLiteRecordStore):
                from veto_opa.approvals.service import open_service

                self._approval_service = open_service(s, self.records, key)
                self.approvals = self._approval_service.view
        self._key = key
        self._redactor = self._make_redactor(self._policy_redact)
        self._facts = Facts(self._fact_spec, key=key)
        self.decision_logs: DecisionLogs | None = decision_logs.from_settings(s)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if self.bundle_service is not None:
            self.bundle_service.start()
        if self._sources and s.reload_interval > 0 and engine is None:
            self._watcher = threading.Thread(target=self._watch, name="veto-reload", daemon=True)
            self._watcher.start()

    # -- set-up ---------------------------------------------------------------------------

    def _make_engine(self) -> Engine:
        s = self.settings
        if s.opa_url:
            from veto_opa.engines.rest import RestEngine

            verify: bool | str = False if s.opa_insecure else (str(s.opa_ca) if s.opa_ca
                                                                else True)
            rest = RestEngine(s.opa_url, timeout=s.opa_timeout, token=s.opa_token,
                              verify=verify, cert=str(s.opa_client_cert)
                              if s.opa_client_cert else None)
            self._fact_spec = _remote_facts(rest)
            self._policy_redact = _remote_redaction(rest)
            return rest
        from veto_opa.engines.embedded import EmbeddedEngine, reserve_go_heap

        reserve_go_heap(s.go_heap_reserve)
        if s.bundle_url:
            from veto_opa.bundles import service_from_settings
            from veto_opa.translators.bundle import build_bundle

            # Nothing is decided until a bundle is active (undefined: a fail-closed deny),
            # and until one says what to redact, every argument is.
            embedded = EmbeddedEngine(build_bundle({}, revision=""), pool_size=s.pool_size)
            self._policy_redact = ("args.*",)
            self.bundle_service = service_from_settings(s, self._activate)
            return embedded
        bundle = self._load_bundle()
        self._fact_spec, self._policy_redact = _fact_spec(bundle), _redaction(bundle)
        return EmbeddedEngine(bundle, pool_size=s.pool_size)

    def _load_bundle(self) -> Bundle:
        from veto_opa.bundles import key_from_settings, load_bundle
        from veto_opa.translators import build

        if self.settings.bundle is not None:
            return load_bundle(self.settings.bundle, key_from_settings(self.settings))
        self._sources = [Path(p) for p in self.settings.policies]
        self._mtimes = self._stat_sources()
        return build(self._sources).bundle()

    def _activate(self, bundle: Bundle) -> None:
        """Decide with a bundle the bundle service downloaded (and verified) from now on.

        Raises:
            BundleError: the engine refused it; the previous one stays in use.
        """
        with self._lock:
            self._install(bundle)

    def _install(self, bundle: Bundle) -> None:
        """Reload the engine with ``bundle``, and its facts and redaction with it. While
        calls decided on either bundle may still be recorded, both bundles' ``redact:``
        paths are redacted. The caller holds the lock.

        Raises:
            VetoError: a bad redaction path; BundleError: the engine refused the bundle
                (everything of the previous one stays).
        """
        spec, redact = _fact_spec(bundle), _redaction(bundle)
        previous, before = self._policy_redact, self._redactor
        redactor = self._make_redactor(redact)
        self._redactor = self._make_redactor((*previous, *redact))
        try:
            self.engine.reload(bundle)
        except BaseException:
            self._redactor = before
            raise
        self._policy_redact, self._redactor = redact, redactor
        self._fact_spec, self._facts = spec, Facts(spec, key=self._key)

    def _make_redactor(self, policy_paths: Sequence[str]) -> Redactor:
        paths = list(dict.fromkeys([*policy_paths, *self.settings.redact]))
        try:
            return Redactor(paths, self._key)
        except ValueError as e:
            raise VetoError(f"bad redaction path: {e}") from None

    def _stat_sources(self) -> dict[Path, int]:
        mtimes = {}
        for path in self._sources:
            try:
                mtimes[path] = path.stat().st_mtime_ns
            except OSError:
                mtimes[path] = -1
        return mtimes

    # -- policies -----------------------------------------------------------------------------

    def reload(self) -> None:
        """Recompile the policy files (or re-read the bundle) and swap them in; calls in
        flight finish on the old ones.

        Raises:
            PolicyError: the files have problems; the policies in use stay in use.
            BundleError: the bundle (or the bundle service's download) was refused; the
                bundle in use stays in use.
            VetoError: this Veto has nothing to reload (an OPA server, a custom engine).
        """
        if self.bundle_service is not None and not self._sources:
            self.bundle_service.poll()
            status = self.bundle_service.status()
            if status.code is not None:
                raise BundleError(f"the bundle service kept revision "
                                  f"{status.active_revision or 'none'!r}: {status.message}")
            return
        if not self._sources and self.settings.bundle is None:
            raise VetoError(f"reload() needs policy files or a bundle; this Veto uses "
                            f"{self.engine.name}")
        with self._lock:
            self._install(self._load_bundle())

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

    def guard(self, tool: str, arguments: object = None,
              context: Mapping[str, Any] | None = None, model: str | None = None,
              call_id: str | None = None, *, wait_for_approval: float | None = None,
              invalid: str | None = None) -> Decision:
        """Decide one tool call before it runs.

        Args:
            tool: the tool (function) name the model chose.
            arguments: its arguments: an object, or the JSON text the model sent.
            context: facts about the call the model does not choose (environment, user, role).
            model: the model that chose the call.
            call_id: the model's tool-call id.
            wait_for_approval: for a call that needs approval, wait up to this many seconds
                for approvers to decide, then decide the call once more (using the grant, or
                denying it as rejected); still pending after that, the pending decision is
                returned.
            invalid: why the caller found the call unusable before asking (an unknown tool,
                arguments against the tool's schema): the call is then denied with cause
                ``invalid_tool_call`` and this reason, without asking the engine, and recorded.

        Returns:
            The :class:`Decision`; ``decision.allowed`` says whether the tool may run. Never
            raises for an unusable call or a failing engine: those are denies naming the
            cause, and every call is recorded before this returns.
        """
        decision = self._guard(tool, arguments, context, model, call_id, invalid)
        if (wait_for_approval is None or decision.decision != "require_approval"
                or decision.approval_id is None or self.approvals is None):
            return decision
        try:
            waited = self.approvals.wait(decision.approval_id, wait_for_approval)
        except VetoError as e:
            log.error("veto-opa could not wait for approval %s: %s", decision.approval_id, e)
            return decision
        if waited.status == "pending":
            return decision
        return self._guard(tool, arguments, context, model, call_id)

    def _guard(self, tool: str, arguments: object, context: Mapping[str, Any] | None,
               model: str | None, call_id: str | None, invalid: str | None = None) -> Decision:
        started = time.perf_counter_ns()
        decision_id = new_decision_id()
        span = (spans.start(self._tracer, tool, call_id, model, decision_id)
                if self._tracer is not None else None)
        call: ToolCall | None = None
        failure: BaseException | None = None
        cause: str | None = None
        opa_decision_id: str | None = None
        computed = NO_FACTS
        try:
            call = check_call(tool, arguments, context, model, call_id,
                              max_bytes=self.settings.max_argument_bytes)
            if invalid is not None:
                raise InvalidToolCall(invalid)
            document = call.input_document()
            computed = self._facts.compute(call.tool, call.arguments)
            if computed.document:
                document["facts"] = computed.document
            answer = self.engine.decide(document, headers=spans.trace_headers(span))
            verdict, opa_decision_id = answer.verdict, answer.opa_decision_id
        except (EngineError, InvalidToolCall) as e:
            failure, cause = e, e.cause
            verdict = Verdict.fail_closed(e.cause, str(e))
        except Exception as e:  # noqa: BLE001 - nothing may escape guard() as an allow
            failure, cause = e, "internal_error"
            verdict = Verdict.fail_closed(cause, f"{type(e).__name__}: {e}")
        approval_id: str | None = None
        if verdict.decision == "require_approval" and call is not None:
            verdict, approval_id, cause = self._approval(call, verdict, decision_id, cause)
        trace_id, span_id = spans.ids(span)
        # Read once, after deciding: while a new bundle is installed, the redactor in place
        # covers the paths of both (see _install).
        redactor = self._redactor
        kept_facts = recorded_facts(computed, redactor.parsed, self._key)
        if self.records is not None:
            try:
                self.records.append_decision(GuardRecord(
                    decision_id=decision_id, timestamp=now_timestamp(),
                    call=self._recorded(redactor, call, tool, arguments, context, model,
                                        call_id),
                    verdict=verdict, engine=self.engine.name,
                    latency_us=(time.perf_counter_ns() - started) // 1000,
                    approval_id=approval_id, cause=cause, trace_id=trace_id, span_id=span_id,
                    opa_decision_id=opa_decision_id, facts=kept_facts))
            except Exception as e:  # noqa: BLE001 - an unrecorded call must not run
                log.error("veto-opa could not record decision %s: %s", decision_id, e)
                failure, cause = e, "record_error"
                verdict = Verdict.fail_closed(
                    cause, f"the decision record could not be written: {e}")
        if self.decision_logs is not None:
            self._log_decision(redactor, decision_id, call, verdict, trace_id, span_id,
                               started)
        if span is not None:
            captured = self.settings.capture_arguments
            span.set_attributes(span_attributes(computed, kept_facts if captured else None))
            spans.finish(span, verdict, engine=self.engine.name, approval_id=approval_id,
                         cause=cause, failure=failure, opa_decision_id=opa_decision_id,
                         arguments=redactor.arguments(call.arguments)[0]
                         if captured and call is not None else None)
        return Decision(verdict, decision_id, approval_id, cause, trace_id, span_id)

    async def guard_async(self, tool: str, arguments: object = None,
                          context: Mapping[str, Any] | None = None, model: str | None = None,
                          call_id: str | None = None, *,
                          wait_for_approval: float | None = None) -> Decision:
        """:meth:`guard` for asyncio code: the evaluation runs in a worker thread (the engines
        release the GIL while they evaluate), so the event loop keeps serving, also while it
        waits for an approval."""
        decision = await asyncio.to_thread(self._guard, tool, arguments, context, model,
                                           call_id)
        if (wait_for_approval is None or decision.decision != "require_approval"
                or decision.approval_id is None or self.approvals is None):
            return decision
        try:
            waited = await self.approvals.wait_async(decision.approval_id, wait_for_approval)
        except VetoError as e:
            log.error("veto-opa could not wait for approval %s: %s", decision.approval_id, e)
            return decision
        if waited.status == "pending":
            return decision
        return await asyncio.to_thread(self._guard, tool, arguments, context, model, call_id)

    def record_outcome(self, decision_id: str, status: str, error: str | None = None) -> None:
        """Record what happened after a decision: ``executed`` (the tool ran), ``failed`` (it
        ran and failed, with ``error``) or ``skipped`` (it was not run).

        Raises:
            RecordError: records are off; no such decision; an unknown status, an
                ``executed``/``failed`` for a call that was not allowed, or a second outcome
                (each such attempt is itself recorded, as ``refused``); or the store failed.
        """
        if self.records is None:
            raise RecordError("decision records are turned off (VETO_RECORDS=false)")
        self.records.append_outcome(decision_id, status, error)

    # -- pieces of guard() ---------------------------------------------------------------------

    def _approval(self, call: ToolCall, verdict: Verdict, decision_id: str,
                  cause: str | None) -> tuple[Verdict, str | None, str | None]:
        """Let an approved call through once, deny a rejected one, or leave it pending with
        its approval id (:meth:`ApprovalService.settle` never raises)."""
        if self._approval_service is None:
            return verdict, None, cause
        settled = self._approval_service.settle(verdict, call, decision_id)
        return settled.verdict, settled.approval_id, settled.cause or cause

    @staticmethod
    def _recorded(redactor: Redactor, call: ToolCall | None, tool: object, arguments: object,
                  context: object, model: object, call_id: object) -> RecordedCall:
        """What the record keeps of the call: for an unusable call, whatever can be stored,
        and a digest of what cannot."""
        if call is not None:
            recorded, erased = redactor.arguments(call.arguments)
            return RecordedCall(call.tool, recorded, redactor.digest(call.arguments_text),
                                tuple(erased), call.context, None, call.model, call.call_id)
        kept, unkept = _storable_context(context)
        return RecordedCall(
            tool=_storable_text(tool if isinstance(tool, str) else repr(tool)),
            arguments=None, arguments_digest=redactor.digest(digest_text(arguments)),
            context=kept, context_digest=redactor.digest(unkept) if unkept is not None else None,
            model=_storable_text(model) if isinstance(model, str) else None,
            call_id=_storable_text(call_id) if isinstance(call_id, str) else None)

    def _log_decision(self, redactor: Redactor, decision_id: str, call: ToolCall | None,
                      verdict: Verdict, trace_id: str | None, span_id: str | None,
                      started: int) -> None:
        """Hand the decision to the decision-log shipper (it never blocks nor raises)."""
        assert self.decision_logs is not None
        document = (call.input_document() if call is not None else
                    {"tool": None, "args": None, "context": None, "model": None,
                     "call_id": None})
        try:
            self.decision_logs.submit(
                decision_id=decision_id, input_text=json.dumps(document, ensure_ascii=False),
                result=verdict.document(), revision=verdict.policy_revision,
                trace_id=trace_id, span_id=span_id,
                latency_ns=time.perf_counter_ns() - started, redact=redactor.parsed)
        except Exception as e:  # noqa: BLE001 - logging a decision never changes it
            log.error("veto-opa could not queue decision %s for the decision log: %s",
                      decision_id, e)

    # -- decorating tools ------------------------------------------------------------------

    def tool(self, fn: F | None = None, *, name: str | None = None,
             context: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
             model: str | None = None,
             arguments: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None) -> Any:
        """Guard a plain Python function: each call is decided first, and runs only if allowed.

        ::

            @veto.tool(context={"environment": "production"})
            def execute_sql(statement: str, database: str) -> str: ...

        The function's bound arguments (defaults applied; ``self`` and ``cls`` of a method
        left out) are the tool call's arguments, passed through ``arguments`` when given (to
        turn values such as ``datetime`` or ``bytes`` into JSON). The tool name is ``name`` or
        the function's name; ``context`` is a mapping or a function returning one, read at
        each call. A denied call raises :class:`~veto_opa.Denied`, one that needs approval
        :class:`~veto_opa.ApprovalRequired`; both carry the decision. After an allowed call
        the outcome (``executed`` or ``failed``) is recorded. Coroutine functions are guarded
        with :meth:`guard_async`.
        """
        def decorate(func: F) -> F:
            tool_name = name or func.__name__
            call_arguments = _argument_binder(func, arguments)

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
                    try:
                        result = await func(*args, **kwargs)
                    except BaseException as e:
                        self._outcome(decision, "failed", f"{type(e).__name__}: {e}")
                        raise
                    self._outcome(decision, "executed")
                    return result

                return cast("F", async_wrapper)

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

            return cast("F", wrapper)

        return decorate(fn) if fn is not None else decorate

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
        if self.bundle_service is not None:
            self.bundle_service.stop()
        if self.decision_logs is not None:
            self.decision_logs.close()
        self.engine.close()
        if self._approval_service is not None:
            self._approval_service.close()
        if self.records is not None:
            self.records.close()

    def __enter__(self) -> Veto:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _argument_binder(func: Callable[..., Any],
                     mapper: Callable[[dict[str, Any]], Mapping[str, Any]] | None,
                     ) -> Callable[[tuple[Any, ...], dict[str, Any]], Mapping[str, Any]]:
    """A function from a call's ``(args, kwargs)`` to the tool call's arguments."""
    signature = inspect.signature(func)
    parameters = list(signature.parameters.values())
    # A method decorated in its class body is a plain function here; its first parameter is
    # the instance (or the class), which is no argument of the tool call.
    skipped = (parameters[0].name if parameters and parameters[0].name in ("self", "cls")
               and parameters[0].kind in (inspect.Parameter.POSITIONAL_ONLY,
                                          inspect.Parameter.POSITIONAL_OR_KEYWORD) else None)

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, Any]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        out: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            kind = signature.parameters[key].kind
            if key == skipped:
                continue
            if kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                out[key] = list(value)
            else:
                out[key] = value
        return mapper(out) if mapper is not None else out

    return bind


def _storable_text(text: str) -> str:
    """``text``, with what UTF-8 cannot hold (lone surrogates) escaped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _storable_context(context: object) -> tuple[dict[str, Any], str | bytes | None]:
    """The context as the record can keep it — values that are not JSON as their ``repr``,
    ``NaN`` as text — and, when even that cannot be stored (too deep, lone surrogates, not an
    object), ``{}`` and the text to keep a digest of."""
    if context is None:
        return {}, None
    if isinstance(context, Mapping):
        try:
            text = json.dumps(dict(context), ensure_ascii=False, default=repr, skipkeys=True)
            lossy = json.loads(text, parse_constant=str)
            canonical_json(lossy)
            return lossy, None
        except (TypeError, ValueError, RecursionError):
            pass
    return {}, digest_text(context)


def _fact_spec(bundle: Bundle) -> Spec:
    """The facts declarations of a bundle (``data.veto.facts``).

    Raises:
        VetoError: they are not usable.
    """
    try:
        return spec_from_data(bundle.data_documents())
    except ValueError as e:
        raise VetoError(f"the bundle's facts declarations are not usable: {e}") from None


def _redaction(bundle: Bundle) -> tuple[str, ...]:
    """The ``redact:`` paths of a bundle's policies (``data.veto.redaction``).

    Raises:
        VetoError: they are not a list of paths.
    """
    document = dict(bundle.data_documents()).get(REDACTION_DATA.replace("/", "."))
    return _redaction_paths(document)


def _redaction_paths(document: object) -> tuple[str, ...]:
    if document is None:
        return ()
    paths = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise VetoError(f"the bundle's redaction paths are not usable: {document!r:.200}")
    return tuple(paths)


def _remote_redaction(engine: RestEngine) -> tuple[str, ...]:
    """The ``redact:`` paths of the bundle an OPA server holds; when they cannot be read,
    every argument is redacted (``args.*``): a record must not keep in clear what the
    policies may have said to hide."""
    try:
        return _redaction_paths(engine.document(REDACTION_DATA))
    except (EngineError, VetoError) as e:
        log.error("veto-opa could not read the redaction paths from OPA; every argument is "
                  "redacted in records until a new Veto reads them: %s", e)
        return ("args.*",)


def _remote_facts(engine: RestEngine) -> Spec:
    """The facts declarations of the bundle an OPA server holds (``data.veto.facts``); none
    when they cannot be read, logged: rules that read facts then fail closed."""
    try:
        return spec_from_data([("veto.facts", engine.document("veto/facts"))])
    except (EngineError, ValueError) as e:
        log.error("veto-opa could not read the facts declarations from OPA (rules reading "
                  "facts will fail closed): %s", e)
        return {}


