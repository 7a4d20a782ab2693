"""Approval notifications by webhook: a request was made, a request was decided.

``VETO_APPROVAL_WEBHOOK`` is the URL; each event is POSTed as JSON on a background thread,
so ``guard()`` never waits for it, and retried with exponential backoff (0.5 s, 1 s, 2 s ...)
on a connection error, a timeout, a 429 or a 5xx answer. With
``VETO_APPROVAL_WEBHOOK_SECRET`` every request carries::

    X-Veto-Timestamp: 1764662400
    X-Veto-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>

so that the receiver can check where it came from and refuse replays (compare the timestamp
with its clock). ``VETO_APPROVAL_WEBHOOK_FORMAT=slack`` sends a Slack-compatible message
(``text`` and ``blocks``, as Slack's incoming webhooks take) instead of the JSON event.

Payloads carry the tool, rules, reason, requester and the bound context: never the
arguments (the console shows them, redacted, to a signed-in approver).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable

    from veto_opa.approvals.model import Approval
    from veto_opa.config import VetoSettings

log = logging.getLogger("veto_opa.approvals")

Format = Literal["json", "slack"]
_STOP = object()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def event_payload(kind: Literal["requested", "decided"], approval: Approval,
                  by: str | None = None, console_url: str | None = None) -> dict[str, Any]:
    """The JSON event for an approval."""
    payload: dict[str, Any] = {
        "type": f"approval.{kind}", "approval_id": approval.approval_id,
        "status": approval.status, "tool": approval.tool, "rule": approval.rule,
        "reason": approval.reason, "subject": approval.subject,
        "context": approval.request.context,
        "requirements": [r.document() for r in approval.request.requirements],
        "requested_at": approval.requested_at, "expires_at": approval.expires_at,
        "requested_by_decision": approval.requested_by_decision,
        "policy_revision": approval.request.policy_revision,
    }
    if kind == "decided":
        payload.update(by=by, votes=[v.document() for v in approval.votes],
                       justification=approval.justification)
    if console_url:
        payload["url"] = f"{console_url.rstrip('/')}/approvals/{approval.approval_id}"
    return payload


def slack_payload(event: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message for an event (``text`` plus ``blocks``)."""
    groups = "; ".join(f"{', '.join(r['groups'])} ×{r['count']}" for r in event["requirements"])
    if event["type"] == "approval.requested":
        text = (f"Approval needed: `{event['tool']}` ({event['rule'] or 'policy default'}) — "
                f"{event['reason']}. Approvers: {groups}.")
    else:
        why = f": {event['justification']}" if event.get("justification") else ""
        text = f"Approval {event['status']} by {event['by']}: `{event['tool']}`{why}"
    if event.get("url"):
        text += f" <{event['url']}|Open the console>"
    fields = [f"*Approval*\n{event['approval_id']}", f"*Requested by*\n{event['subject']}"]
    return {"text": text, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]}]}


class Notifier:
    """Delivers approval events to one webhook URL from a background thread.

    Args:
        url: where to POST.
        secret: the HMAC key for ``X-Veto-Signature``, or None to send unsigned.
        format: ``json`` (the event) or ``slack``.
        console_url: the console's address, linked from each event.
        attempts: tries per event before it is dropped (and logged).
        backoff: seconds before the second try; doubled for each next one.
        timeout: seconds per request.
        max_queue: events waiting at most; more are dropped (and logged), never blocking.
        post: the HTTP call (tests may record); default ``httpx.post``.
    """

    def __init__(self, url: str, *, secret: str | None = None, format: Format = "json",
                 console_url: str | None = None, attempts: int = 5, backoff: float = 0.5,
                 timeout: float = 5.0, max_queue: int = 1000,
                 post: Callable[..., Any] | None = None) -> None:
        self.url = url
        self._secret = secret
        self._format = format
        self._console_url = console_url
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._timeout = timeout
        self._post = post or httpx.post
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._stopping = threading.Event()
        self.delivered = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="veto-approval-webhooks",
                                        daemon=True)
        self._thread.start()

    def requested(self, approval: Approval) -> None:
        """Announce a new request (returns at once)."""
        self._enqueue(event_payload("requested", approval, console_url=self._console_url))

    def decided(self, approval: Approval, by: str, verdict: str) -> None:
        """Announce a vote (returns at once)."""
        self._enqueue(event_payload("decided", approval, by=by, console_url=self._console_url))

    def _enqueue(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            log.error("veto-opa dropped approval webhook %s: the queue is full", event["type"])

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                return
            self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        payload = slack_payload(event) if self._format == "slack" else event
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "veto-opa",
                       "X-Veto-Event": event["type"], "X-Veto-Timestamp": timestamp}
            if self._secret:
                headers["X-Veto-Signature"] = sign(self._secret, timestamp, body)
            try:
                answer = self._post(self.url, content=body, headers=headers, timeout=self._timeout)
                status = int(answer.status_code)
                if status < 300:
                    self.delivered += 1
                    return
                if status != 429 and status < 500:
                    log.error("veto-opa approval webhook %s refused with HTTP %s",
                              event["type"], status)
                    self.dropped += 1
                    return
                problem = f"HTTP {status}"
            except httpx.HTTPError as exc:
                problem = str(exc)
            if attempt < self._attempts and self._stopping.wait(delay):
                break   # closing: no more waiting between tries
            delay *= 2
            log.warning("veto-opa approval webhook %s failed (%s), try %d of %d",
                        event["type"], problem, attempt, self._attempts)
        self.dropped += 1
        log.error("veto-opa gave up delivering approval webhook %s", event["type"])

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout`` seconds), then stop."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._stopping.set()
        self._thread.join(1.0)


def notifier_from_settings(settings: VetoSettings) -> Notifier | None:
    """The notifier ``VETO_APPROVAL_WEBHOOK*`` configure, or None."""
    if not settings.approval_webhook:
        return None
    return Notifier(settings.approval_webhook, secret=settings.approval_webhook_secret,
                    format=settings.approval_webhook_format, console_url=settings.console_url)
