"""Webhook notifications against a local HTTP receiver: signed JSON, retries with backoff,
the Slack form, and a guard() that never waits for them."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from veto_opa import Veto
from veto_opa.approvals import Approver
from veto_opa.approvals.webhooks import Notifier, sign


class Receiver:
    """A webhook receiver on loopback (http.server): records each request, answers each with
    the next status of ``statuses`` (then 200), after ``delay`` seconds."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                with receiver.arrived:
                    receiver.requests.append((dict(self.headers), body, time.monotonic()))
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout), \
                f"{len(self.requests)} of {count} webhook requests arrived"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def test_requested_and_decided_events_are_signed(receiver: Receiver,
                                                 make_veto: Callable[..., Veto], home: Path,
                                                 tokens: dict[str, str]) -> None:
    settings = {"approval_webhook": receiver.url, "approval_webhook_secret": "s3cret",
                "console_url": "https://approvals.example/"}
    veto = make_veto(**settings)
    pending = veto.guard("deploy", {"version": "1", "password": "hunter2"},
                         {"environment": "production", "user": "bob"})
    receiver.wait_for(1)
    again = veto.guard("deploy", {"version": "1", "password": "hunter2"},
                       {"environment": "production", "user": "bob"})
    assert again.approval_id == pending.approval_id
    from veto_opa.config import VetoSettings

    with Approver(home, token=tokens["alice"],
                  settings=VetoSettings(home=home, **settings)) as alice:
        alice.approve(pending.approval_id, "OPS-7")
    receiver.wait_for(2)
    time.sleep(0.2)
    assert len(receiver.requests) == 2            # the repeated request is not announced again
    (h1, b1, _), (h2, b2, _) = receiver.requests
    for headers, body in ((h1, b1), (h2, b2)):
        assert headers["X-Veto-Signature"] == sign("s3cret", headers["X-Veto-Timestamp"], body)
        assert abs(int(headers["X-Veto-Timestamp"]) - time.time()) < 60
        assert b"hunter2" not in body             # arguments never leave in a webhook
    requested, decided = json.loads(b1), json.loads(b2)
    assert h1["X-Veto-Event"] == requested["type"] == "approval.requested"
    assert requested["approval_id"] == pending.approval_id
    assert requested["rule"] == "prod_deploys" and requested["subject"] == '"bob"'
    assert requested["requirements"] == [{"policy": "ops", "rule": "prod_deploys",
                                          "groups": ["sre-oncall"], "count": 1}]
    assert requested["url"] == f"https://approvals.example/approvals/{pending.approval_id}"
    assert (decided["type"], decided["status"], decided["by"], decided["justification"]) == (
        "approval.decided", "approved", "alice", "OPS-7")
    # a receiver checking the signature refuses a changed body
    assert sign("s3cret", h1["X-Veto-Timestamp"], b1 + b" ") != h1["X-Veto-Signature"]


def test_failures_are_retried_with_backoff_and_4xx_is_not() -> None:
    receiver = Receiver(statuses=[503, 500, 429, 200, 404])
    try:
        notifier = Notifier(receiver.url, backoff=0.1)
        notifier._enqueue({"type": "approval.requested", "n": 1})
        receiver.wait_for(4)
        times = [t for _, _, t in receiver.requests]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39   # doubling
        notifier._enqueue({"type": "approval.decided", "n": 2})
        receiver.wait_for(5)
        time.sleep(0.3)
        assert len(receiver.requests) == 5        # a 404 is final
        notifier.close()
        assert (notifier.delivered, notifier.dropped) == (1, 1)
    finally:
        receiver.close()


def test_an_unreachable_receiver_is_given_up_after_its_attempts() -> None:
    notifier = Notifier("http://127.0.0.1:9/hook", backoff=0.01, attempts=3, timeout=0.5)
    notifier._enqueue({"type": "approval.requested"})
    notifier.close(timeout=10)
    assert (notifier.delivered, notifier.dropped) == (0, 1)


def test_a_slow_receiver_never_slows_guard(make_veto: Callable[..., Veto]) -> None:
    receiver = Receiver(delay=0.5)
    try:
        veto = make_veto(approval_webhook=receiver.url)
        started = time.monotonic()
        for n in range(3):
            veto.guard("deploy", {"version": str(n)}, {"environment": "production"})
        assert time.monotonic() - started < 0.5
        veto.close()                      # delivers what is queued before it returns
        assert len(receiver.requests) == 3
    finally:
        receiver.close()


def test_the_slack_form(receiver: Receiver, make_veto: Callable[..., Veto]) -> None:
    veto = make_veto(approval_webhook=receiver.url, approval_webhook_format="slack",
                     console_url="https://approvals.example")
    pending = veto.guard("deploy", {"version": "1"}, {"environment": "production", "user": "bob"})
    receiver.wait_for(1)
    message = json.loads(receiver.requests[0][1])
    assert set(message) == {"text", "blocks"}
    assert message["text"].startswith("Approval needed: `deploy` (prod_deploys) — ")
    assert "sre-oncall ×1" in message["text"]
    assert f"<https://approvals.example/approvals/{pending.approval_id}|Open the console>" \
        in message["text"]
    assert message["blocks"][0] == {"type": "section",
                                    "text": {"type": "mrkdwn", "text": message["text"]}}
    assert "X-Veto-Signature" not in receiver.requests[0][0]   # no secret configured
