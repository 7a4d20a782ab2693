"""Kubernetes manifest facts, and the limits that keep hostile YAML from hurting."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_opa.facts import FactSpec, compute
from veto_opa.facts import kubernetes
from veto_opa.facts.kubernetes import MAX_DEPTH, MAX_DOCUMENTS, MAX_NODES


@pytest.fixture(params=["libyaml", "python"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test with LibYAML (when PyYAML has it) and with the pure-Python loader."""
    if request.param == "python":
        monkeypatch.setattr(kubernetes, "_load_all", kubernetes._load_all_python)
    yield request.param


def manifest(text: object) -> dict:
    return compute({"m": FactSpec("kubernetes")}, {"m": text})["m"]


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: payments}
spec:
  template:
    spec:
      hostNetwork: true
      initContainers:
      - name: setup
        securityContext: {privileged: yes}
      containers:
      - name: app
        image: web:1
      volumes:
      - name: docker
        hostPath: {path: /var/run/docker.sock}
---
# a second document
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: agent-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: ServiceAccount, name: agent, namespace: ops}
- {kind: User, name: alice}
---
"""


def test_multi_document_yaml(loader: str) -> None:
    fact = manifest(DEPLOYMENT)
    assert fact["documents"] == 3          # the last, empty, document counts as read
    assert fact["kinds"] == ["Deployment", "ClusterRoleBinding"]
    assert fact["namespaces"] == ["payments"]
    assert fact["objects"][0] == {"kind": "Deployment", "name": "web",
                                  "namespace": "payments", "api_version": "apps/v1"}
    assert fact["privileged"] is True
    assert fact["privileged_containers"] == ["Deployment/web/setup"]
    assert fact["host_path"] is True
    assert fact["host_paths"] == ["/var/run/docker.sock"]
    assert fact["host_namespaces"] == ["Deployment/web: hostNetwork"]
    assert fact["bindings"] == [{
        "kind": "ClusterRoleBinding", "name": "agent-admin", "namespace": None,
        "role_kind": "ClusterRole", "role": "cluster-admin",
        "subjects": ["ServiceAccount:ops/agent", "User:alice"]}]


def test_json_list_and_stream() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "securityContext": {"privileged": True}}]}}
    listed = manifest(json.dumps({"kind": "List", "items": [pod, {"kind": "Service"}]}))
    assert listed["kinds"] == ["Pod", "Service"]
    assert listed["privileged_containers"] == ["Pod/p/c"]
    stream = manifest(json.dumps(pod) + "\n" + json.dumps({"kind": "Service"}))
    assert stream["kinds"] == ["Pod", "Service"]
    assert manifest(json.dumps([pod]))["kinds"] == ["Pod"]


def test_cronjob_and_custom_resources_are_searched() -> None:
    text = """\
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: c, securityContext: {privileged: true}}]
---
kind: Rollout
metadata: {name: r}
spec: {template: {spec: {hostPID: 1, containers: [{name: x}]}}}
"""
    fact = manifest(text)
    assert fact["privileged_containers"] == ["CronJob/nightly/c"]
    assert fact["host_namespaces"] == ["Rollout/r: hostPID"]


@pytest.mark.parametrize("value, privileged", [
    ("true", True), ("yes", True), ("on", True), ('"false"', True), ("1", True),
    ("false", False), ("no", False), ("null", False),
])
def test_privileged_fails_closed(value: str, privileged: bool) -> None:
    text = ("kind: Pod\nspec:\n  containers:\n"
            f"  - {{name: c, securityContext: {{privileged: {value}}}}}\n")
    assert manifest(text)["privileged"] is privileged


def test_timestamps_stay_strings() -> None:
    assert manifest("kind: ConfigMap\nmetadata: {name: 2024-01-01}\n")["objects"][0]["name"] == \
        "2024-01-01"


# -- hostile input ------------------------------------------------------------------------

BILLION_LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]"
       for i in range(8)]
    + ["kind: Pod"])


@pytest.mark.parametrize("text, error", [
    (BILLION_LAUGHS, "YAML aliases (*name) are not accepted in manifests"),
    ("base: &b {privileged: true}\nkind: Pod\nspec: {<<: *b}\n",
     "YAML aliases (*name) are not accepted in manifests"),
    ("kind: Pod\nspec: {<<: {privileged: true}}\n",
     "YAML merge keys (<<) are not accepted in manifests"),
    ("kind: Pod\nkind: Deployment\n", "duplicate key 'kind' at line 2"),
    ('{"kind": "Pod", "kind": "Deployment"}', "duplicate key 'kind'"),
    ("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH, f"the manifest nests more than {MAX_DEPTH} "
                                                 "levels deep"),
    ("a:\n" + "".join("  " * i + "- \n" for i in range(1, MAX_DEPTH + 3)),
     f"the manifest nests more than {MAX_DEPTH} levels deep"),
    ("kind: [unclosed\n", None),
    ("kind: Pod\x00\n", None),
    ("- 1\n- 2\n", "a manifest document must be an object, found a list"),
    ("kind: Pod\nmetadata: {name: [a]}\n", "metadata.name must be a string, found a list"),
    ('{"kind": NaN}', "NaN is not JSON"),
    ("{kind: Pod}", None),
    ("!!python/object:os.system {}", None),
])
def test_hostile(text: str, error: str | None, loader: str) -> None:
    started = time.perf_counter()
    fact = manifest(text)
    assert time.perf_counter() - started < 2
    assert "error" in fact, fact
    if error is not None:
        assert fact["error"] == error


def test_yaml_errors_say_where(loader: str) -> None:
    error = manifest("kind: [unclosed\n")["error"]
    assert error.startswith("the manifest is not valid YAML: ")
    assert error.endswith(" at line 2, column 1")


def test_deep_json_is_an_error_not_a_crash() -> None:
    fact = manifest("[" * 100_000 + "]" * 100_000)
    assert fact["error"] == "the manifest nests too deeply"


def test_too_many_nodes(loader: str) -> None:
    text = "kind: ConfigMap\ndata: [" + "1," * MAX_NODES + "]\n"
    assert manifest(text)["error"] == f"the manifest has more than {MAX_NODES} YAML nodes"


def test_too_many_objects() -> None:
    text = "---\n".join("kind: Pod\n" for _ in range(MAX_DOCUMENTS + 1))
    assert manifest(text)["error"] == f"the manifest has more than {MAX_DOCUMENTS} objects"


def test_not_utf8_like_text() -> None:
    assert manifest("kind: \ud800")["error"] == (
        "args.m is not valid Unicode text (a lone surrogate)")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=120))
def test_any_text_is_a_fact_or_an_error(text: str) -> None:
    fact = manifest(text)
    assert "parser" in fact
    assert ("error" in fact) != ("kinds" in fact)
