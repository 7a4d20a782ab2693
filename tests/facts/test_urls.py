"""URL facts: scheme, host (IDNA, lower case, IPv4 in any spelling), port, decoded path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_opa.facts import FactSpec, compute


def url(text: object) -> dict:
    return compute({"u": FactSpec("url")}, {"u": text})["u"]


@pytest.mark.parametrize("text, scheme, host, port, path", [
    ("https://example.com/admin", "https", "example.com", 443, "/admin"),
    ("HTTPS://EXAMPLE.COM:443/admin", "https", "example.com", 443, "/admin"),
    ("https://example.com./admin", "https", "example.com", 443, "/admin"),
    ("https://example.com/%61dmin", "https", "example.com", 443, "/admin"),
    ("https://example.com/x/../admin/./", "https", "example.com", 443, "/admin/"),
    ("https://example.com/x/%2e%2E/admin", "https", "example.com", 443, "/admin"),
    ("  https://example.com/admin\n", "https", "example.com", 443, "/admin"),
    ("ht\ttps://exam\nple.com/ad\rmin", "https", "example.com", 443, "/admin"),
    ("http://user:pw@example.com:8080", "http", "example.com", 8080, "/"),
    ("https://B\u00fccher.example/", "https", "xn--bcher-kva.example", 443, "/"),
    ("https://xn--bcher-kva.example/", "https", "xn--bcher-kva.example", 443, "/"),
    ("https://%65xample.com/", "https", "example.com", 443, "/"),
    ("http://2130706433/", "http", "127.0.0.1", 80, "/"),
    ("http://0x7f.1/", "http", "127.0.0.1", 80, "/"),
    ("http://0177.0.0.1/", "http", "127.0.0.1", 80, "/"),
    ("http://127.1/", "http", "127.0.0.1", 80, "/"),
    ("http://[::1]:8181/v1", "http", "::1", 8181, "/v1"),
    ("http://[0:0:0:0:0:0:0:1]/", "http", "::1", 80, "/"),
    ("ftp://files.example/pub", "ftp", "files.example", 21, "/pub"),
    ("mailto:ops@example.com", "mailto", "", None, "ops@example.com"),
])
def test_url(text: str, scheme: str, host: str, port: int | None, path: str) -> None:
    fact = url(text)
    assert (fact["scheme"], fact["host"], fact["port"], fact["path"]) == (scheme, host, port,
                                                                          path)


def test_segments_prefixes_query_userinfo_ip() -> None:
    fact = url("https://a:b@example.com//admin/users%2Fall/?q=%41#frag")
    assert fact["segments"] == ["admin", "users/all"]
    assert fact["prefixes"] == ["/admin", "/admin/users/all"]
    assert fact["query"] == "q=%41"
    assert fact["userinfo"] is True
    assert fact["ip"] is False
    assert url("http://10.0.0.1/")["ip"] is True


@pytest.mark.parametrize("text, error", [
    ("http://evil.example\\@good.example/", "the URL contains a backslash, which browsers "
                                            "read as '/' and Python does not"),
    ("https://example.com/a\x01b", "the URL contains a control character"),
    ("https://example.com/\x00", "the URL contains a NUL character"),
    ("\x00https://example.com/", "the URL contains a NUL character"),
    ("example.com/admin", "the URL has no scheme (expected an absolute URL such as "
                          "https://example.com/)"),
    ("http:///admin", "the http URL has no host"),
    ("http://example.com:99999/", "the URL cannot be parsed: Port out of range 0-65535"),
    ("http://256.0.0.1/", "the URL's host is an IPv4 address out of range"),
    ("http://1.2.3.09/", "the URL's host ends in a number but is not a valid IPv4 address"),
    ("http://[::g]/", None),
    ("http://%ff.example/", "the URL's host is percent-encoded bytes that are not UTF-8"),
    ("http://" + "a" * 70 + ".example/", None),
    ("https://ex ample.com/", None),
])
def test_errors(text: str, error: str | None) -> None:
    fact = url(text)
    assert "error" in fact, fact
    if error is not None:
        assert fact["error"] == error


def test_host_errors_do_not_crash_on_odd_unicode() -> None:
    assert "error" in url("https://\u200b.example/") or url("https://\u200b.example/")["host"]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_text_is_a_fact_or_an_error(text: str) -> None:
    fact = url(text)
    assert "parser" in fact
    assert ("error" in fact) != ("host" in fact)
