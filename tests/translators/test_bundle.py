"""Bundles: reproducible archives, round trips, the embedded engine, manifest checks, signatures."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from opa_bindings import OpaEngine

from veto_opa.errors import BundleError, SignatureError
from veto_opa.translators import bundle as bundle_module
from veto_opa.translators.bundle import (
    Bundle,
    build_bundle,
    bundle_digest,
    go_json,
    load_into_engine,
    read_bundle,
    sign_bundle,
    to_tar_gz,
    verify_bundle,
    write_directory,
    write_tar_gz,
)

MODULES = {
    "veto/decision.rego": (
        "package veto\n\nimport data.veto.lib\n\nx := lib.double(input.n) if input.n > 0\n"),
    "veto/lib/math.rego": "package veto.lib\n\ndouble(n) := n * 2\n",
}
DATA = {"veto/config": {"limit": 3, "names": ["a", "b"]}}

BUILD_SCRIPT = """
import sys
from veto_opa.translators.bundle import build_bundle, to_tar_gz
modules = {"veto/b.rego": "package veto.b\\n\\ny := 2\\n",
           "veto/a.rego": "package veto\\n\\nx := 1\\n"}
bundle = build_bundle(modules, revision="r", metadata={"z": 1, "a": [1.5]})
sys.stdout.buffer.write(to_tar_gz(bundle))
"""


def make_bundle(**overrides: object) -> Bundle:
    arguments: dict = {"revision": "sha256:abc", "metadata": {"sources": ["policies.yaml"]},
                       "data": DATA, **overrides}
    return build_bundle(arguments.pop("modules", MODULES), **arguments)


def tar_gz(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """A hand-made archive, for the shapes build_bundle never writes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info, data in entries:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


# -- reproducibility -----------------------------------------------------------------------------

def test_two_builds_give_byte_identical_archives() -> None:
    assert to_tar_gz(make_bundle()) == to_tar_gz(make_bundle())
    assert bundle_digest(make_bundle()) == hashlib.sha256(to_tar_gz(make_bundle())).hexdigest()


def test_archive_bytes_are_the_same_in_another_process() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "4242"}  # a different str hash order than ours
    other = subprocess.run([sys.executable, "-c", BUILD_SCRIPT], env=env, check=True,
                           capture_output=True).stdout
    modules = {"veto/a.rego": "package veto\n\nx := 1\n",
               "veto/b.rego": "package veto.b\n\ny := 2\n"}
    ours = to_tar_gz(build_bundle(modules, revision="r", metadata={"a": [1.5], "z": 1}))
    assert other == ours


def test_changing_one_byte_of_a_module_changes_the_digest() -> None:
    changed = dict(MODULES)
    changed["veto/lib/math.rego"] = changed["veto/lib/math.rego"].replace("2", "3")
    assert bundle_digest(make_bundle(modules=changed)) != bundle_digest(make_bundle())


def test_archive_entries_are_sorted_regular_files_with_fixed_metadata() -> None:
    archive = to_tar_gz(make_bundle())
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "/.manifest", "/veto/config/data.json", "/veto/decision.rego", "/veto/lib/math.rego"]
    for m in members:
        assert (m.type, m.mode, m.mtime, m.uid, m.gid, m.uname, m.gname) == (
            tarfile.REGTYPE, 0o644, 0, 0, 0, "", "")
    assert archive[:3] == b"\x1f\x8b\x08"
    assert archive[3] & 0x08 == 0, "gzip header must not carry a file name"
    assert archive[4:8] == b"\0\0\0\0", "gzip header mtime must be 0"


def test_manifest_is_canonical_json() -> None:
    manifest = make_bundle(metadata={"z": 1, "a": "é"}).files[".manifest"]
    assert manifest == ('{"metadata":{"a":"é","z":1},"rego_version":1,'
                        '"revision":"sha256:abc","roots":["veto"]}\n').encode()
    assert make_bundle().revision == "sha256:abc"


# -- round trips ---------------------------------------------------------------------------------

