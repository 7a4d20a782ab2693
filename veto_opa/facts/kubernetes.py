"""Kubernetes manifest facts: what a multi-document YAML or JSON manifest would create.

    facts("kind: Pod\\nmetadata: {name: p, namespace: ops}\\nspec:\\n  containers:\\n"
          "  - {name: c, securityContext: {privileged: true}}\\n")
    # {"kinds": ["Pod"], "namespaces": ["ops"], "privileged": true,
    #  "privileged_containers": ["Pod/p/c"], ...}

Text whose first non-blank character is ``{`` or ``[`` is JSON (a stream of values, as
``kubectl`` reads it); anything else is YAML, read with PyYAML's safe loader and these limits,
each a fact error when exceeded (checked on the parser's events before anything is built,
then loaded with LibYAML when PyYAML has it): no aliases (``*name``; an alias bomb expands a
few lines into billions of nodes) and no merge keys (``<<``), at most :data:`MAX_DEPTH` levels
of nesting, :data:`MAX_NODES` nodes and :data:`MAX_DOCUMENTS` objects, no duplicate keys
(kubectl and PyYAML would disagree on which one wins), timestamps read as strings. A
``kind: List`` is expanded into its items.

Pod specs are found wherever they are (any mapping with a ``containers`` list: a Pod, the
template of a Deployment, a CronJob's job template, a custom resource), and so are
``hostPath`` entries (volumes and PersistentVolumes). Fail closed: ``privileged`` and
``hostNetwork``/``hostPID``/``hostIPC`` count when set to anything but false or null.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from veto_opa.facts.errors import FactError

NAME = "kubernetes"
MAX_CHARS = 1_048_576
"""Longest manifest accepted (characters)."""

MAX_DEPTH = 64
MAX_NODES = 50_000
MAX_DOCUMENTS = 1_000


_HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_BINDINGS = ("RoleBinding", "ClusterRoleBinding")
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


def library() -> str:
    """The parser and its version, as facts and records name it."""
    libyaml = " with LibYAML" if yaml.__with_libyaml__ else ""
    return f"PyYAML {yaml.__version__}{libyaml} (safe, limited), json"


def option_problem(name: str, value: Any) -> str | None:
    """Kubernetes facts take no options."""
    return f"unknown option {name!r}"


_RESOLVERS = {first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
              for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


class _Limits:
    """Counts nodes and nesting as the YAML events come; raises past the limits."""

    def __init__(self) -> None:
        self.depth = 0
        self.nodes = 0

    def event(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.AliasEvent):
            raise FactError("YAML aliases (*name) are not accepted in manifests")
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            self.nodes += 1
            if self.nodes > MAX_NODES:
                raise FactError(f"the manifest has more than {MAX_NODES} YAML nodes")
        if isinstance(event, yaml.CollectionStartEvent):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FactError(f"the manifest nests more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            self.depth -= 1


class _Constructor(yaml.constructor.SafeConstructor):
    """What both loaders add to PyYAML's safe loading: no timestamps, no merge keys, no
    duplicate keys."""

    yaml_implicit_resolvers = _RESOLVERS

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    raise FactError("YAML merge keys (<<) are not accepted in manifests")
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    raise FactError("a YAML mapping key is not a scalar") from None
                if duplicate:
                    line = key_node.start_mark.line + 1
                    raise FactError(f"duplicate key {_short(key)!r} at line {line}")
        return super().construct_mapping(node, deep=deep)


class _Loader(_Constructor, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, checking the limits node by node."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.limits = _Limits()

    def compose_node(self, parent: Any, index: Any) -> Any:
        peek: Callable[[], yaml.Event] = self.peek_event   # untyped in the stubs
        self.limits.event(peek())
        return super().compose_node(parent, index)


def _load_all_python(text: str) -> Iterator[Any]:
    yield from yaml.load_all(text, Loader=_Loader)   # noqa: S506 - a safe loader


if yaml.__with_libyaml__:
    class _FastLoader(_Constructor, yaml.CSafeLoader):
        """LibYAML's safe loader, run once the events were checked against the limits."""

    def _load_all_libyaml(text: str) -> Iterator[Any]:
        limits = _Limits()
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            limits.event(event)
        yield from yaml.load_all(text, Loader=_FastLoader)   # noqa: S506 - a safe loader

    _load_all = _load_all_libyaml
else:  # pragma: no cover - PyYAML built without LibYAML
    _load_all = _load_all_python


def facts(text: str) -> dict[str, Any]:
    """The facts of a manifest.

    Raises:
        FactError: the text is not YAML or JSON within the limits, or a document is not an
            object.
    """
    documents = list(_documents(text))
    objects = list(_expand(documents))
    out = _Collector()
    for obj in objects:
        out.add(obj)
    return out.document(len(documents))


