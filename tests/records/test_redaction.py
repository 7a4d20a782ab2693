"""Redaction paths, keyed digests, prepare_arguments, and their properties."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_opa.records import arguments_digest, canonical_json, prepare_arguments, redact
from veto_opa.records.redaction import HMAC_PREFIX, hmac_digest
from veto_opa.translators import ANY, format_path, parse_redact_path

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def digest(value: Any, key: bytes = KEY) -> str:
    mac = hmac.new(key, canonical_json(value).encode(), hashlib.sha256).hexdigest()
    return HMAC_PREFIX + mac


# -- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("args.password", ("password",)),
        ("args.credentials.token", ("credentials", "token")),
        ("args.items[*].secret", ("items", ANY, "secret")),
        ("args.*.token", (ANY, "token")),
        ("args.items[0]", ("items", 0)),
        ("args.items[12].x", ("items", 12, "x")),
        ('args["content-type"]', ("content-type",)),
        ('args.headers["X-Api-Key"]', ("headers", "X-Api-Key")),
        ('args["a.b"]["\\u00e9"]', ("a.b", "é")),
        ("args[*]", (ANY,)),
        ("args._private2", ("_private2",)),
    ],
)
def test_parse_redact_path(text: str, segments: tuple) -> None:
    assert parse_redact_path(text) == segments


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("password", "must start with 'args.'"),
        ("context.token", "must start with 'args.'"),
        ("arguments.x", "must start with 'args.'"),
        ("args", "must name a field under args"),
        ("args.", "expected a field name or '*' after '.' at offset 5, found end of path"),
        ("args..x", "expected a field name or '*' after '.' at offset 5, found '.'"),
        ("args.9lives", "expected a field name or '*' after '.' at offset 5, found '9'"),
        ("args.a b", "expected '.' or '[' at offset 6, found ' '"),
        ("args.items[", "expected '[*]', '[N]' or '[\"key\"]' at offset 10"),
        ("args.items[-1]", "expected '[*]', '[N]' or '[\"key\"]' at offset 10"),
        ("args.items[01]", "expected '[*]', '[N]' or '[\"key\"]' at offset 10"),
        ("args.items[x]", "expected '[*]', '[N]' or '[\"key\"]' at offset 10"),
        ('args["open', "unterminated or invalid quoted key"),
        ('args["a"', "expected ']' after the quoted key"),
        ("args.a*", "expected '.' or '[' at offset 6, found '*'"),
    ],
)
def test_parse_redact_path_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_redact_path(text)
    assert message in str(caught.value)
    assert repr(text) in str(caught.value)


def test_parse_redact_path_rejects_non_text() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_redact_path(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "segments",
    [("password",), ("items", 0, "secret"), ("content-type",), ("a.b", 3), ("é",), ("x y",)],
)
def test_format_path_round_trips(segments: tuple) -> None:
    assert parse_redact_path(format_path(segments)) == segments


# -- redact ----------------------------------------------------------------------------------


ARGUMENTS = {
    "user": "alice",
    "password": "hunter2",
    "credentials": {"token": "t0k3n", "scope": "read"},
    "items": [{"secret": 1, "name": "a"}, {"name": "b"}, {"secret": [1, 2], "name": "c"}],
    "services": {"db": {"token": "x"}, "cache": {"ttl": 5}, "queue": {"token": None}},
    "headers": {"X-Api-Key": "k"},
}


@pytest.mark.parametrize(
    ("paths", "erased"),
    [
        (["args.password"], ["args.password"]),
        (["args.credentials.token"], ["args.credentials.token"]),
        (["args.items[*].secret"], ["args.items[0].secret", "args.items[2].secret"]),
        (["args.*.token"], ["args.credentials.token"]),
        (["args.services.*.token"], ["args.services.db.token", "args.services.queue.token"]),
        (["args.items[1]"], ["args.items[1]"]),
        (["args.items.*.name"], ["args.items[0].name", "args.items[1].name", "args.items[2].name"]),
        (['args.headers["X-Api-Key"]'], ['args.headers["X-Api-Key"]']),
        (["args.missing", "args.items[9]", "args.user.x"], []),
        # an ancestor hides its descendants: only the outer value is digested
        (["args.credentials.token", "args.credentials"], ["args.credentials"]),
        (["args.password", "args.password"], ["args.password"]),
    ],
)
def test_redact_erases_present_paths(paths: list[str], erased: list[str]) -> None:
    original = copy.deepcopy(ARGUMENTS)
    redacted, names = redact(ARGUMENTS, paths, KEY)

    assert names == erased
    assert original == ARGUMENTS  # the input is not modified
    expected = copy.deepcopy(ARGUMENTS)
    for name in erased:
        segments = parse_redact_path(name)
        parent = expected
        for segment in segments[:-1]:
            parent = parent[segment]
        parent[segments[-1]] = digest(parent[segments[-1]])
    assert redacted == expected


def test_redact_returns_a_copy_even_when_nothing_matches() -> None:
    redacted, erased = redact(ARGUMENTS, ["args.nothing"], KEY)
    assert erased == []
    assert redacted == ARGUMENTS
    redacted["items"][0]["name"] = "changed"
    assert ARGUMENTS["items"][0]["name"] == "a"


def test_digest_is_keyed_and_covers_the_value_type() -> None:
    assert hmac_digest("1", KEY) != hmac_digest(1, KEY)
    assert hmac_digest("hunter2", KEY) != hmac_digest("hunter2", OTHER_KEY)
    assert hmac_digest({"b": 1, "a": 2}, KEY) == hmac_digest({"a": 2, "b": 1}, KEY)
    assert hmac_digest("hunter2", KEY) != "sha256:" + hashlib.sha256(b'"hunter2"').hexdigest()


def test_redact_accepts_parsed_paths() -> None:
    assert redact(ARGUMENTS, [("password",)], KEY) == redact(ARGUMENTS, ["args.password"], KEY)


@pytest.mark.parametrize("key", [b"", b"short", "a text key of enough length"])
def test_redact_needs_a_real_key(key: Any) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        redact(ARGUMENTS, ["args.password"], key)


def test_redact_reports_bad_paths() -> None:
    with pytest.raises(ValueError, match=r"must start with 'args\.'"):
        redact(ARGUMENTS, ["password"], KEY)


# -- prepare_arguments -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ['{"x": 1e400}', '{"x": NaN}', "[1, 2]", "{not json"])
def test_digest_of_text_without_a_canonical_object_is_of_the_text(text: str) -> None:
    # 1e400 parses (to infinity) but has no canonical JSON; the others are not JSON objects.
    assert arguments_digest(text) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_prepare_arguments_from_json_text() -> None:
    text = '{"password": "hunter2",  "user": "alice"}'
    prepared = prepare_arguments(text, ["args.password"], KEY)

    assert prepared.arguments == {"password": digest("hunter2"), "user": "alice"}
    assert prepared.erased == ["args.password"]
    # the digest is of the canonical original, whatever the spacing of the text
    assert prepared.arguments_sha256 == arguments_digest({"user": "alice", "password": "hunter2"})
    assert (
        prepared.arguments_sha256
        == "sha256:" + hashlib.sha256(b'{"password":"hunter2","user":"alice"}').hexdigest()
    )
    assert prepared.fields() == {
        "arguments": prepared.arguments,
        "arguments_sha256": prepared.arguments_sha256,
        "erased": ["args.password"],
    }


def test_prepare_arguments_from_an_object() -> None:
    prepared = prepare_arguments({"user": "é"}, ["args.password"], KEY)
    assert prepared.arguments == {"user": "é"}
    assert prepared.erased == []
    assert (
        prepared.arguments_sha256 == "sha256:" + hashlib.sha256('{"user":"é"}'.encode()).hexdigest()
    )


@pytest.mark.parametrize(
    ("raw", "hashed"),
    [
        ("{not json", b"{not json"),
        ("[1, 2]", b"[1, 2]"),
        ('"just text"', b'"just text"'),
        ("", b""),
        (b"\xff\xfe", b"\xff\xfe"),
        ([1, 2], b"[1,2]"),
        (None, b"null"),
    ],
)
def test_prepare_arguments_that_are_not_an_object(raw: Any, hashed: bytes) -> None:
    prepared = prepare_arguments(raw, ["args.password"], KEY)
    assert prepared.arguments is None
    assert prepared.erased == []
    assert prepared.arguments_sha256 == "sha256:" + hashlib.sha256(hashed).hexdigest()


# -- properties ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
# A concrete place for the secret: keys and list indexes below args.
places = st.lists(names | st.integers(min_value=0, max_value=3), min_size=1, max_size=4).filter(
    lambda p: isinstance(p[0], str)
)


def place_value(document: dict, place: list, value: Any) -> dict:
    """``document`` with ``value`` put at ``place``, creating the containers on the way."""
    document = copy.deepcopy(document)
    node: Any = document
    for segment, following in zip(place, [*place[1:], None], strict=True):
        if isinstance(segment, int) != isinstance(node, list):
            raise ValueError("unplaceable")
        if isinstance(node, list):
            node.extend([None] * (segment + 1 - len(node)))
            current = node[segment]
        else:
            current = node.get(segment)
        if following is None:
            node[segment] = value
        elif not isinstance(current, list if isinstance(following, int) else dict):
            node[segment] = [] if isinstance(following, int) else {}
        node = node[segment]
    return document


def lookup(document: Any, place: list) -> Any:
    for segment in place:
        document = document[segment]
    return document


def path_text(place: list) -> str:
    return format_path(place)


@settings(max_examples=300, deadline=None)
@given(
    base=st.dictionaries(names, json_values, max_size=5),
    place=places,
    secret=json_values,
    other_key=st.binary(min_size=16, max_size=32),
)
def test_redacted_output_never_contains_the_secret(
    base: dict, place: list, secret: Any, other_key: bytes
) -> None:
    try:
        arguments = place_value(base, place, secret)
    except ValueError:
        return
    # what the output keeps outside the redacted place, to tell a leak from a coincidence
    untouched = place_value(arguments, place, "\x00removed\x00")

    redacted, erased = redact(arguments, [path_text(place)], KEY)

    assert erased == [path_text(place)]
    token = lookup(redacted, place)
    assert token == digest(secret)
    assert token != secret
    assert redacted == place_value(untouched, place, token)  # everything else is preserved
    secret_text = canonical_json(secret)
    if secret_text not in canonical_json(untouched) and secret_text not in json.dumps(token):
        assert secret_text not in canonical_json(redacted)
    # deterministic for one key, different under another
    assert redact(arguments, [path_text(place)], KEY) == (redacted, erased)
    if other_key != KEY:
        assert redact(arguments, [path_text(place)], other_key)[0] != redacted


@settings(max_examples=200, deadline=None)
@given(
    arguments=st.dictionaries(names, json_values, max_size=5), paths=st.lists(places, max_size=3)
)
def test_redact_never_mutates_and_only_touches_erased_paths(
    arguments: dict, paths: list[list]
) -> None:
    before = copy.deepcopy(arguments)
    wildcard_paths = [path_text(p) for p in paths] + ["args.*.secret", "args.items[*]"]

    redacted, erased = redact(arguments, wildcard_paths, KEY)

    assert arguments == before
    restored = redacted
    for name in erased:
        segments = list(parse_redact_path(name))
        assert lookup(redacted, segments) == digest(lookup(arguments, segments))
        restored = place_value(restored, segments, lookup(arguments, segments))
    assert restored == arguments