def test_tar_gz_round_trip(tmp_path) -> None:
    original = sign_bundle(make_bundle(), key="s" * 32, algorithm="HS256", key_id="k")
    write_tar_gz(original, tmp_path / "bundle.tar.gz")
    again = read_bundle(tmp_path / "bundle.tar.gz")
    assert dict(again.files) == dict(original.files)
    assert again == original


def test_directory_round_trip(tmp_path) -> None:
    original = make_bundle()
    write_directory(original, tmp_path / "out")
    on_disk = sorted(p.relative_to(tmp_path / "out").as_posix()
                     for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert on_disk == sorted(original.files)
    assert read_bundle(tmp_path / "out") == original


def test_write_directory_replaces_a_previous_bundle_without_stale_files(tmp_path) -> None:
    write_directory(make_bundle(), tmp_path)
    smaller = make_bundle(modules={"veto/decision.rego": "package veto\n\nx := 1\n"}, data={})
    write_directory(smaller, tmp_path)
    assert read_bundle(tmp_path) == smaller
    assert not (tmp_path / "veto" / "lib").exists()


def test_write_directory_refuses_a_directory_that_is_not_a_bundle(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match=r"expected an empty directory or a previous bundle"):
        write_directory(make_bundle(), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_read_bundle_accepts_gnu_tar_layout_with_dot_slash_and_directories(tmp_path) -> None:
    manifest = b'{"revision":"r","roots":["veto"]}'
    (tmp_path / "b.tar.gz").write_bytes(tar_gz([
        (member("./", tarfile.DIRTYPE), b""), (member("./.manifest"), manifest),
        (member("./veto/", tarfile.DIRTYPE), b""), (member("./veto/a.rego"), b"package veto\n")]))
    assert dict(read_bundle(tmp_path / "b.tar.gz").files) == {
        ".manifest": manifest, "veto/a.rego": b"package veto\n"}


# -- the embedded engine -------------------------------------------------------------------------

def test_archive_loads_into_the_embedded_engine_and_evaluates(tmp_path) -> None:
    write_tar_gz(make_bundle(), tmp_path / "bundle.tar.gz")
    engine = OpaEngine()
    try:
        load_into_engine(read_bundle(tmp_path / "bundle.tar.gz"), engine)
        assert engine.eval_document("veto.x", {"n": 21}) == 42
        assert engine.eval_document("veto.config.limit") == 3
    finally:
        engine.close()


def test_test_modules_are_loaded_only_when_asked_for() -> None:
    modules = {**MODULES, "veto/x_test.rego": "package veto.x_test\n\ntest_x if true\n"}
    bundle = make_bundle(modules=modules)
    assert "veto/x_test.rego" in bundle.files           # the bundle keeps them, as opa build
    for tests, expected in ((False, None), (True, True)):
        engine = OpaEngine()
        try:
            load_into_engine(bundle, engine, tests=tests)
            assert engine.eval_document("veto.x", {"n": 1}) == 2
            assert engine.eval_query("x := data.veto.x_test.test_x") == (
                [{"x": True}] if expected else [])
        finally:
            engine.close()


def test_engine_errors_become_bundle_errors() -> None:
    broken = make_bundle(modules={"veto/bad.rego": "package veto\n\nx := \n"})
    engine = OpaEngine()
    try:
        with pytest.raises(BundleError, match=r"engine rejected the bundle: (?s:.*)"
                                              r"veto/bad.rego:4: rego_parse_error"):
            load_into_engine(broken, engine)
        legacy = Bundle({".manifest": b'{"rego_version": 0}', "a.rego": b"package a\n"})
        with pytest.raises(BundleError, match=r"expected rego_version 1, found 0"):
            load_into_engine(legacy, engine)
    finally:
        engine.close()


def test_data_documents_use_the_directory_as_path() -> None:
    bundle = Bundle({"data.json": b'{"veto": {"top": true}}', "veto/a/b/data.json": b"[1]",
                     "veto/c/data.yaml": b"when: 2026-01-01\nn: 1.5\n", "veto/other.json": b"{}"})
    assert bundle.data_documents() == [
        ("", {"veto": {"top": True}}), ("veto.a.b", [1]),
        ("veto.c", {"when": "2026-01-01", "n": 1.5})]


# -- manifest checks (what OPA rejects) ----------------------------------------------------------

@pytest.mark.parametrize(("overrides", "message"), [
    ({"modules": {"veto/x.rego": "# comment\npackage other.x\n"}},
     r"veto/x.rego: expected a package under the roots \['veto'\], found 'package other.x'"),
    ({"roots": ["veto", "veto/lib"]},
     r"expected roots that do not overlap, found 'veto' and 'veto/lib'"),
    ({"roots": ["veto", "veto"]}, r"do not overlap"),
    ({"roots": "veto"}, r"expected a sequence of roots"),
    ({"modules": {"veto/x.rego": "x := 1\n"}}, r"expected a 'package' declaration"),
    ({"modules": {"veto/x.txt": "package veto\n"}}, r"expected a '.rego' path"),
    ({"modules": {"../x.rego": "package veto\n"}}, r"found a '..' part"),
    ({"data": {"other": {"a": 1}}},
     r"expected data under the roots \['veto'\], found data at '/other'"),
    ({"data": {"": {"veto": {"a": 1}, "other": 2}}}, r"found data at '/other'"),
])
def test_build_rejects_what_opa_rejects(overrides: dict, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        make_bundle(**overrides)


def test_root_level_data_under_a_root_and_bracketed_packages_are_accepted() -> None:
    bundle = make_bundle(data={"": {"veto": {"a": 1}}},
                         modules={"veto/x.rego": 'package veto["x-y"].z\n\nq := 1\n'})
    assert bundle.data_documents() == [("", {"veto": {"a": 1}})]


# -- read_bundle rejects unsafe archives ---------------------------------------------------------

@pytest.mark.parametrize(("entry", "message"), [
    (member("veto/../../etc/passwd"), r"expected a path inside the bundle, found a '..' part"),
    (member("//etc/passwd"), r"expected a bundle-relative path, found an absolute path"),
    (member("veto/link.rego", tarfile.SYMTYPE, "/etc/passwd"),
     r"expected a regular file, found a symbolic link"),
    (member("veto/hard.rego", tarfile.LNKTYPE, ".manifest"), r"found a hard link"),
    (member("veto/fifo", tarfile.FIFOTYPE), r"found a FIFO"),
    (member("veto/signatures.json"), r"OPA reads any file ending in 'signatures.json'"),
])
def test_read_bundle_rejects_unsafe_members(tmp_path, entry: tarfile.TarInfo, message: str) -> None:
    (tmp_path / "b.tar.gz").write_bytes(tar_gz([(member(".manifest"), b"{}"), (entry, b"")]))
    with pytest.raises(BundleError, match=message):
        read_bundle(tmp_path / "b.tar.gz")


def test_read_bundle_rejects_oversize_members(tmp_path, monkeypatch) -> None:
    write_tar_gz(make_bundle(), tmp_path / "b.tar.gz")
    monkeypatch.setattr(bundle_module, "MAX_FILE_SIZE", 40)
    with pytest.raises(BundleError, match=r"^/\.manifest: expected at most 40 bytes, found \d+$"):
        read_bundle(tmp_path / "b.tar.gz")
    write_directory(make_bundle(), tmp_path / "dir")
    with pytest.raises(BundleError, match=r"^\.manifest: expected at most 40 bytes, found \d+$"):
        read_bundle(tmp_path / "dir")


@pytest.mark.parametrize("content", [b"not gzip at all", b"\x1f\x8b\x08\x00garbage", b""])
def test_read_bundle_rejects_corrupt_archives(tmp_path, content: bytes) -> None:
    (tmp_path / "b.tar.gz").write_bytes(content)
    with pytest.raises(BundleError, match=r"b.tar.gz: expected a gzip-compressed tar archive"):
        read_bundle(tmp_path / "b.tar.gz")


def test_read_bundle_rejects_truncated_archives(tmp_path) -> None:
    (tmp_path / "b.tar.gz").write_bytes(to_tar_gz(make_bundle())[:-30])
    with pytest.raises(BundleError, match=r"expected a gzip-compressed tar archive"):
        read_bundle(tmp_path / "b.tar.gz")


def test_read_bundle_rejects_symlinks_in_directories_and_missing_paths(tmp_path) -> None:
    write_directory(make_bundle(), tmp_path / "b")
    (tmp_path / "b" / "veto" / "evil.rego").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match=r"veto/evil.rego: expected a regular file or "
                                          r"directory, found a symbolic link"):
        read_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match=r"expected a bundle archive or directory, found nothing"):
        read_bundle(tmp_path / "missing.tar.gz")


# -- signatures ----------------------------------------------------------------------------------

def _pem(private_key) -> tuple[bytes, bytes]:
    pem = serialization.Encoding.PEM
    private = private_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public = private_key.public_key().public_bytes(
        pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[bytes | str, bytes | str]]:
    """algorithm -> (signing key, verification key)."""
    rsa_pair = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    secret = "a shared secret of at least 32 bytes"
    return {"RS256": rsa_pair, "PS256": rsa_pair,
            "ES256": _pem(ec.generate_private_key(ec.SECP256R1())), "HS256": (secret, secret)}


def _payload(signed: Bundle) -> dict:
    token = json.loads(signed.files[".signatures.json"])["signatures"][0]
    return jwt.decode(token, options={"verify_signature": False})


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256", "HS256"])
def test_sign_then_verify(keys, algorithm: str) -> None:
    private, public = keys[algorithm]
    signed = sign_bundle(make_bundle(), key=private, algorithm=algorithm, key_id="veto",
                         scope="write")
    verify_bundle(signed, key=public, algorithm=algorithm, key_id="veto", scope="write")
    token = json.loads(signed.files[".signatures.json"])["signatures"]
    assert len(token) == 1
    assert jwt.get_unverified_header(token[0]) == {"alg": algorithm, "typ": "JWT", "kid": "veto"}
    claims = jwt.decode(token[0], public, algorithms=[algorithm])  # PyJWT agrees on the signature
    assert claims["scope"] == "write"


def test_payload_lists_every_file_with_its_sha256(keys) -> None:
    bundle = make_bundle()
    payload = _payload(sign_bundle(bundle, key=keys["RS256"][0], key_id="veto"))
    assert [f["name"] for f in payload["files"]] == sorted(bundle.files)
    for entry in payload["files"]:
        # Both structured files here are already canonical JSON plus a newline, so OPA's
        # canonical hash is the hash of the bytes without that newline.
        raw = bundle.files[entry["name"]]
        data = raw.rstrip(b"\n") if entry["name"].endswith((".manifest", "data.json")) else raw
        assert entry == {"name": entry["name"], "algorithm": "SHA-256",
                         "hash": hashlib.sha256(data).hexdigest()}


def test_structured_files_are_hashed_as_parsed_json(keys) -> None:
    private, public = keys["RS256"]
    signed = sign_bundle(make_bundle(), key=private, key_id="veto")
    files = dict(signed.files)
    manifest = json.loads(files[".manifest"])
    reformatted = json.dumps(dict(reversed(manifest.items())), indent=4)  # other order, spaces
    files[".manifest"] = reformatted.encode()
    verify_bundle(Bundle(files), key=public, key_id="veto")
    files[".manifest"] = files[".manifest"].replace(b"sha256:abc", b"sha256:abd")
    with pytest.raises(SignatureError, match=r"^\.manifest: digest mismatch"):
        verify_bundle(Bundle(files), key=public, key_id="veto")


@pytest.mark.parametrize(("raw", "canonical"), [
    # Go's decoder keeps numbers as json.Number, written back verbatim: 1.50 and 1E2 stay.
    (b'{"b": 1.50, "a": 1E2, "c": -0}', b'{"a":1E2,"b":1.50,"c":-0}'),
    # Invalid UTF-8 inside a string: one U+FFFD per bad byte (a truncated 3-byte sequence is two).
    (b'{"k": "\xe2\x82A\xff"}', b'{"k":"\xef\xbf\xbd\xef\xbf\xbdA\xef\xbf\xbd"}'),
    # A lone surrogate escape decodes to U+FFFD, which Go then writes as raw UTF-8.
    (b'\xef\xbb\xbf{"k": "\\ud800\\u0041<"}', b'{"k":"\xef\xbf\xbdA<"}'),
    # Not JSON, but YAML: util.Unmarshal falls back to YAML, then JSON with Go float formatting.
    (b"b: 1.0\na: [1e21, x]\n", b'{"a":[1e+21,"x"],"b":1}'),
])
def test_data_files_are_hashed_like_opa(keys, raw: bytes, canonical: bytes) -> None:
    payload = _payload(sign_bundle(Bundle({"veto/data.json": raw}), key=keys["HS256"][0],
                                   algorithm="HS256"))
    assert payload["files"] == [{"name": "veto/data.json", "algorithm": "SHA-256",
                                 "hash": hashlib.sha256(canonical).hexdigest()}]


def _tampered(bundle: Bundle, changes: dict[str, bytes | None]) -> Bundle:
    files = {**bundle.files, **changes}
    return Bundle({path: data for path, data in files.items() if data is not None})


@pytest.mark.parametrize(("changes", "message"), [
    ({"veto/decision.rego": MODULES["veto/decision.rego"].replace("> 0", "> 1").encode()},
     r"^veto/decision.rego: digest mismatch \(signed [0-9a-f]{64}, found [0-9a-f]{64}\)$"),
    ({"veto/extra.rego": b"package veto.extra\n"},
     r"^veto/extra.rego: file not included in the bundle signature$"),
    ({"veto/lib/math.rego": None},
     r"\['veto/lib/math.rego'\] specified in the bundle signature but not found"),
])
def test_verify_names_the_tampered_file(keys, changes: dict, message: str) -> None:
    private, public = keys["RS256"]
    signed = sign_bundle(make_bundle(), key=private, key_id="veto")
    with pytest.raises(SignatureError, match=message):
        verify_bundle(_tampered(signed, changes), key=public, key_id="veto")


def test_verify_rejects_a_wrong_key(keys) -> None:
    signed = sign_bundle(make_bundle(), key=keys["RS256"][0], key_id="veto")
    with pytest.raises(SignatureError, match=r"does not verify with the RS256 key"):
        verify_bundle(signed, key=keys["ES256"][1], key_id="veto")
    other = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))[1]
    with pytest.raises(SignatureError, match=r"Signature verification failed"):
        verify_bundle(signed, key=other, key_id="veto")
    hs = sign_bundle(make_bundle(), key=keys["HS256"][0], algorithm="HS256", key_id="veto")
    with pytest.raises(SignatureError, match=r"Signature verification failed"):
        verify_bundle(hs, key="another secret, also of 32 bytes", algorithm="HS256", key_id="veto")


