"""The REST engine against the OPA stand-in: same decisions, kept-alive, traced, authenticated,
over TLS and proxies."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tests.engines.conftest import SEED_CASES
from tests.opa_standin import OpaStandin
from veto_opa.engines.embedded import EmbeddedEngine
from veto_opa.engines.rest import RestEngine
from veto_opa.errors import EngineProtocolError, EngineUnavailable
from veto_opa.translators.bundle import Bundle, build_bundle

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def tracer() -> Iterator[trace.Tracer]:
    provider = TracerProvider()   # passed explicitly: the global provider stays untouched
    yield provider.get_tracer("tests.engines")
    provider.shutdown()


def traceparent(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


# -- decisions -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("input", "decision", "rule"), SEED_CASES,
                         ids=[f"{i}-{c[1]}" for i, c in enumerate(SEED_CASES)])
def test_decides_like_the_embedded_engine(rest: RestEngine, embedded: EmbeddedEngine,
                                          input: dict[str, Any], decision: str,
                                          rule: str | None) -> None:
    answer = rest.decide(input)
    assert answer.verdict == embedded.decide(input).verdict
    assert (answer.verdict.decision, answer.verdict.rule) == (decision, rule)


def test_posts_the_input_to_the_data_api(rest: RestEngine, standin: OpaStandin) -> None:
    input = SEED_CASES[0][0]
    rest.decide(input)
    request = standin.requests[-1]
    assert (request.method, request.path) == ("POST", "/v1/data/veto/decision")
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {"input": input}


def test_posts_compact_json(rest: RestEngine, standin: OpaStandin) -> None:
    input, decision, rule = SEED_CASES[0]
    answer = rest.decide(input)
    assert standin.requests[-1].body == json.dumps(
        {"input": input}, separators=(",", ":"), ensure_ascii=False).encode()
    assert (answer.verdict.decision, answer.verdict.rule) == (decision, rule)


def test_decision_id_is_captured(rest: RestEngine) -> None:
    first, second = rest.decide(SEED_CASES[0][0]), rest.decide(SEED_CASES[0][0])
    assert first.opa_decision_id is not None and UUID.match(first.opa_decision_id)
    assert first.opa_decision_id != second.opa_decision_id


def test_without_decision_logging_there_is_no_decision_id(seed_bundle_path: Any) -> None:
    with OpaStandin(seed_bundle_path, pool_size=1) as url, RestEngine(url) as engine:
        assert engine.decide(SEED_CASES[0][0]).opa_decision_id is None


def test_other_document_path(standin: OpaStandin) -> None:
    standin.load(_bundle_with_decision_at("veto/tools/decision.rego", "veto.tools"))
    with RestEngine(standin.url + "/", path="/veto/tools/decision") as engine:
        assert engine.decide({}).verdict.rule == "tools"
    assert standin.requests[-1].path == "/v1/data/veto/tools/decision"


def _bundle_with_decision_at(module: str, package: str) -> Bundle:
    source = (f"package {package}\n\n"
              'decision := {"decision": "allow", "rule": "tools", "reason": "r", "approvers": [],'
              ' "matched": [], "errors": [], "policy": {}}\n')
    return build_bundle({module: source}, revision="t")


def test_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="expected an http\\(s\\) URL of OPA"):
        RestEngine("localhost:8181")


# -- connections ---------------------------------------------------------------------------------

def test_sequential_decides_reuse_one_connection(rest: RestEngine, standin: OpaStandin) -> None:
    for _ in range(50):
        rest.decide(SEED_CASES[0][0])
    assert standin.connections == 1
    assert len(standin.requests) == 50


def test_concurrent_decides_share_a_bounded_pool(standin: OpaStandin,
                                                 embedded: EmbeddedEngine) -> None:
    with RestEngine(standin.url, pool_maxsize=4) as engine:
        def worker(offset: int) -> list[str]:
            wrong = []
            for i in range(40):
                input, decision, rule = SEED_CASES[(offset + i) % len(SEED_CASES)]
                got = engine.decide(input).verdict
                if (got.decision, got.rule) != (decision, rule):
                    wrong.append(f"{input}: {got}")
            return wrong

        with ThreadPoolExecutor(4) as pool:
            assert [w for ws in pool.map(worker, range(4)) for w in ws] == []
    assert standin.connections <= 4


def test_close_closes_the_connections(rest: RestEngine, standin: OpaStandin) -> None:
    rest.decide(SEED_CASES[0][0])
    rest.close()
    with RestEngine(standin.url) as again:
        again.decide(SEED_CASES[0][0])
    assert standin.connections == 2


# -- headers -------------------------------------------------------------------------------------

def test_bearer_token_is_sent(standin: OpaStandin) -> None:
    with RestEngine(standin.url, token="s3cret") as engine:
        engine.decide(SEED_CASES[0][0])
        engine.decide(SEED_CASES[0][0], headers={"traceparent": "00-" + "1" * 32 + "-"
                                                 + "2" * 16 + "-01"})
    assert [h["authorization"] for h in standin.headers()] == ["Bearer s3cret"] * 2


def test_no_authorization_without_a_token(rest: RestEngine, standin: OpaStandin) -> None:
    rest.decide(SEED_CASES[0][0])
    assert "authorization" not in standin.requests[-1].headers


def test_traceparent_of_the_active_span_is_injected(rest: RestEngine, standin: OpaStandin,
                                                    tracer: trace.Tracer) -> None:
    span = tracer.start_span("veto.guard")
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        rest.decide(SEED_CASES[0][0])
    finally:
        otel_context.detach(token)
        span.end()
    assert standin.requests[-1].headers["traceparent"] == traceparent(span)


def test_no_traceparent_without_an_active_span(rest: RestEngine, standin: OpaStandin) -> None:
    rest.decide(SEED_CASES[0][0])
    assert "traceparent" not in standin.requests[-1].headers


def test_explicit_headers_are_passed_through(rest: RestEngine, standin: OpaStandin,
                                             tracer: trace.Tracer) -> None:
    span = tracer.start_span("veto.guard")
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    span.end()
    carrier["tracestate"] = "veto=1"
    rest.decide(SEED_CASES[0][0], headers=carrier)
    headers = standin.requests[-1].headers
    assert headers["traceparent"] == traceparent(span)
    assert headers["tracestate"] == "veto=1"


def test_explicit_headers_replace_the_injected_context(rest: RestEngine, standin: OpaStandin,
                                                       tracer: trace.Tracer) -> None:
    explicit = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    with tracer.start_as_current_span("outer"):
        rest.decide(SEED_CASES[0][0], headers={"traceparent": explicit})
    assert standin.requests[-1].headers["traceparent"] == explicit


def test_explicit_headers_merge_case_insensitively(standin: OpaStandin) -> None:
    with RestEngine(standin.url, token="s3cret") as engine:
        engine.decide(SEED_CASES[0][0], headers={"authorization": "Bearer other"})
    assert standin.requests[-1].headers["authorization"] == "Bearer other"


def test_netrc_credentials_without_a_token(standin: OpaStandin, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login veto password pw\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with RestEngine(standin.url) as engine:
        engine.decide(SEED_CASES[0][0])
    with RestEngine(standin.url, token="s3cret") as engine:
        engine.decide(SEED_CASES[0][0])
    assert [h["authorization"] for h in standin.headers()] == [
        "Basic " + base64.b64encode(b"veto:pw").decode(), "Bearer s3cret"]


# -- the connection pool -------------------------------------------------------------------------

def drop_connections(standin: OpaStandin) -> None:
    """The server side closes every open connection, as OPA does on restart or idle timeout."""
    with standin._lock:
        for sock in list(standin._sockets):
            sock.shutdown(socket.SHUT_RDWR)


def test_a_connection_closed_by_the_server_is_replaced(rest: RestEngine,
                                                       standin: OpaStandin) -> None:
    rest.decide(SEED_CASES[0][0])
    drop_connections(standin)
    assert rest.decide(SEED_CASES[0][0]).verdict.decision == "deny"
    assert standin.connections == 2
    assert len(standin.requests) == 2   # the request on the closed connection never arrived
    rest.decide(SEED_CASES[0][0])
    assert standin.connections == 2


def test_the_connection_is_kept_after_an_http_error(rest: RestEngine,
                                                    standin: OpaStandin) -> None:
    standin.status, standin.body = 500, b'{"code":"internal_error","message":"boom"}'
    with pytest.raises(EngineProtocolError):
        rest.decide(SEED_CASES[0][0])
    standin.status = None
    assert rest.decide(SEED_CASES[0][0]).verdict.decision == "deny"
    assert standin.connections == 1


def test_pool_keeps_at_most_pool_maxsize_idle_connections(standin: OpaStandin) -> None:
    callers = 6
    barrier = threading.Barrier(callers)
    with RestEngine(standin.url, pool_maxsize=2) as engine:
        def worker(_: int) -> str:
            barrier.wait()
            return engine.decide(SEED_CASES[0][0]).verdict.decision

        standin.delay = 0.5   # every caller is in flight at once: one connection each
        with ThreadPoolExecutor(callers) as pool:
            assert list(pool.map(worker, range(callers))) == ["deny"] * callers
        assert standin.connections == callers
        deadline = time.monotonic() + 5
        while len(standin._sockets) > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(standin._sockets) == 2   # the engine closed the ones it did not keep
        standin.delay = 0.0
        for _ in range(5):
            engine.decide(SEED_CASES[0][0])
        assert standin.connections == callers   # and reuses the two it kept


def test_pool_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="pool_maxsize must be at least 1, found 0"):
        RestEngine("http://localhost:8181", pool_maxsize=0)


# -- health --------------------------------------------------------------------------------------

def test_health(standin: OpaStandin) -> None:
    with RestEngine(standin.url) as engine:
        assert engine.health() is True
        assert standin.requests[-1].path == "/health?bundles"
        standin.load(None)   # up, but the bundle is not activated
        assert engine.health() is False


def test_health_of_an_unreachable_opa() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with RestEngine(f"http://127.0.0.1:{port}", timeout=0.5) as engine:
        assert engine.health() is False


# -- proxies -------------------------------------------------------------------------------------

@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_http_proxy_from_the_environment(standin: OpaStandin,
                                         proxy_env: pytest.MonkeyPatch) -> None:
    # The stand-in answers absolute-form requests too, so it can play the proxy.
    proxy_env.setenv("http_proxy", standin.url.replace("http://", "http://user:pw@"))
    with RestEngine("http://opa.invalid:8181", token="s3cret") as engine:
        assert engine.decide(SEED_CASES[0][0]).verdict.decision == "deny"
        engine.decide(SEED_CASES[0][0])
    request = standin.requests[-1]
    assert request.path == "http://opa.invalid:8181/v1/data/veto/decision"
    assert request.headers["host"] == "opa.invalid:8181"
    assert request.headers["proxy-authorization"] == "Basic " + base64.b64encode(
        b"user:pw").decode()
    assert request.headers["authorization"] == "Bearer s3cret"
    assert standin.connections == 1


def test_https_through_a_proxy_opens_a_tunnel(standin: OpaStandin,
                                               proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("https_proxy", standin.url)   # the stand-in does not do CONNECT
    with RestEngine("https://opa.invalid:8181") as engine, \
            pytest.raises(EngineUnavailable) as raised:
        engine.decide(SEED_CASES[0][0])
    assert str(raised.value).startswith(
        "cannot reach OPA at https://opa.invalid:8181 through the proxy: 501 ")


def test_no_proxy_is_honoured(standin: OpaStandin, proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("http_proxy", "http://proxy.invalid:3128")
    proxy_env.setenv("no_proxy", "127.0.0.1")
    with RestEngine(standin.url) as engine:
        engine.decide(SEED_CASES[0][0])
    assert standin.requests[-1].path == "/v1/data/veto/decision"


def test_unsupported_proxy_is_refused(proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("http_proxy", "socks5://127.0.0.1:1080")
    with pytest.raises(ValueError, match="the proxy 'socks5://127.0.0.1:1080' for OPA at "
                       "http://opa.invalid:8181 cannot be used: Using SOCKS proxy"):
        RestEngine("http://opa.invalid:8181")


# -- TLS -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    ca: Path
    server: ssl.SSLContext
    server_mtls: ssl.SSLContext
    server_elsewhere: ssl.SSLContext   # a valid certificate for another host name
    client_cert: Path
    client_key: Path
    client_pem: Path   # certificate and key in one file


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)

    def issue(name: str, issuer: tuple[x509.Certificate, Any] | None,
              usage: x509.ObjectIdentifier | None,
              names: tuple[x509.GeneralName, ...] = ()) -> tuple[x509.Certificate, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(issuer[0].subject if issuer else subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False))
        if issuer is None:
            builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                             critical=True)
                       .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                    False, False), critical=True))
        else:
            builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                             critical=True)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                           issuer[1].public_key()), critical=False)
                       .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
            if names:
                builder = builder.add_extension(x509.SubjectAlternativeName(names),
                                                critical=False)
        return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key

    def write(name: str, *parts: bytes) -> Path:
        path = directory / name
        path.write_bytes(b"".join(parts))
        return path

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca = issue("veto test CA", None, None)
    server = issue("opa", ca, ExtendedKeyUsageOID.SERVER_AUTH,
                   (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    elsewhere = issue("opa", ca, ExtendedKeyUsageOID.SERVER_AUTH, (x509.DNSName("opa.example"),))
    client = issue("veto", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_path = write("ca.pem", pem(ca[0]))

    def server_context(mtls: bool, certificate: tuple[x509.Certificate, Any] = server
                       ) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        name = f"server-{certificate[0].serial_number}"
        context.load_cert_chain(write(f"{name}.pem", pem(certificate[0])),
                                write(f"{name}.key", key_pem(certificate[1])))
        if mtls:
            # TLS 1.2: a missing client certificate fails the handshake itself.
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(ca_path)
        return context

    return Pki(ca=ca_path, server=server_context(False), server_mtls=server_context(True),
               server_elsewhere=server_context(False, elsewhere),
               client_cert=write("client.pem", pem(client[0])),
               client_key=write("client.key", key_pem(client[1])),
               client_pem=write("client-and-key.pem", pem(client[0]), key_pem(client[1])))


def serve_tls(standin: OpaStandin, context: ssl.SSLContext) -> str:
    """Make the running stand-in speak TLS; its https URL."""
    assert standin._server is not None
    standin._server.socket = context.wrap_socket(standin._server.socket, server_side=True)
    return standin.url.replace("http://", "https://")


def test_tls_with_a_ca_bundle(standin: OpaStandin, pki: Pki) -> None:
    url = serve_tls(standin, pki.server)
    with RestEngine(url, verify=str(pki.ca)) as engine:
        for _ in range(5):
            assert engine.decide(SEED_CASES[0][0]).verdict.decision == "deny"
        assert engine.health() is True
    assert standin.connections == 1   # kept alive, for decide and health alike


def test_tls_verifies_with_the_default_ca_bundle(standin: OpaStandin, pki: Pki,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    url = serve_tls(standin, pki.server)
    with RestEngine(url) as engine, pytest.raises(EngineUnavailable) as raised:
        engine.decide(SEED_CASES[0][0])
    assert str(raised.value).startswith(f"TLS with OPA at {url} failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))   # as httpx reads it
    with RestEngine(url) as engine:
        assert engine.decide(SEED_CASES[0][0]).verdict.decision == "deny"


def test_tls_checks_the_host_name(standin: OpaStandin, pki: Pki) -> None:
    url = serve_tls(standin, pki.server_elsewhere)
    with RestEngine(url, verify=str(pki.ca)) as engine, \
            pytest.raises(EngineUnavailable) as raised:
        engine.decide(SEED_CASES[0][0])
    assert str(raised.value).startswith(f"TLS with OPA at {url} failed: ")
    assert "IP address mismatch" in str(raised.value)


def test_tls_without_verification(standin: OpaStandin, pki: Pki) -> None:
    url = serve_tls(standin, pki.server)
    with RestEngine(url, verify=False) as engine:
        assert engine.decide(SEED_CASES[0][0]).verdict.decision == "deny"


@pytest.mark.parametrize("form", ["pair", "one file"])
def test_mutual_tls(standin: OpaStandin, pki: Pki, form: str) -> None:
    url = serve_tls(standin, pki.server_mtls)
    cert: str | tuple[str, str] = ((str(pki.client_cert), str(pki.client_key)) if form == "pair"
                                   else str(pki.client_pem))
    with RestEngine(url, verify=str(pki.ca), cert=cert) as engine:
        assert engine.decide(SEED_CASES[0][0]).verdict.decision == "deny"


def test_mutual_tls_without_a_client_certificate(standin: OpaStandin, pki: Pki) -> None:
    url = serve_tls(standin, pki.server_mtls)
    with RestEngine(url, verify=str(pki.ca)) as engine, \
            pytest.raises(EngineUnavailable) as raised:
        engine.decide(SEED_CASES[0][0])
    assert str(raised.value).startswith(f"TLS with OPA at {url} failed: ")


def test_tls_files_that_cannot_be_loaded(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load the TLS files for OPA"):
        RestEngine("https://localhost:8181", verify=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="cannot load the TLS files for OPA"):
        RestEngine("https://localhost:8181", cert=str(tmp_path / "missing.pem"))


def test_document_reads_a_document_of_the_bundle(rest: RestEngine, standin: OpaStandin) -> None:
    assert rest.document("veto/no_such_document") is None   # undefined: no result
    assert isinstance(rest.document("veto/rules"), dict)
    standin.status, standin.body = 500, b'{"code": "internal_error", "message": "boom"}'
    with pytest.raises(EngineProtocolError, match="OPA answered HTTP 500 for veto/facts: boom"):
        rest.document("veto/facts")


def test_reload_is_for_the_server_to_do(rest: RestEngine, seed_bundle: Any) -> None:
    from veto_opa.errors import VetoError

    with pytest.raises(VetoError, match="loads its own bundles"):
        rest.reload(seed_bundle)
