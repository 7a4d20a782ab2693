"""The approvers' web console: ``veto-opa serve`` (Starlette, Jinja2 templates, uvicorn).

Pages: sign-in with an approver token; the pending queue (tool, redacted arguments, context,
rules, reason, requester); one approval with approve / reject and a justification; recent
decisions with filters; the record chain's status and the approvals checked against it.

**Security.** Nothing but the sign-in page and the stylesheet is served without a session.
The session is a cookie signed with a secret kept in ``<home>/console.key`` (0600),
``HttpOnly`` and ``SameSite=Strict`` (``Secure`` with ``--secure-cookies``); it names a
server-side session, which holds the approver's signing key, derived from their token at
sign-in, in memory only: restarting the console signs everyone out. Every form carries the
session's CSRF token, checked on every POST. Every response carries a Content Security
Policy without scripts (``default-src 'none'``), ``frame-ancestors 'none'`` and
``X-Frame-Options: DENY``, ``nosniff``, ``Referrer-Policy: no-referrer`` and ``Cache-Control:
no-store``. Votes go through the same store checks as the CLI: the requester cannot approve
here either. Failed sign-ins are limited per client address.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from veto_opa.approvals.approver import why_not, why_not_reject
from veto_opa.approvals.registry import RegistryFile, registry_path
from veto_opa.approvals.store import SQLiteApprovalStore, store_path
from veto_opa.errors import ApprovalError, RecordError, VetoError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from veto_opa.approvals.model import Verdict
    from veto_opa.approvals.registry import Signer
    from veto_opa.approvals.webhooks import Notifier
    from veto_opa.config import VetoSettings
    from veto_opa.records.store import SQLiteRecordStore

SECRET_FILE = "console.key"
SESSION_SECONDS = 8 * 3600
MAX_FAILED_SIGN_INS = 5         # per client address and minute
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_OPEN = ("/login", "/static/console.css")
_EXTRA = "the console needs its extra: pip install 'veto-opa[console]'"


@dataclass
class _Session:
    signer: Signer
    expires: float


@dataclass
class Console:
    """What the console's requests share: the stores, the registry, the signed-in
    approvers' keys, the failed sign-ins."""

    settings: VetoSettings
    records: SQLiteRecordStore
    store: SQLiteApprovalStore
    registry: RegistryFile
    notifier: Notifier | None = None
    sessions: dict[str, _Session] = field(default_factory=dict)
    failures: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def signer(self, request: Request) -> Signer | None:
        sid = request.session.get("sid")
        if not isinstance(sid, str):
            return None
        with self.lock:
            session = self.sessions.get(sid)
            if session is None:
                return None
            if session.expires < time.time():
                del self.sessions[sid]
                return None
            return session.signer

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()
        self.store.close()
        self.records.close()


def load_or_create_secret(home: Path) -> bytes:
    """The session-signing secret, ``<home>/console.key``: 32 random bytes, mode 0600.

    Raises:
        ApprovalError: it cannot be read or created.
    """
    import os

    path = home / SECRET_FILE
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = path.read_bytes()
        else:
            secret = secrets.token_bytes(32)
            try:
                os.write(fd, secret)
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise ApprovalError(f"cannot read or create the console secret {path}: {exc}") from exc
    if len(secret) != 32:
        raise ApprovalError(f"{path} is not a console secret (expected 32 bytes)")
    return secret


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("veto_opa.approvals", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False, indent=1,
                                                   sort_keys=True)
    return env