@pytest.mark.parametrize(("signed_scope", "verify_scope"),
                         [("write", "read"), ("write", None), (None, "read")])
def test_verify_rejects_a_scope_mismatch(keys, signed_scope, verify_scope) -> None:
    signed = sign_bundle(make_bundle(), key=keys["RS256"][0], key_id="veto", scope=signed_scope)
    with pytest.raises(SignatureError, match=r"^scope mismatch"):
        verify_bundle(signed, key=keys["RS256"][1], key_id="veto", scope=verify_scope)


def test_verify_requires_a_signature_file_and_one_token(keys) -> None:
    with pytest.raises(SignatureError, match=r"expected a signed bundle, found no \.signatures"):
        verify_bundle(make_bundle(), key=keys["RS256"][1])
    signed = sign_bundle(make_bundle(), key=keys["RS256"][0], key_id="veto")
    token = json.loads(signed.files[".signatures.json"])["signatures"][0]
    for tokens in ([], [token, token]):
        twice = _tampered(signed, {".signatures.json": json.dumps({"signatures": tokens}).encode()})
        with pytest.raises(SignatureError, match=r"expected exactly one JWT"):
            verify_bundle(twice, key=keys["RS256"][1], key_id="veto")


def test_key_id_resolution_follows_opa(keys) -> None:
    private, public = keys["RS256"]
    anonymous = sign_bundle(make_bundle(), key=private)
    with pytest.raises(SignatureError, match=r"verification key ID is empty"):
        verify_bundle(anonymous, key=public)
    verify_bundle(anonymous, key=public, key_id="default")  # a configured id is enough, as in OPA
    verify_bundle(sign_bundle(make_bundle(), key=private, claims={"keyid": "old"}), key=public)


