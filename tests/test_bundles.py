"""Bundles at runtime: signed bundles checked at load (as OPA >= 1.21.3 checks them), YAML
limits on bundle data, and the bundle-service client against a real HTTP bundle server."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.bundle_server import LONG_POLL_TYPE, BundleServer
from veto_opa import Veto
from veto_opa.bundles import BundleKey, BundleService, Polling, backoff, load_bundle
from veto_opa.cli import main as cli
from veto_opa.engines.embedded import EmbeddedEngine
from veto_opa.errors import BundleError, SignatureError, VetoError
from veto_opa.translators import build
from veto_opa.translators.bundle import (
    SIGNATURES,
    Bundle,
    build_bundle,
    read_bundle,
    sign_bundle,
    to_tar_gz,
    write_tar_gz,
)

ROOT = Path(__file__).resolve().parents[1]
DROP = {"statement": "DROP TABLE users", "database": "analytics"}
PROD = {"environment": "production", "user_role": "sre"}


def _pem(private: rsa.RSAPrivateKey) -> tuple[bytes, bytes]:
    return (private.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
            private.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[bytes, bytes]]:
    return {name: _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
            for name in ("veto", "other")}


@pytest.fixture(scope="module")
def seed() -> Bundle:
    return build([ROOT / "examples" / "policies.yaml"]).bundle()


@pytest.fixture(scope="module")
def signed(seed: Bundle, keys: dict[str, tuple[bytes, bytes]]) -> Bundle:
    return sign_bundle(seed, key=keys["veto"][0], key_id="veto")


@pytest.fixture
def public(tmp_path: Path, keys: dict[str, tuple[bytes, bytes]]) -> Path:
    path = tmp_path / "public.pem"
    path.write_bytes(keys["veto"][1])
    return path


def tampered(bundle: Bundle) -> Bundle:
    """The attack of issue 10: the deny rule's action edited to allow, signature kept."""
    files = dict(bundle.files)
    path = next(p for p in files if p.startswith("veto/rules/") and p.endswith("data.json"))
    rules = json.loads(files[path])
    rules["block_production_database_deletes"]["action"] = "allow"
    files[path] = json.dumps(rules).encode()
    return Bundle(files)


def write(bundle: Bundle, tmp_path: Path, name: str = "veto.tar.gz") -> Path:
    path = tmp_path / name
    write_tar_gz(bundle, path)
    return path


def veto(path: Path, tmp_path: Path, **kwargs: Any) -> Veto:
    return Veto(bundle=path, home=tmp_path / "home", records=False, spans=False,
                reload_interval=0, **kwargs)


# -- signed bundles at load ----------------------------------------------------------------

def test_a_signed_bundle_loads_with_its_key(signed: Bundle, tmp_path: Path,
                                            public: Path) -> None:
    with veto(write(signed, tmp_path), tmp_path, verification_key=public, key_id="veto") as v:
        assert v.guard("execute_sql", DROP, PROD).decision == "deny"


def test_a_tampered_bundle_is_refused_with_a_key(signed: Bundle, tmp_path: Path,
                                                 public: Path) -> None:
    path = write(tampered(signed), tmp_path)
    with pytest.raises(SignatureError, match=r"veto/rules/.*data.json: digest mismatch"):
        veto(path, tmp_path, verification_key=public, key_id="veto")


def test_without_a_key_the_tampering_goes_through(signed: Bundle, tmp_path: Path) -> None:
    # Why the key matters: the same tampered bundle, loaded without one, allows the drop.
    with veto(write(tampered(signed), tmp_path), tmp_path) as v:
        assert v.guard("execute_sql", DROP, PROD).decision == "allow"


def test_an_unsigned_bundle_is_refused_with_a_key(seed: Bundle, tmp_path: Path,
                                                  public: Path) -> None:
    with pytest.raises(SignatureError, match="expected a signed bundle, found no"):
        veto(write(seed, tmp_path), tmp_path, verification_key=public, key_id="veto")


