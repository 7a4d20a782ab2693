"""The approvers' web console over real HTTP on loopback (uvicorn), and end to end in a real
headless Chromium (Debian's chromium and chromium-driver, driven by selenium): sign in, see
the call an agent made, approve it, see the agent's retry allowed; the requester refused.

The browser test skips when chromium or chromedriver is missing; .ci/run installs them.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from veto_opa import Veto
from veto_opa.approvals.console import HEADERS, create_app
from veto_opa.config import VetoSettings

CALL = ("deploy", {"service": "payments", "version": "2.4.1", "password": "hunter2"})


class Server:
    """The console served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, home: Path) -> None:
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        app = create_app(VetoSettings(home=home))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def agent(make_veto: Callable[..., Veto]) -> Veto:
    return make_veto(redact=["args.password"])


@pytest.fixture
def console(home: Path, agent: Veto) -> Iterator[Server]:
    server = Server(home)
    yield server
    server.close()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(url: str, token: str) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{url}/login")
    answer = session.post(f"{url}/login", data={"csrf": csrf_of(form.text), "token": token},
                          allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    return session


@pytest.mark.parametrize("path", ["/", "/decisions", "/chain", "/approvals/x"])
def test_nothing_without_sign_in(console: Server, path: str) -> None:
    answer = requests.get(console.url + path, allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    posted = requests.post(console.url + path + "/approve", data={"csrf": "x"},
                           allow_redirects=False)
    assert posted.status_code == 403


def test_security_headers_and_cookie(console: Server, tokens: dict[str, str]) -> None:
    page = requests.get(console.url + "/login")
    for name, value in HEADERS.items():
        assert page.headers[name] == value
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "script" not in page.text.lower()
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    session = sign_in(console.url, tokens["alice"])
    assert session.get(console.url + "/").headers["Cache-Control"] == "no-store"


def test_sign_in_needs_a_valid_token_and_the_forms_csrf(console: Server,
                                                        tokens: dict[str, str]) -> None:
    session = requests.Session()
    form = session.get(console.url + "/login")
    no_csrf = session.post(console.url + "/login", data={"token": tokens["alice"]})
    assert no_csrf.status_code == 403
    other = requests.Session()          # a CSRF token from another browser's session
    stolen = csrf_of(other.get(console.url + "/login").text)
    assert session.post(console.url + "/login",
                        data={"token": tokens["alice"], "csrf": stolen}).status_code == 403
    bad = session.post(console.url + "/login",
                       data={"token": tokens["alice"] + "x", "csrf": csrf_of(form.text)})
    assert bad.status_code == 401 and "the approver token is not valid" in bad.text
    for _ in range(5):
        session.post(console.url + "/login", data={"token": "no", "csrf": csrf_of(form.text)})
    limited = session.post(console.url + "/login",
                           data={"token": tokens["alice"], "csrf": csrf_of(form.text)})
    assert limited.status_code == 429


def test_votes_need_the_sessions_csrf_and_the_requester_is_refused(
        console: Server, agent: Veto, tokens: dict[str, str]) -> None:
    pending = agent.guard(*CALL, {"environment": "production", "user": "bob"})
    bob = sign_in(console.url, tokens["bob"])
    page = bob.get(f"{console.url}/approvals/{pending.approval_id}")
    assert "You cannot approve this call: you requested this call" in page.text
    assert 'id="approve"' not in page.text
    forged = bob.post(f"{console.url}/approvals/{pending.approval_id}/approve",
                      data={"csrf": csrf_of(page.text)})
    assert forged.status_code == 400
    assert "bob requested this call and cannot approve it" in forged.text
    alice = sign_in(console.url, tokens["alice"])
    no_csrf = alice.post(f"{console.url}/approvals/{pending.approval_id}/approve", data={})
    assert no_csrf.status_code == 403
    assert agent.guard(*CALL, {"environment": "production", "user": "bob"}).decision \
        == "require_approval"
    page = alice.get(f"{console.url}/approvals/{pending.approval_id}")
    assert "hunter2" not in page.text            # redacted arguments
    done = alice.post(f"{console.url}/approvals/{pending.approval_id}/approve",
                      data={"csrf": csrf_of(page.text), "justification": "CHG-9"})
    assert done.status_code == 200 and "it is now approved" in done.text
    assert agent.guard(*CALL, {"environment": "production", "user": "bob"}).allowed


def test_an_approver_whose_group_is_done_may_still_reject(
        console: Server, agent: Veto, tokens: dict[str, str]) -> None:
    call = ("migrate", {"table": "users", "rows": 50_000})
    ctx = {"environment": "production", "user": "carol"}
    pending = agent.guard(*call, ctx)
    dana = sign_in(console.url, tokens["dana"])
    page = dana.get(f"{console.url}/approvals/{pending.approval_id}")
    dana.post(f"{console.url}/approvals/{pending.approval_id}/approve",
              data={"csrf": csrf_of(page.text), "justification": "rows ok"})
    dino = sign_in(console.url, tokens["dino"])
    page = dino.get(f"{console.url}/approvals/{pending.approval_id}")
    assert "none of your groups can give what it still needs" in page.text
    assert 'id="approve"' not in page.text and 'id="reject"' in page.text
    assert dino.post(f"{console.url}/approvals/{pending.approval_id}/nonsense",
                     data={"csrf": csrf_of(page.text)}).status_code == 404
    done = dino.post(f"{console.url}/approvals/{pending.approval_id}/reject",
                     data={"csrf": csrf_of(page.text), "justification": "table locked"})
    assert "it is now rejected" in done.text
    denied = agent.guard(*call, ctx)
    assert denied.cause == "approval_rejected" and "table locked" in denied.reason


def test_decisions_filters_and_chain_status(console: Server, agent: Veto, home: Path,
                                            tokens: dict[str, str]) -> None:
    agent.guard(*CALL, {"environment": "production", "user": "bob"})
    agent.guard("restart", {"service": "db"}, {"tier": "bronze"})
    alice = sign_in(console.url, tokens["alice"])
    listing = alice.get(console.url + "/decisions", params={"decision": "require_approval"})
    assert "prod_deploys" in listing.text and "restart" not in listing.text
    assert "restart" in alice.get(console.url + "/decisions", params={"tool": "restart"}).text
    assert alice.get(console.url + "/decisions", params={"since": "nope"}).status_code == 400
    assert "prod_deploys" not in alice.get(
        console.url + "/decisions", params={"until": "2000-01-01"}).text
    chain = alice.get(console.url + "/chain")
    assert "Intact:" in chain.text and "Consistent: 1 approvals checked" in chain.text
    import sqlite3

    with sqlite3.connect(home / "approvals.sqlite3") as db:
        db.execute("UPDATE approvals SET status = 'approved'")
    assert "Inconsistent: 1 approvals checked" in alice.get(console.url + "/chain").text


def test_sign_out_ends_the_session(console: Server, tokens: dict[str, str]) -> None:
    alice = sign_in(console.url, tokens["alice"])
    page = alice.get(console.url + "/")
    kept = dict(alice.cookies)
    out = alice.post(console.url + "/logout", data={"csrf": csrf_of(page.text)},
                     allow_redirects=False)
    assert out.status_code == 303
    replayed = requests.get(console.url + "/", cookies=kept, allow_redirects=False)
    assert replayed.status_code == 303 and replayed.headers["location"] == "/login"


# -- a real browser -------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM or not DRIVER:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_an_approver_approves_in_a_real_browser(console: Server, agent: Veto, browser: Any,
                                                tokens: dict[str, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    pending = agent.guard(*CALL, {"environment": "production", "user": "bob"})
    mine = agent.guard("deploy", {"service": "web", "version": "1"},
                       {"environment": "production", "user": "alice"})
    browser.get(console.url + "/")
    assert browser.current_url == console.url + "/login"          # redirected
    browser.find_element(By.ID, "token").send_keys(tokens["alice"])
    browser.find_element(By.ID, "sign-in").click()
    assert "alice (sre-oncall)" in browser.find_element(By.ID, "me").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#pending tbody tr")
    assert {row.get_attribute("data-approval") for row in rows} == {pending.approval_id,
                                                                   mine.approval_id}
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-approval="{pending.approval_id}"]')
    assert "prod_deploys" in row.text and '"bob"' in row.text
    row.find_element(By.LINK_TEXT, "Review").click()
    arguments = browser.find_element(By.ID, "arguments").text
    assert "payments" in arguments and "hunter2" not in arguments   # redacted
    browser.find_element(By.ID, "approve-justification").send_keys("CHG-1234, window open")
    screenshot = tmp_path / "console-approval.png"
    browser.save_screenshot(str(screenshot))
    print(f"console screenshot: {screenshot}")
    browser.find_element(By.ID, "approve").click()
    assert "it is now approved" in browser.find_element(By.ID, "notice").text
    assert browser.find_element(By.ID, "status").text == "approved"
    retry = agent.guard(*CALL, {"environment": "production", "user": "bob"})
    assert retry.allowed and retry.approval_id == pending.approval_id
    # alice's own call: the console shows why she cannot approve it, and offers no button
    browser.get(f"{console.url}/approvals/{mine.approval_id}")
    assert "you requested this call" in browser.find_element(By.ID, "why-not").text
    assert not browser.find_elements(By.ID, "approve")
    browser.save_screenshot(str(tmp_path / "console-refused.png"))
    assert screenshot.stat().st_size > 10_000
    assert agent.guard("deploy", {"service": "web", "version": "1"},
                       {"environment": "production", "user": "alice"}).decision \
        == "require_approval"