def test_sign_replaces_an_existing_signature_and_keeps_claims(keys) -> None:
    private, public = keys["RS256"]
    once = sign_bundle(make_bundle(), key=private, key_id="a", claims={"iss": "veto", "iat": 1})
    twice = sign_bundle(once, key=private, key_id="a", claims={"iss": "veto", "iat": 1})
    assert twice == once, "RS256 signing is deterministic and ignores the old signature"
    assert {k: v for k, v in _payload(twice).items() if k != "files"} == {"iss": "veto", "iat": 1}
    with pytest.raises(BundleError, match=r"expected claims without 'files'"):
        sign_bundle(once, key=private, claims={"files": []})
    with pytest.raises(BundleError, match=r"expected an algorithm in \[.*\], found .none.$"):
        sign_bundle(once, key=private, algorithm="none")


@pytest.mark.parametrize(("algorithm", "builtin"), [
    ("RS256", "io.jwt.verify_rs256"), ("PS256", "io.jwt.verify_ps256"),
    ("ES256", "io.jwt.verify_es256"), ("HS256", "io.jwt.verify_hs256")])
def test_opa_verifies_the_token_and_computes_the_same_digests(
        keys, algorithm: str, builtin: str) -> None:
    private, public = keys[algorithm]
    bundle = make_bundle()
    signed = sign_bundle(bundle, key=private, algorithm=algorithm, key_id="veto")
    token = json.loads(signed.files[".signatures.json"])["signatures"][0]
    query = f"""
        valid := {builtin}(input.token, input.key)
        [header, payload, _] := io.jwt.decode(input.token)
        signed := {{f.name: f.hash | some f in payload.files}}
        rego := {{name: crypto.sha256(src) | some name, src in input.modules}}
        manifest := crypto.sha256(json.marshal(json.unmarshal(input.manifest)))
    """
    engine = OpaEngine()
    try:
        [result] = engine.eval_query(query, {
            "token": token, "key": public if isinstance(public, str) else public.decode(),
            "modules": bundle.modules(), "manifest": bundle.files[".manifest"].decode()})
    finally:
        engine.close()
    assert result["valid"] is True
    assert result["header"] == {"alg": algorithm, "typ": "JWT", "kid": "veto"}
    assert {name: result["signed"][name] for name in MODULES} == result["rego"]
    # OPA's json.marshal is Go's encoder with sorted keys (this manifest has no <>& to HTML-escape).
    assert result["signed"][".manifest"] == result["manifest"]


