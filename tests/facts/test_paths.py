"""Path facts: POSIX normalisation against a root, segments, prefixes, case folding."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_opa.facts import FactSpec, compute
from veto_opa.facts.paths import MAX_CHARS


def path(text: object, root: str = "/") -> dict:
    return compute({"p": FactSpec("path", {"root": root})}, {"p": text})["p"]


@pytest.mark.parametrize("text, normalized", [
    # Issue 13's evasions of "/secrets/root": all of them are that path.
    ("/secrets/./root/token", "/secrets/root/token"),
    ("/secrets//root", "/secrets/root"),
    ("/secrets/app/../root", "/secrets/root"),
    ("secrets/root/token", "/secrets/root/token"),
    ("//secrets/root", "/secrets/root"),
    ("/secrets/root/", "/secrets/root"),
    ("/../../secrets/root", "/secrets/root"),
    ("./secrets/x/y/../../root", "/secrets/root"),
    # Not under /secrets/root, however it starts.
    ("/secrets/rootless-app/key", "/secrets/rootless-app/key"),
    ("/secrets/root/../app", "/secrets/app"),
    ("/", "/"),
    (".", "/"),
])
def test_normalized(text: str, normalized: str) -> None:
    assert path(text)["normalized"] == normalized


def test_prefixes_answer_under() -> None:
    assert "/secrets/root" in path("/secrets/app/../root/token")["prefixes"]
    assert "/secrets/root" not in path("/secrets/rootless-app/key")["prefixes"]


def test_relative_paths_resolve_against_the_root() -> None:
    fact = path("../../etc/passwd", root="/srv/app/data")
    assert fact["normalized"] == "/srv/etc/passwd"
    assert fact["outside_root"] is True
    assert fact["absolute"] is False
    inside = path("reports/q1.csv", root="/srv/app/data")
    assert inside["normalized"] == "/srv/app/data/reports/q1.csv"
    assert inside["outside_root"] is False
    assert path("/etc/passwd", root="/srv/app")["outside_root"] is True


def test_folded() -> None:
    fact = path("/Secrets/ROOT/Token")
    assert fact["normalized"] == "/Secrets/ROOT/Token"
    assert fact["folded"] == "/secrets/root/token"
    assert fact["folded_segments"] == ["secrets", "root", "token"]
    assert "/secrets/root" in fact["folded_prefixes"]
    assert path("/STRASSE/Maße")["folded"] == "/strasse/masse"


def test_backslash_is_a_character() -> None:
    assert path("/secrets\\root")["segments"] == ["secrets\\root"]


@pytest.mark.parametrize("value, error", [
    ("", "the path is empty"),
    ("/secrets/root\x00/../app", "the path contains a NUL character"),
    ("/secrets/\udcff", "args.p is not valid Unicode text (a lone surrogate)"),
    ("/" + "a" * MAX_CHARS, f"args.p is {MAX_CHARS + 1} characters long, over the {MAX_CHARS} "
                            "the path parser reads"),
    (["/secrets/root"], "args.p is not a string (found array)"),
])
def test_errors(value: object, error: str) -> None:
    assert path(value)["error"] == error


def test_deep_paths_are_fine() -> None:
    assert path("/a" * 2000)["segments"] == ["a"] * 2000
    assert path("/.." * 1000 + "/x")["normalized"] == "/x"


_SEGMENT = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
                   min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_SEGMENT, st.sampled_from(["", ".", ".."])), min_size=1,
                max_size=12))
def test_agrees_with_posixpath(segments: list[str]) -> None:
    text = "/" + "/".join(segments)
    expected = posixpath.normpath(text)
    if expected.startswith("//"):
        expected = expected[1:]        # POSIX leaves "//" to the system; Linux reads "/"
    assert path(text)["normalized"] == expected