def test_a_bundle_signed_with_another_key_is_refused(seed: Bundle, tmp_path: Path,
                                                     public: Path,
                                                     keys: dict[str, tuple[bytes, bytes]]
                                                     ) -> None:
    other = sign_bundle(seed, key=keys["other"][0], key_id="veto")
    with pytest.raises(SignatureError, match="does not verify"):
        veto(write(other, tmp_path), tmp_path, verification_key=public, key_id="veto")


def test_the_key_id_is_required(signed: Bundle, tmp_path: Path, public: Path) -> None:
    with pytest.raises(VetoError, match="needs an explicit key id"):
        veto(write(signed, tmp_path), tmp_path, verification_key=public)


def test_the_configured_key_id_wins_over_the_tokens(seed: Bundle, tmp_path: Path,
                                                    public: Path,
                                                    keys: dict[str, tuple[bytes, bytes]]
                                                    ) -> None:
    # As OPA: signing.keyid selects the key; the token's kid does not.
    kid_elsewhere = sign_bundle(seed, key=keys["veto"][0], key_id="someone-else")
    with veto(write(kid_elsewhere, tmp_path), tmp_path, verification_key=public,
              key_id="veto") as v:
        assert v.guard("execute_sql", DROP, PROD).decision == "deny"


def test_an_extra_unsigned_file_is_refused(signed: Bundle, tmp_path: Path,
                                           public: Path) -> None:
    files = dict(signed.files)
    files["veto/backdoor.rego"] = b'package veto.backdoor\n\nx := 1\n'
    with pytest.raises(SignatureError, match="veto/backdoor.rego: file not included"):
        veto(write(Bundle(files), tmp_path), tmp_path, verification_key=public, key_id="veto")


def test_a_signed_file_that_is_missing_is_refused(signed: Bundle, tmp_path: Path,
                                                  public: Path) -> None:
    files = {p: d for p, d in signed.files.items() if p != "veto/decision_test.rego"}
    with pytest.raises(SignatureError, match="specified in the bundle signature but not found"):
        veto(write(Bundle(files), tmp_path), tmp_path, verification_key=public, key_id="veto")


def test_the_scope_must_match(seed: Bundle, tmp_path: Path, public: Path,
                              keys: dict[str, tuple[bytes, bytes]]) -> None:
    scoped = sign_bundle(seed, key=keys["veto"][0], key_id="veto", scope="write")
    path = write(scoped, tmp_path)
    with pytest.raises(SignatureError, match="scope mismatch"):
        veto(path, tmp_path, verification_key=public, key_id="veto")
    with veto(path, tmp_path, verification_key=public, key_id="veto",
              bundle_scope="write") as v:
        assert v.guard("execute_sql", DROP, PROD).decision == "deny"


def test_a_token_in_another_algorithm_is_refused(seed: Bundle, tmp_path: Path,
                                                 public: Path) -> None:
    # Algorithm confusion: HS256 with the public key's PEM as the "secret".
    files = {p: d for p, d in sign_bundle(seed, key=b"x" * 32, algorithm="HS256",
                                          key_id="veto").files.items()}
    payload = jwt.decode(json.loads(files[SIGNATURES])["signatures"][0],
                         options={"verify_signature": False})
    forged = _hs256(payload, public.read_bytes())   # PyJWT itself refuses to make this
    files[SIGNATURES] = json.dumps({"signatures": [forged]}).encode()
    with pytest.raises(SignatureError, match="does not verify"):
        veto(write(Bundle(files), tmp_path), tmp_path, verification_key=public, key_id="veto")