# -- canonical JSON ------------------------------------------------------------------------------

# Expected bytes follow Go's encoding/json (Go >= 1.22) with SetEscapeHTML(false), as OPA's
# v1/bundle/hash.go uses it: sorted keys; \" \\ \b \f \n \r \t short escapes; other C0 controls
# as \u00xx in lowercase hex; DEL, "<>&" and non-ASCII raw UTF-8; U+2028/U+2029 escaped; floats
# as strconv 'f' with shortest digits, or 'e' below 1e-6 and from 1e21 with "e-07" cut to "e-7".
GO_ENCODED = [
    ({"b": 1, "a": {"d": [], "c": {}}}, b'{"a":{"c":{},"d":[]},"b":1}'),
    ({"é": 1, "z": 2, "Z": 3, "": 4}, '{"":4,"Z":3,"z":2,"é":1}'.encode()),
    # Keys sort by their raw bytes, not their escaped form: "\n" (0x0a) before "!" (0x21).
    ({"!": 1, "\n": 2, 'a"': 3, "a!": 4}, b'{"\\n":2,"!":1,"a!":4,"a\\"":3}'),
    ({"\ud800": 1, "\ud801": 2}, b'{"\xef\xbf\xbd":2}'),
    ("<>&", b'"<>&"'),
    ("\u2028\u2029", b'"\\u2028\\u2029"'),
    ("\x00\x01\x1f\x7f", b'"\\u0000\\u0001\\u001f\x7f"'),
    ("\b\f\n\r\t\"\\/", b'"\\b\\f\\n\\r\\t\\"\\\\/"'),
    ("é😀", "\"é😀\"".encode()),
    ("\ud800x", b'"\xef\xbf\xbdx"'),
    (0, b"0"), (-7, b"-7"), (2**64, b"18446744073709551616"), (-(10**30), b"-" + b"1" + b"0" * 30),
    (1.5, b"1.5"), (1.0, b"1"), (100.0, b"100"), (0.1, b"0.1"), (-0.0, b"-0"),
    (1e21, b"1e+21"), (1e20, b"100000000000000000000"), (123456789e12, b"123456789000000000000"),
    (1e-6, b"0.000001"), (1e-7, b"1e-7"), (1.25e-10, b"1.25e-10"), (-2.5e300, b"-2.5e+300"),
    (5e-324, b"5e-324"), (0.30000000000000004, b"0.30000000000000004"),
    (True, b"true"), (False, b"false"), (None, b"null"), ((1, "a"), b'[1,"a"]'),
]