def _documents(text: str) -> Iterator[Any]:
    if text.lstrip()[:1] in ("{", "["):
        yield from _json_stream(text)
        return
    try:
        yield from _load_all(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FactError(f"the manifest is not valid YAML: {e.problem or e.context}{where}") \
            from None
    except yaml.YAMLError as e:
        raise FactError(f"the manifest is not valid YAML: {type(e).__name__}") from None


def _json_stream(text: str) -> Iterator[Any]:
    decoder = json.JSONDecoder(object_pairs_hook=_unique_object, parse_constant=_no_constant)
    at = 0
    blank = re.compile(r"\s*")
    while True:
        at = blank.match(text, at).end()    # type: ignore[union-attr]  # \s* always matches
        if at == len(text):
            return
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as e:
            raise FactError(f"the manifest is not valid JSON: {e.msg} at line {e.lineno}, "
                            f"column {e.colno}") from None
        except RecursionError:
            raise FactError("the manifest nests too deeply") from None
        if isinstance(value, list):
            yield from value
        else:
            yield value


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FactError(f"duplicate key {_short(key)!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise FactError(f"{name} is not JSON")


def _expand(documents: list[Any]) -> Iterator[dict[str, Any]]:
    """Each object of the documents, the items of ``kind: List`` included."""
    stack = list(reversed(documents))
    count = 0
    while stack:
        doc = stack.pop()
        if doc is None:
            continue           # an empty YAML document
        if not isinstance(doc, dict):
            raise FactError(f"a manifest document must be an object, found {_type(doc)}")
        count += 1
        if count > MAX_DOCUMENTS:
            raise FactError(f"the manifest has more than {MAX_DOCUMENTS} objects")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            stack.extend(reversed(doc["items"]))
            continue
        yield doc


class _Collector:
    def __init__(self) -> None:
        self.kinds: dict[str, None] = {}
        self.namespaces: dict[str, None] = {}
        self.objects: list[dict[str, Any]] = []
        self.privileged: list[str] = []
        self.host_paths: list[str] = []
        self.host_namespaces: list[str] = []
        self.bindings: list[dict[str, Any]] = []

    def document(self, documents: int) -> dict[str, Any]:
        return {
            "documents": documents,
            "kinds": list(self.kinds),
            "objects": self.objects,
            "namespaces": list(self.namespaces),
            "privileged": bool(self.privileged),
            "privileged_containers": self.privileged,
            "host_path": bool(self.host_paths),
            "host_paths": self.host_paths,
            "host_namespaces": self.host_namespaces,
            "bindings": self.bindings,
        }

    def add(self, obj: dict[str, Any]) -> None:
        kind = _text(obj.get("kind"), "kind")
        metadata: dict[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
        name = _text(metadata.get("name"), "metadata.name")
        namespace = _text(metadata.get("namespace"), "metadata.namespace")
        if kind is not None:
            self.kinds.setdefault(kind)
        if namespace is not None:
            self.namespaces.setdefault(namespace)
        self.objects.append({"kind": kind, "name": name, "namespace": namespace,
                             "api_version": _text(obj.get("apiVersion"), "apiVersion")})
        ref = f"{kind}/{name}"
        for node in _mappings(obj):
            if isinstance(node.get("containers"), list):
                self.pod_spec(node, ref)
            if "hostPath" in node:
                host_path = node["hostPath"]
                path = host_path.get("path") if isinstance(host_path, dict) else host_path
                self.host_paths.append(str(path))
        if kind in _BINDINGS:
            self.bindings.append(_binding(kind, name, namespace, obj))

    def pod_spec(self, spec: dict[str, Any], ref: str) -> None:
        for key in _HOST_NAMESPACES:
            if spec.get(key) not in (None, False):
                self.host_namespaces.append(f"{ref}: {key}")
        for key in _CONTAINER_LISTS:
            containers = spec.get(key)
            for container in containers if isinstance(containers, list) else ():
                if not isinstance(container, dict):
                    continue
                context = container.get("securityContext")
                if isinstance(context, dict) and context.get("privileged") not in (None, False):
                    self.privileged.append(f"{ref}/{container.get('name')}")


def _binding(kind: str, name: str | None, namespace: str | None,
             obj: dict[str, Any]) -> dict[str, Any]:
    role: dict[str, Any] = obj["roleRef"] if isinstance(obj.get("roleRef"), dict) else {}
    subjects = []
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict):
            where = f"{subject['namespace']}/" if subject.get("namespace") else ""
            subjects.append(f"{subject.get('kind')}:{where}{subject.get('name')}")
    return {"kind": kind, "name": name, "namespace": namespace,
            "role_kind": _text(role.get("kind"), "roleRef.kind"),
            "role": _text(role.get("name"), "roleRef.name"), "subjects": subjects}


def _mappings(root: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a document, depth first, without recursion."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _text(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    raise FactError(f"{what} must be a string, found {_type(value)}")


def _type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _short(key: Any) -> str:
    text = str(key)
    return text if len(text) <= 40 else text[:37] + "..."