def _hs256(payload: dict[str, Any], secret: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "veto"}).encode())
    body = b64(json.dumps(payload).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def test_reload_keeps_the_last_good_bundle(signed: Bundle, tmp_path: Path,
                                           public: Path) -> None:
    path = write(signed, tmp_path)
    with veto(path, tmp_path, verification_key=public, key_id="veto") as v:
        write_tar_gz(tampered(signed), path)
        with pytest.raises(SignatureError):
            v.reload()
        assert v.guard("execute_sql", DROP, PROD).decision == "deny"


def test_the_key_from_the_environment(signed: Bundle, tmp_path: Path, public: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETO_BUNDLE_KEY", str(public))
    monkeypatch.setenv("VETO_BUNDLE_KEY_ID", "veto")
    with pytest.raises(SignatureError):
        veto(write(tampered(signed), tmp_path), tmp_path)
    monkeypatch.delenv("VETO_BUNDLE_KEY_ID")
    with pytest.raises(VetoError, match="explicit key id"):
        veto(write(signed, tmp_path), tmp_path)


def test_eval_refuses_a_tampered_bundle_with_key(signed: Bundle, tmp_path: Path, public: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tampered(signed), tmp_path)
    args = ["eval", "--bundle", str(path), "--tool", "execute_sql", "--args", json.dumps(DROP),
            "--context", json.dumps(PROD)]
    assert cli([*args, "--key", str(public), "--key-id", "veto"]) == 1
    assert "digest mismatch" in capsys.readouterr().err
    assert cli(args) == 0   # without the key, it decides on the tampered rules
    assert json.loads(capsys.readouterr().out)["decision"] == "allow"
    good = write(signed, tmp_path, "good.tar.gz")
    assert cli(["eval", "--bundle", str(good), "--tool", "execute_sql", "--args",
                json.dumps(DROP), "--context", json.dumps(PROD), "--key", str(public),
                "--key-id", "veto"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "deny"


def test_eval_key_needs_a_bundle(capsys: pytest.CaptureFixture[str], public: Path) -> None:
    assert cli(["eval", str(ROOT / "examples" / "policies.yaml"), "--tool", "x",
                "--key", str(public), "--key-id", "veto"]) == 2   # a usage error
    assert "give --bundle too" in capsys.readouterr().err


# -- YAML data limits ------------------------------------------------------------------------

def alias_bomb(levels: int) -> bytes:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


def test_a_yaml_alias_bomb_in_bundle_data_is_refused(tmp_path: Path) -> None:
    files = dict(build_bundle({"veto/x.rego": "package veto.x\n\ny := 1\n"},
                              revision="r").files)
    files["veto/bomb/data.yaml"] = alias_bomb(9)   # 9^10 values once expanded
    path = write(Bundle(files), tmp_path)
    started = time.monotonic()
    with pytest.raises(BundleError) as raised:
        read_bundle(path)
    assert time.monotonic() - started < 5   # it ran past 120 s before
    assert str(raised.value).startswith(
        "veto/bomb/data.yaml: the document expands to too many values through aliases")


def test_verify_refuses_the_bomb_too(tmp_path: Path, public: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    files = dict(build_bundle({"veto/x.rego": "package veto.x\n\ny := 1\n"},
                              revision="r").files)
    files["veto/bomb/data.yaml"] = alias_bomb(9)
    path = write(Bundle(files), tmp_path)
    assert cli(["verify", str(path), "--key", str(public), "--key-id", "veto"]) == 1
    assert "too many values through aliases" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "problem"), [
    (b"a:" + b" [" * 70 + b"1" + b"]" * 70 + b"\n", "nests too deeply (more than 64 levels)"),
    (b"x" * (4 * 1024 * 1024 + 1), "expected at most 4194304 bytes of YAML data"),
])
def test_yaml_data_has_the_policy_file_limits(tmp_path: Path, text: bytes,
                                              problem: str) -> None:
    files = dict(build_bundle({"veto/x.rego": "package veto.x\n\ny := 1\n"},
                              revision="r").files)
    files["veto/deep/data.yaml"] = text
    with pytest.raises(BundleError, match=re.escape(problem)):
        read_bundle(write(Bundle(files), tmp_path))


def test_yaml_data_with_modest_aliases_still_loads(tmp_path: Path) -> None:
    files = dict(build_bundle({"veto/x.rego": "package veto.x\n\ny := data.veto.d.b\n"},
                              revision="r").files)
    files["veto/d/data.yaml"] = b"a: &a {k: [1, 2]}\nb: *a\n"
    bundle = read_bundle(write(Bundle(files), tmp_path))
    assert dict(bundle.data_documents())["veto.d"] == {"a": {"k": [1, 2]}, "b": {"k": [1, 2]}}


# -- the bundle service ----------------------------------------------------------------------

_OPEN: list[BundleService] = []


def open_service(url: str, **kwargs: Any) -> BundleService:
    """A BundleService that the autouse fixture stops after the test."""
    service = BundleService(url, **kwargs)
    _OPEN.append(service)
    return service


@pytest.fixture(autouse=True)
def _stop_services() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().stop()


@pytest.fixture
def server(signed: Bundle) -> Iterator[BundleServer]:
    with BundleServer(to_tar_gz(signed)) as running:
        yield running


@pytest.fixture
def engine(seed: Bundle) -> Iterator[EmbeddedEngine]:
    with EmbeddedEngine(build_bundle({}, revision=""), pool_size=2) as embedded:
        yield embedded


def key(keys: dict[str, tuple[bytes, bytes]], name: str = "veto") -> BundleKey:
    return BundleKey(keys[name][1], "veto")


def decide(engine: EmbeddedEngine) -> str:
    input = {"tool": "execute_sql", "args": DROP, "context": PROD, "model": None,
             "call_id": None}
    return engine.decide(input).verdict.decision


def test_downloads_verifies_and_activates(server: BundleServer, engine: EmbeddedEngine,
                                          keys: dict[str, tuple[bytes, bytes]],
                                          signed: Bundle) -> None:
    service = open_service(server.url, activate=engine.reload, key=key(keys))
    service.poll()
    assert decide(engine) == "deny"
    status = service.status()
    assert status.active_revision == signed.revision
    assert status.code is None and status.size == len(server.archive)
    first = server.requests[0].headers
    assert first["prefer"] == "modes=snapshot,delta"
    assert "if-none-match" not in first


def test_the_etag_is_sent_and_304_keeps_the_bundle(server: BundleServer,
                                                   engine: EmbeddedEngine,
                                                   keys: dict[str, tuple[bytes, bytes]]) -> None:
    activations: list[str] = []

    def activate(bundle: Bundle) -> None:
        activations.append(bundle.revision)
        engine.reload(bundle)

    service = open_service(server.url, activate=activate, key=key(keys))
    service.poll()
    delay = service.poll()
    assert server.requests[1].headers["if-none-match"] == server.etag
    assert len(activations) == 1
    assert 60 <= delay <= 120   # OPA's default polling delays, jittered
    assert service.status().last_successful_request >= service.status().last_successful_download


def test_a_new_revision_activates(server: BundleServer, engine: EmbeddedEngine, seed: Bundle,
                                  keys: dict[str, tuple[bytes, bytes]]) -> None:
    service = open_service(server.url, activate=engine.reload, key=key(keys))
    service.poll()
    newer = build_bundle({"veto/decision.rego": _ALLOW_ALL}, revision="r2")
    server.publish(to_tar_gz(sign_bundle(newer, key=keys["veto"][0], key_id="veto")))
    service.poll()
    assert service.status().active_revision == "r2"
    assert decide(engine) == "allow"


@pytest.mark.parametrize("case", ["tampered", "wrong key", "unsigned", "not a bundle"])
def test_a_bad_download_keeps_the_last_good_bundle(server: BundleServer, engine: EmbeddedEngine,
                                                   signed: Bundle, seed: Bundle,
                                                   keys: dict[str, tuple[bytes, bytes]],
                                                   case: str) -> None:
    service = open_service(server.url, activate=engine.reload, key=key(keys))
    service.poll()
    good_etag = server.etag
    bad = {"tampered": to_tar_gz(tampered(signed)),
           "wrong key": to_tar_gz(sign_bundle(seed, key=keys["other"][0], key_id="veto")),
           "unsigned": to_tar_gz(seed), "not a bundle": b"<html>maintenance</html>"}[case]
    server.publish(bad)
    service.poll()
    assert decide(engine) == "deny"
    status = service.status()
    assert status.active_revision == signed.revision
    assert status.code == "bundle_error" and status.message
    # As OPA: the next request names the ETag of the bundle last activated, not the bad one.
    service.poll()
    assert server.requests[-1].headers["if-none-match"] == good_etag


def test_server_down_keeps_the_bundle_and_backs_off(engine: EmbeddedEngine, signed: Bundle,
                                                    keys: dict[str, tuple[bytes, bytes]]
                                                    ) -> None:
    with BundleServer(to_tar_gz(signed)) as running:
        service = open_service(running.url, activate=engine.reload, key=key(keys))
        service.poll()
    delays = [service.poll() for _ in range(4)]
    assert decide(engine) == "deny"
    assert service.status().code == "bundle_error"
    assert service.status().message.startswith("request failed: ")
    assert delays[0] == 0 and 0.1 * 1.6 * 0.8 <= delays[1] <= 0.1 * 1.6 * 1.2
    assert delays[3] > delays[1]


def test_an_http_error_is_reported_with_its_code(server: BundleServer, engine: EmbeddedEngine,
                                                 keys: dict[str, tuple[bytes, bytes]]) -> None:
    server.status = 503
    service = open_service(server.url, activate=engine.reload, key=key(keys))
    service.poll()
    status = service.status()
    assert (status.code, status.http_code, status.message) == (
        "bundle_error", "503", "server replied with Service Unavailable")
    assert status.active_revision is None


def test_a_slow_server_times_out(server: BundleServer, engine: EmbeddedEngine,
                                 keys: dict[str, tuple[bytes, bytes]]) -> None:
    server.delay = 3.0
    service = open_service(server.url, activate=engine.reload, key=key(keys), timeout=0.3)
    started = time.monotonic()
    service.poll()
    assert time.monotonic() - started < 2.5
    assert "did not answer within 0.3 s" in (service.status().message or "")


def test_bearer_token(server: BundleServer, engine: EmbeddedEngine,
                      keys: dict[str, tuple[bytes, bytes]]) -> None:
    server.token = "s3cret"
    open_service(server.url, activate=engine.reload, key=key(keys), token="wrong").poll()
    service = open_service(server.url, activate=engine.reload, key=key(keys), token="s3cret")
    service.poll()
    assert service.status().active_revision
    assert server.requests[-1].headers["authorization"] == "Bearer s3cret"


def test_persisted_bundle_starts_offline(server: BundleServer, engine: EmbeddedEngine,
                                         tmp_path: Path, signed: Bundle,
                                         keys: dict[str, tuple[bytes, bytes]]) -> None:
    open_service(server.url, activate=engine.reload, key=key(keys), persist_dir=tmp_path).poll()
    persisted = tmp_path / "bundles" / "veto" / "bundle.tar.gz"
    assert persisted.read_bytes() == server.archive
    url = server.url
    server.stop()
    with EmbeddedEngine(build_bundle({}, revision=""), pool_size=1) as fresh:
        offline = open_service(url, activate=fresh.reload, key=key(keys),
                                persist_dir=tmp_path)
        assert offline.load_persisted()
        assert decide(fresh) == "deny"
        assert offline.status().active_revision == signed.revision


def test_a_tampered_persisted_copy_is_not_activated(server: BundleServer, tmp_path: Path,
                                                    signed: Bundle,
                                                    keys: dict[str, tuple[bytes, bytes]]
                                                    ) -> None:
    persisted = tmp_path / "bundles" / "veto" / "bundle.tar.gz"
    persisted.parent.mkdir(parents=True)
    persisted.write_bytes(to_tar_gz(tampered(signed)))
    activated: list[Bundle] = []
    service = open_service(server.url, activate=activated.append, key=key(keys),
                            persist_dir=tmp_path)
    assert not service.load_persisted()
    assert activated == [] and service.status().code == "bundle_error"


def test_long_polling(server: BundleServer, engine: EmbeddedEngine, seed: Bundle,
                      keys: dict[str, tuple[bytes, bytes]]) -> None:
    server.long_polling = True
    service = open_service(server.url, activate=engine.reload, key=key(keys),
                            polling=Polling(60, 120, long_polling_timeout=5))
    assert service.poll() == 0   # the server long-polls: ask again at once
    assert server.requests[0].headers["prefer"] == "modes=snapshot,delta;wait=5"
    newer = sign_bundle(build_bundle({"veto/decision.rego": _ALLOW_ALL}, revision="r3"),
                        key=keys["veto"][0], key_id="veto")
    timer = threading.Timer(0.3, server.publish, args=(to_tar_gz(newer),))
    timer.start()
    started = time.monotonic()
    service.poll()   # held by the server until the new revision is published
    assert 0.2 < time.monotonic() - started < 4
    assert service.status().active_revision == "r3"
    timer.join()


def test_long_polling_falls_back_when_the_server_does_not(server: BundleServer,
                                                          engine: EmbeddedEngine,
                                                          keys: dict[str, tuple[bytes, bytes]]
                                                          ) -> None:
    service = open_service(server.url, activate=engine.reload, key=key(keys),
                            polling=Polling(1, 2, long_polling_timeout=5))
    assert 1 <= service.poll() <= 2   # answered application/gzip: periodic polling
    service.poll()
    assert server.requests[-1].headers["prefer"] == "modes=snapshot,delta"
    assert LONG_POLL_TYPE not in server.requests[-1].headers.get("accept", "")


def test_a_new_revision_activates_while_calls_run(server: BundleServer, seed: Bundle,
                                                  keys: dict[str, tuple[bytes, bytes]]) -> None:
    with EmbeddedEngine(build_bundle({}, revision=""), pool_size=2) as engine:
        service = open_service(server.url, activate=engine.reload, key=key(keys))
        service.poll()
        seen: set[str] = set()
        errors: list[BaseException] = []
        stop = threading.Event()

        def caller() -> None:
            while not stop.is_set():
                try:
                    seen.add(decide(engine))
                except BaseException as error:  # noqa: BLE001 - collected for the assert
                    errors.append(error)

        threads = [threading.Thread(target=caller) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        newer = sign_bundle(build_bundle({"veto/decision.rego": _ALLOW_ALL}, revision="r4"),
                            key=keys["veto"][0], key_id="veto")
        server.publish(to_tar_gz(newer))
        service.poll()
        time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join()
        assert errors == []
        assert seen == {"deny", "allow"}
        assert decide(engine) == "allow"


def test_veto_with_a_bundle_url(server: BundleServer, tmp_path: Path, public: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETO_BUNDLE_KEY", str(public))
    monkeypatch.setenv("VETO_BUNDLE_KEY_ID", "veto")
    monkeypatch.setenv("VETO_BUNDLE_PERSIST_DIR", str(tmp_path / "persist"))
    with Veto(bundle_url=server.url, home=tmp_path / "home", records=False,
              spans=False) as v:
        assert v.guard("execute_sql", DROP, PROD).decision == "deny"
        assert v.bundle_service is not None
        assert v.bundle_service.status().active_revision
    assert (tmp_path / "persist" / "bundles" / "veto" / "bundle.tar.gz").is_file()


def test_veto_with_a_bundle_url_that_is_down_denies(tmp_path: Path) -> None:
    with Veto(bundle_url="http://127.0.0.1:9/veto.tar.gz", home=tmp_path / "home",
              records=False, spans=False) as v:
        decision = v.guard("send_email", {"to": "a@example.com"})
    assert decision.decision == "deny"
    assert decision.cause == "policy_not_loaded"


def test_backoff_is_opas() -> None:
    assert backoff(0, 120) == 0
    assert all(0.1 * 1.6 ** 3 * 0.8 <= backoff(3, 120) <= 0.1 * 1.6 ** 3 * 1.2
               for _ in range(50))
    assert all(backoff(40, 120) <= 120 * 1.2 for _ in range(50))


def test_load_bundle_without_a_key_reads_as_before(signed: Bundle, tmp_path: Path) -> None:
    assert load_bundle(write(signed, tmp_path), None).files == signed.files


_ALLOW_ALL = ('package veto\n\ndecision := {"decision": "allow", "rule": null, "reason": "ok",'
              ' "approvers": [], "matched": [], "errors": [], "policy": {}}\n')


def test_veto_reload_says_when_the_bundle_service_could_not_deliver(tmp_path: Path) -> None:
    with Veto(bundle_url="http://127.0.0.1:9/veto.tar.gz", home=tmp_path / "home",
              records=False, spans=False) as v:
        with pytest.raises(BundleError, match="the bundle service kept revision 'none'"):
            v.reload()