@pytest.mark.parametrize(("value", "expected"), GO_ENCODED)
def test_canonical_json_matches_go(value: object, expected: bytes) -> None:
    assert go_json(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    (float("nan"), r"expected a finite number, found nan"),
    ([float("-inf")], r"expected a finite number, found -inf"),
    ({1: "a"}, r"expected a JSON value with string keys, found \{1: 'a'\}"),
    ({"a": {1, 2}}, r"found \{1, 2\}"),
    (b"x", r"found b'x'"),
])
def test_canonical_json_rejects_what_go_cannot_encode(value: object, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        go_json(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=25,
)


def same_json(expected: object, parsed: object) -> bool:
    """Equal, where a float may come back as the int its shortest digits spell (1e16 -> 10**16)."""
    if isinstance(expected, float):
        return float(parsed) == expected  # type: ignore[arg-type]
    if isinstance(expected, list):
        return len(expected) == len(parsed) and all(  # type: ignore[arg-type]
            map(same_json, expected, parsed))  # type: ignore[arg-type]
    if isinstance(expected, dict):
        return expected.keys() == parsed.keys() and all(  # type: ignore[union-attr]
            same_json(v, parsed[k]) for k, v in expected.items())  # type: ignore[index]
    return type(expected) is type(parsed) and expected == parsed


@given(json_values)
def test_canonical_json_round_trips(value: object) -> None:
    assert same_json(value, json.loads(go_json(value)))


@given(st.dictionaries(st.text(), json_values, max_size=6), st.randoms(use_true_random=False))
def test_canonical_json_ignores_insertion_order(value: dict, random) -> None:
    items = list(value.items())
    random.shuffle(items)
    assert go_json(dict(items)) == go_json(value)


@pytest.fixture(scope="module")
def engine():
    engine = OpaEngine()
    yield engine
    engine.close()


no_html = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="<>&"))


@settings(max_examples=200)
@given(no_html | st.dictionaries(no_html, no_html | st.integers() | st.booleans(), max_size=8))
def test_canonical_json_matches_opas_own_go_encoder(engine, value: object) -> None:
    # OPA's json.marshal is Go's encoding/json (keys sorted, HTML escaping on: so no "<>&" here).
    [result] = engine.eval_query("x := json.marshal(input.v)", {"v": value})
    assert go_json(value) == result["x"].encode()