def create_app(settings: VetoSettings, *, secure_cookies: bool = False) -> Starlette:
    """The console's ASGI application for the veto home of ``settings``.

    Raises:
        VetoError: the extra is not installed; ApprovalError, RecordError: the stores
            cannot be opened.
    """
    try:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.middleware.sessions import SessionMiddleware
        from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse
        from starlette.routing import Route
    except ImportError as exc:   # pragma: no cover - the extra is installed in tests
        raise VetoError(f"{_EXTRA} ({exc})") from None
    from veto_opa.approvals.webhooks import notifier_from_settings
    from veto_opa.records.store import SQLiteRecordStore
    from veto_opa.records.store import store_path as records_path

    home = settings.home
    secret = load_or_create_secret(home)
    records = SQLiteRecordStore(records_path(home))
    try:
        store = SQLiteApprovalStore(store_path(home), records, ttl=settings.approval_ttl,
                                    grant_ttl=settings.approval_grant_ttl,
                                    rejection_ttl=settings.rejection_ttl)
    except BaseException:
        records.close()
        raise
    console = Console(settings, records, store,
                      RegistryFile(registry_path(home, settings.approvers)),
                      notifier_from_settings(settings))
    templates = _templates()
    css = (Path(__file__).parent / "static" / "console.css").read_text(encoding="utf-8")

    def page(request: Request, name: str, status: int = 200, **values: Any) -> Response:
        signer = console.signer(request)
        values.setdefault("error", None)
        body = templates.get_template(name).render(
            me=signer.identity if signer else None, csrf=_csrf(request),
            notice=request.session.pop("notice", None), **values)
        return HTMLResponse(body, status_code=status)

    def refused(request: Request, message: str, status: int) -> Response:
        return page(request, "error.html", status, error=message)

    async def form_of(request: Request) -> dict[str, str] | None:
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        expected = request.session.get("csrf")
        given = values.get("csrf", "")
        if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
            return None
        return values

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return page(request, "login.html")
        address = request.client.host if request.client else "?"
        with console.lock:
            recent = [t for t in console.failures.get(address, []) if t > time.time() - 60]
            console.failures[address] = recent
        if len(recent) >= MAX_FAILED_SIGN_INS:
            return refused(request, "too many failed sign-ins; wait a minute", 429)
        form = await form_of(request)
        if form is None:
            return refused(request, "the form expired; reload the page and try again", 403)
        try:
            signer = console.registry.current().signer_for_token(form.get("token", ""))
        except ApprovalError as exc:
            with console.lock:
                console.failures.setdefault(address, []).append(time.time())
            return page(request, "login.html", 401, error=str(exc))
        sid = secrets.token_urlsafe(32)
        with console.lock:
            console.sessions[sid] = _Session(signer, time.time() + SESSION_SECONDS)
        request.session.clear()
        request.session.update(sid=sid, csrf=secrets.token_urlsafe(32))
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        if await form_of(request) is None:
            return refused(request, "the form expired; reload the page and try again", 403)
        with console.lock:
            console.sessions.pop(request.session.get("sid", ""), None)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def queue(request: Request) -> Response:
        signer = console.signer(request)
        assert signer is not None
        approvals = console.store.list(status="pending", limit=200)
        rows = [(a, why_not(signer.identity, a)) for a in approvals]
        return page(request, "queue.html", rows=rows)

    async def detail(request: Request) -> Response:
        signer = console.signer(request)
        assert signer is not None
        try:
            approval = console.store.get(request.path_params["approval_id"])
        except VetoError as exc:
            return refused(request, str(exc), 409)
        if approval is None:
            return refused(request, "no such approval", 404)
        record = console.records.get(approval.requested_by_decision)
        return page(request, "approval.html", approval=approval, record=record,
                    why_not=why_not(signer.identity, approval),
                    why_not_reject=why_not_reject(signer.identity, approval))

    async def decide(request: Request) -> Response:
        signer = console.signer(request)
        assert signer is not None
        form = await form_of(request)
        if form is None:
            return refused(request, "the form expired; reload the page and try again", 403)
        approval_id = request.path_params["approval_id"]
        verdicts: dict[str, Verdict] = {"approve": "approved", "reject": "rejected"}
        verdict = verdicts.get(request.path_params["verdict"])
        if verdict is None:
            return refused(request, "no such action", 404)
        justification = form.get("justification", "").strip() or None
        try:
            registry = console.registry.current()
            if registry.approvers.get(signer.identity.name) != signer.identity:
                raise ApprovalError("your registry entry changed; sign in again")
            decided = console.store.vote(approval_id, signer=signer, verdict=verdict,
                                         justification=justification, registry=registry)
        except VetoError as exc:
            return refused(request, str(exc), 400)
        if console.notifier is not None:
            console.notifier.decided(decided, signer.identity.name, verdict)
        request.session["notice"] = f"You {verdict[:-1]}d it: it is now {decided.status}."
        return RedirectResponse(f"/approvals/{approval_id}", status_code=303)

    async def decisions(request: Request) -> Response:
        query = request.query_params
        filters = {name: query.get(name) or None
                   for name in ("decision", "tool", "rule", "since", "until")}
        try:
            found = console.records.query(**filters, limit=200)
        except (ValueError, RecordError) as exc:
            return page(request, "decisions.html", 400, records=[], filters=filters,
                        error=str(exc))
        return page(request, "decisions.html", records=found, filters=filters)

    async def chain(request: Request) -> Response:
        from veto_opa.approvals.store import audit_home

        result = console.records.verify()
        audit = audit_home(console.records, home, settings.approvers)
        return page(request, "chain.html", result=result, audit=audit)

    async def stylesheet(request: Request) -> Response:
        return PlainTextResponse(css, media_type="text/css")

    class Guard:
        """Headers on every response; a session for everything but the open paths."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return

            async def send_with_headers(message: Any) -> None:
                if message["type"] == "http.response.start":
                    names = {k.lower() for k, _ in message.get("headers", [])}
                    message["headers"] = [*message.get("headers", []), *(
                        (k.lower().encode(), v.encode()) for k, v in HEADERS.items()
                        if k.lower().encode() not in names)]
                await send(message)

            from starlette.requests import Request as StarletteRequest

            request = StarletteRequest(scope)
            if scope["path"] not in _OPEN and console.signer(request) is None:
                if scope["method"] == "GET":
                    response: Any = RedirectResponse("/login", status_code=303)
                else:
                    response = PlainTextResponse("sign in first", status_code=403)
                await response(scope, receive, send_with_headers)
                return
            await self.app(scope, receive, send_with_headers)

    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", queue),
        Route("/approvals/{approval_id}", detail),
        Route("/approvals/{approval_id}/{verdict:str}", decide, methods=["POST"]),
        Route("/decisions", decisions),
        Route("/chain", chain),
        Route("/static/console.css", stylesheet),
    ]
    app = Starlette(routes=routes, middleware=[
        Middleware(SessionMiddleware, secret_key=secret.hex(), session_cookie="veto_session",
                   max_age=SESSION_SECONDS, same_site="strict", https_only=secure_cookies),
        Middleware(Guard),
    ], lifespan=_closing(console), max_body_size=64 * 1024)
    app.state.console = console
    return app


def _closing(console: Console) -> Any:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        try:
            yield
        finally:
            console.close()

    return lifespan


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def serve(settings: VetoSettings, *, host: str = "127.0.0.1", port: int = 8700,
          secure_cookies: bool = False) -> int:
    """Run the console until interrupted; the exit code.

    Raises:
        VetoError: the extra is missing, or the stores cannot be opened.
    """
    try:
        import uvicorn
    except ImportError as exc:   # pragma: no cover
        raise VetoError(f"{_EXTRA} ({exc})") from None
    app = create_app(settings, secure_cookies=secure_cookies)
    print(f"veto-opa console for {settings.home} on http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    return 0
