"""From checked policies to Rego modules and an OPA bundle.

``compile_policies`` renders one module per policy (``veto/policies/<name>.rego``), one test
module per policy with examples (``<name>_test.rego``), and ``veto/bundle.rego`` with the
revision, and adds the hand-written library of ``rego/veto``. The templates in
``templates/`` hold the structure only; conditions come from :mod:`generator`, and the
detail of a condition in error from :mod:`details`. What the decision only reads is data,
which OPA does not compile: each rule's order, action, reason and approvers
(``veto/rules/<name>``), the texts of each rule's error details (``veto/details/<name>``).
The policies' ``redact:`` paths are data too (``veto/redaction``), and the ``facts:``
declarations of all policies, merged, are data too (``veto/facts``): the
runtime reads them from the bundle, or from an OPA server, to compute ``input.facts``; the
examples' inputs get their facts computed here.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import jinja2

from veto_opa import __version__
from veto_opa.decision import Verdict
from veto_opa.facts.compute import compute
from veto_opa.facts.registry import PARSERS
from veto_opa.facts.spec import merge, spec_document
from veto_opa.translators import rego
from veto_opa.translators.bundle import Bundle, build_bundle
from veto_opa.translators.binding import policy_binding
from veto_opa.translators.details import FALLBACK, Explainer
from veto_opa.translators.generator import ConditionCompiler, Scope, _block
from veto_opa.translators.policy import Example, Policy, Rule

COMPILER = f"veto-opa {__version__}"

REDACTION_DATA = "veto/redaction"
"""Where a bundle carries its policies' ``redact:`` paths (``{"paths": [...]}``): a runtime
that loads the bundle, or asks an OPA server holding it, redacts what the policies said."""

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("veto_opa.translators", "templates"),
    autoescape=False,  # Rego, not HTML: every value is escaped by translators.rego instead
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class Compiled:
    """The Rego of a set of policies: library, generated modules and tests."""

    policies: tuple[Policy, ...]
    modules: dict[str, str]
    revision: str

    data: dict[str, Any] = field(default_factory=dict)

    def bundle(self) -> Bundle:
        """The OPA bundle (roots ``veto``), with the sources named in its metadata."""
        return build_bundle(
            self.modules,
            revision=self.revision,
            roots=("veto",),
            data=self.data,
            metadata={
                "compiler": COMPILER,
                "sources": [{"policy": p.name, "file": p.source, "sha256": p.sha256}
                            for p in self.policies],
            },
        )

    def generated(self) -> dict[str, str]:
        """Only the modules generated from the policies (no library)."""
        library = library_modules()
        return {path: src for path, src in self.modules.items() if path not in library}


@lru_cache(maxsize=1)
def library_modules() -> dict[str, str]:
    """The hand-written Rego library, keyed by bundle path (``veto/decision.rego``)."""
    root = importlib.resources.files("veto_opa.rego") / "veto"
    modules: dict[str, str] = {}

    def walk(folder: Any, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".rego"):
                modules[f"{prefix}{entry.name}"] = entry.read_text(encoding="utf-8")

    walk(root, "veto/")
    return modules


def revision_of(policies: Sequence[Policy]) -> str:
    """``sha256:`` over the compiler version, the library and every policy's name and bytes.

    The file names are left out, so moving a policy file does not change the revision; its
    content, its name and the compiler do.
    """
    h = hashlib.sha256()
    h.update(COMPILER.encode())
    for path, source in sorted(library_modules().items()):
        h.update(b"\0lib\0" + path.encode() + b"\0" + source.encode())
    for p in sorted(policies, key=lambda p: p.index):
        h.update(f"\0policy\0{p.index}\0{p.name}\0".encode() + p.text)
    # What a fact says depends on its parser's version: a policy on facts changes revision
    # with it (the approvals of calls under the old one do not carry over).
    for name in sorted({s.parser for p in policies for t in p.facts.values() for s in t.values()}):
        h.update(f"\0parser\0{name}\0{PARSERS[name].load().library()}".encode())
    return "sha256:" + h.hexdigest()


def compile_policies(policies: Sequence[Policy]) -> Compiled:
    """Compile checked policies (from :func:`veto_opa.translators.loader.load_policies`)."""
    revision = revision_of(policies)
    modules = dict(library_modules())
    data: dict[str, Any] = {}
    for p in policies:
        module, details = compile_policy(p)
        modules[p.module_path] = module
        if p.tests:
            modules[p.test_module_path] = test_module(p)
        if p.rules:
            data[f"veto/rules/{p.name}"] = rules_data(p)
        if details:
            data[f"veto/details/{p.name}"] = details
    facts = merge([p.facts for p in policies])
    if facts:
        data["veto/facts"] = spec_document(facts)
    redacted = sorted({path for p in policies for path in p.redact})
    if redacted:
        data[REDACTION_DATA] = {"paths": redacted}
    modules["veto/bundle.rego"] = _env.get_template("bundle.rego.j2").render(
        version=__version__,
        revision=rego.string(revision),
        compiler=rego.string(COMPILER),
        sources=rego.value([{"policy": p.name, "file": p.source, "sha256": p.sha256}
                            for p in policies]),
        policies=rego.value([p.name for p in sorted(policies, key=lambda p: p.index)]),
        default_decision=rego.value(default_decision(policies, revision).document()),
    )
    return Compiled(tuple(policies), modules, revision, data)


_RANK = {"deny": 0, "require_approval": 1, "allow": 2}


def default_decision(policies: Sequence[Policy], revision: str) -> Verdict:
    """The decision when no rule applies, as ``rego/veto/decision.rego`` would compute it:
    the most restrictive default among the policies, ties to the first loaded."""
    if not policies:
        return Verdict("deny", "no Veto policy is loaded", policy_revision=revision)
    best = min(policies, key=lambda p: (_RANK[p.default], p.index))
    asks = best.default == "require_approval"
    return Verdict(best.default,
                   f"no rule applies; policy {best.name} defaults to {best.default}",
                   approvers=tuple(sorted(best.default_approvers)) if asks else (),
                   policy_name=best.name, policy_revision=revision,
                   binding=policy_binding(best) if asks else ())


def rules_data(policy: Policy) -> dict[str, Any]:
    """Each rule's order in the file, action, reason and approvers, read by ``veto.decision``
    for the rules that apply or are in error; a ``require_approval`` rule also carries how
    many distinct approvers it needs and the context keys its approvals are bound to (the
    policy's, see :mod:`~veto_opa.translators.binding`)."""
    binding = list(policy_binding(policy))
    data: dict[str, Any] = {}
    for rule in policy.rules:
        asks = rule.action == "require_approval"
        data[rule.name] = {"index": rule.index, "action": rule.action, "message": rule.reason,
                           "approvers": sorted(set(rule.approvers)),
                           "approvals": rule.approvals if asks else 0}
        if asks:
            data[rule.name]["binding"] = binding
    return data


def policy_module(policy: Policy) -> str:
    """The Rego module of one policy."""
    return compile_policy(policy)[0]


def compile_policy(policy: Policy) -> tuple[str, dict[str, list[Any]]]:
    """The Rego module of one policy, and the details of its rules' errors as data: for each
    rule with a condition, the list its checks index (only a rule in error reads it)."""
    rules = [_rule_context(policy, rule) for rule in policy.rules]
    details = {r["name"]: r["forms"] for r in rules if r.get("forms")}
    imports = []
    if any(r["uses_ops"] for r in rules):
        imports.append("data.veto.lib.ops")
    module = _env.get_template("policy.rego.j2").render(
        version=__version__,
        source=_one_line(policy.source),
        source_yaml=rego.yaml_string(policy.source),
        title=rego.yaml_string(f"Veto policy {policy.name}"),
        description=rego.yaml_string(policy.description) if policy.description else None,
        package=policy.package,
        policy_name=policy.name,
        imports=imports,
        policy=rego.value(_policy_object(policy)),
        rules=rules,
        fallback=rego.string(FALLBACK),
    )
    return module, details


def _policy_object(policy: Policy) -> dict[str, Any]:
    value: dict[str, Any] = {"name": policy.name, "index": policy.index,
                             "default": policy.default, "source": policy.source,
                             "sha256": policy.sha256}
    if policy.default == "require_approval":
        # What veto.decision's own default decision reads when the bundle has none.
        value["default_approvers"] = sorted(policy.default_approvers)
        value["default_binding"] = list(policy_binding(policy))
    return value


def _rule_context(policy: Policy, rule: Rule) -> dict[str, Any]:
    prefix = f"_{rule.name}"
    ctx: dict[str, Any] = {
        "name": rule.name,
        "name_string": rego.string(rule.name),
        "action": rule.action,
        "prefix": prefix,
        "location": f"{_one_line(policy.source)}:{rule.line}:{rule.col}",
        "comment": _rule_comment(rule),
        "status": prefix,
        "tool_conditions": _tool_conditions(rule.tools),
        "condition": rule.when is not None,
        "uses_ops": False,
    }
    if rule.when is None:
        ctx["status"] = "true"
        return ctx
    compiler = ConditionCompiler(prefix, rule.when)
    # An alternative that is just `false` never succeeds: it is left out (the chain needs
    # one body that makes the condition false to start with, even if only that).
    truth = [b for b in compiler.truth_alternatives(rule.when.node, Scope()) if b != ["false"]]
    falsity = [b for b in compiler.falsity_alternatives(rule.when.node, Scope())
               if b != ["false"]] or [["false"]]
    # One else chain: each alternative that makes the condition false, then each that makes
    # it true, then "error". True and false exclude each other, so the order is free; false
    # first, because most conditions are false for most calls and the chain stops early.
    bodies = [_block(b) for b in falsity]
    bodies += [f"true if {_block(b)}" for b in truth]
    bodies[1:len(falsity)] = [f"false if {b}" for b in bodies[1:len(falsity)]]
    # Neither: the condition is in error, and the checks that follow say why.
    explainer = Explainer(compiler)
    bodies += [f'{{"error": {value}}} if {block}' for value, block in explainer.bodies()]
    ctx.update(
        forms=explainer.forms,
        status=prefix,
        bodies=bodies,
        alternatives=len(truth) + len(falsity),
        helpers=compiler.helpers,
        uses_ops=compiler.uses_ops,
    )
    return ctx


def _tool_conditions(tools: tuple[str, ...] | None) -> list[str]:
    """One rule body per tool pattern, each starting with the test OPA indexes on."""
    if tools is None or "*" in tools:
        return [""]
    conditions = []
    for tool in tools:
        if "*" in tool or "?" in tool:
            # No delimiters: '*' matches any run of characters, '.' included.
            conditions.append(f"glob.match({rego.string(tool)}, null, input.tool)")
        else:
            conditions.append(f"input.tool == {rego.string(tool)}")
    return conditions


def _rule_comment(rule: Rule) -> list[str]:
    lines: list[str] = []
    if rule.description:
        lines += rego.comment_lines(rule.description)
    tools = "every tool" if rule.tools is None else ", ".join(rule.tools)
    effect = {
        "deny": "deny; applies when the condition is true or cannot be evaluated (fail closed)",
        "require_approval": "require_approval; applies when the condition is true or cannot "
                            "be evaluated (fail closed)",
        "allow": "allow; applies only when the condition is true",
    }[rule.action]
    lines += rego.comment_lines(f"tool: {tools}")
    lines += rego.comment_lines(f"action: {effect}")
    if rule.message:
        lines += rego.comment_lines(f"reason: {rule.message}")
    if rule.approvers:
        lines += rego.comment_lines(f"approvers: {', '.join(sorted(set(rule.approvers)))}")
    if rule.environments:
        lines += rego.comment_lines(f"environments: {', '.join(rule.environments)}")
    if rule.when_source is not None:
        lines.append("# when:")
        lines += rego.comment_lines(rule.when_source.rstrip("\n"), prefix="#   ")
    return lines


def test_module(policy: Policy) -> str:
    """The Rego unit tests compiled from a policy's ``tests:`` examples."""
    tests = []
    for example in policy.tests:
        checks = [f"d.decision == {rego.string(example.expect.decision)}"]
        if example.expect.rule_given:
            checks.append(f"d.rule == {rego.value(example.expect.rule)}")
        if example.expect.reason is not None:
            checks.append(f"d.reason == {rego.string(example.expect.reason)}")
        if example.expect.approvers is not None:
            checks.append(f"d.approvers == {rego.value(sorted(set(example.expect.approvers)))}")
        tests.append({
            "name": example.name,
            "location": _one_line(f"{policy.source}:{example.line}:{example.col}"),
            "input": rego.value(example_input(policy, example)),
            "checks": checks,
        })
    return _env.get_template("policy_test.rego.j2").render(
        version=__version__,
        source=_one_line(policy.source),
        package=f"{policy.package}_test",
        policy_name=rego.string(policy.name),
        tests=tests,
    )


def example_input(policy: Policy, example: Example) -> dict[str, Any]:
    """The OPA input of an example: its call, and the facts the policy declares for its tool
    computed from its arguments, as the runtime would compute them."""
    input = example.input()
    declared = policy.facts.get(example.tool)
    if declared:
        input["facts"] = compute(declared, example.args)
    return input


def _one_line(text: str) -> str:
    """Text for the middle of a comment line."""
    return rego.comment_lines(text, prefix="")[0] if "\n" not in text else json.dumps(text)
