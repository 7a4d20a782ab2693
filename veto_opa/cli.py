"""The ``veto-opa`` command line.

    veto-opa check POLICY...                       report every problem as file:line:col
    veto-opa build POLICY... -o veto.tar.gz        an OPA bundle (or --dir DIR), optionally signed
    veto-opa test POLICY... [-v]                   Rego library tests and the policies' examples
    veto-opa test --mutate POLICY...               and evasive rewrites of the examples
    veto-opa eval POLICY... --tool T --args JSON   the decision for one tool call
    veto-opa rego POLICY...                        the generated Rego
    veto-opa verify BUNDLE --key FILE              check a signed bundle's signature
    veto-opa decisions list|show|export|verify     the decision records
    veto-opa approvals list|show|approve|reject    approval requests (require_approval)
    veto-opa traces list|show --jaeger URL|--file PATH   decisions read back from traces
    veto-opa approvers add|list|remove             who may approve, with which credential
    veto-opa serve                                 the approvers' web console
    veto-opa demo                                  an SRE agent on Mistral, governed

Exit status: 0 success, 1 a problem with the input (policy, bundle, arguments), 2 tests failed
or usage error — ``test`` exits like ``opa test``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from veto_opa.errors import ConfigurationError, PolicyError, VetoError

_RAW = argparse.RawDescriptionHelpFormatter


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except PolicyError as e:
        for diagnostic in e.diagnostics:
            print(diagnostic, file=sys.stderr)
        count = len(e.diagnostics)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return 1
    except (UsageError, ConfigurationError) as e:
        print(f"veto-opa: error: {e}", file=sys.stderr)
        return 2
    except VetoError as e:
        print(f"veto-opa: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


def _parser() -> argparse.ArgumentParser:
    from veto_opa import __version__, traces_cli
    from veto_opa.approvals import cli as approvals_cli
    from veto_opa.records import cli as records_cli

    parser = argparse.ArgumentParser(
        prog="veto-opa", formatter_class=_RAW,
        description="Runtime authorization for LLM tool calls: Veto YAML policies compiled to "
                    "Rego and decided by Open Policy Agent.",
        epilog="Run 'veto-opa COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"veto-opa {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")

    check = commands.add_parser(
        "check", help="check policy files and report every problem", formatter_class=_RAW,
        description="Load and check policy files. Every problem of every file is printed as "
                    "file:line:col: message; the exit status is 1 when there is any.",
        epilog="example:\n  veto-opa check veto/policies.yaml\n"
               "  veto-opa check --json team-a.yaml team-b.yaml")
    _policies(check)
    check.add_argument("--json", action="store_true", help="print the problems as JSON")
    check.set_defaults(func=cmd_check)

    build = commands.add_parser(
        "build", help="build an OPA bundle", formatter_class=_RAW,
        description="Compile policy files into an OPA bundle (roots [\"veto\"]): the Rego "
                    "library, one package per policy, and its examples as Rego unit tests. "
                    "The same inputs always give the same bytes.",
        epilog="examples:\n  veto-opa build veto/policies.yaml -o build/veto.tar.gz\n"
               "  veto-opa build veto/*.yaml --dir build/veto\n"
               "  veto-opa build veto/policies.yaml -o veto.tar.gz --signing-key key.pem "
               "--signing-alg RS256 --signing-key-id veto")
    _policies(build)
    out = build.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="FILE", help="write a .tar.gz bundle")
    out.add_argument("--dir", metavar="DIR", help="write the bundle as a directory")
    build.add_argument("--signing-key", metavar="FILE",
                       help="sign the bundle: a PEM private key, or the secret for HS*")
    build.add_argument("--signing-alg", default="RS256", metavar="ALG",
                       help="RS256 (default), RS384/512, PS256/384/512, ES256/384/512, "
                            "HS256/384/512")
    build.add_argument("--signing-key-id", metavar="ID", help="the 'kid' OPA verifies with")
    build.add_argument("--scope", help="signing scope, checked by OPA when configured")
    build.set_defaults(func=cmd_build)

    test = commands.add_parser(
        "test", help="run the Rego tests and the policies' examples", formatter_class=_RAW,
        description="Run the Rego library's tests and the tests: examples of the policies "
                    "in the embedded OPA engine, print results like 'opa test' and exit like "
                    "it (0 all passed, 2 a test failed, 1 the bundle does not load).",
        epilog="examples:\n  veto-opa test veto/policies.yaml\n"
               "  veto-opa test -v -r deny veto/policies.yaml\n"
               "  veto-opa test --opa veto/policies.yaml    # with an opa binary on PATH\n"
               "  veto-opa test --mutate examples/hardened.yaml\n"
               "  veto-opa test --mutate examples/policies.yaml --examples "
               "examples/hardened.yaml")
    _policies(test)
    test.add_argument("-v", "--verbose", action="store_true", help="list every test")
    test.add_argument("-r", "--run", metavar="REGEX", help="only tests matching REGEX")
    test.add_argument("--opa", action="store_true",
                      help="build the bundle and run 'opa test -b' on it instead")
    test.add_argument("--mutate", action="store_true",
                      help="also decide evasive rewrites of every deny and require_approval "
                           "example (SQL spelling, path dot segments, URL encoding, ...) and "
                           "fail on any that weakens the decision")
    test.add_argument("--examples", action="append", metavar="FILE",
                      help="with --mutate: the examples (tests:) of this policy file instead "
                           "of the policies' own (repeat for several)")
    test.add_argument("--json", action="store_true",
                      help="with --mutate: print the mutation report as JSON")
    test.set_defaults(func=cmd_test)

    ev = commands.add_parser(
        "eval", help="decide one tool call", formatter_class=_RAW,
        description="Decide one tool call exactly as Veto.guard() does (records and spans "
                    "off) and print the decision as JSON. POLICY defaults to "
                    "veto/policies.yaml. With --exit-code the exit status is the decision: "
                    "0 allow, 3 deny, 4 require_approval.",
        epilog="examples:\n  veto-opa eval examples/policies.yaml --tool execute_sql \\\n"
               "      --args '{\"statement\": \"DROP TABLE customers\", \"database\": "
               "\"analytics\"}' \\\n      --context '{\"environment\": \"production\"}'\n"
               "  veto-opa eval --tool execute_sql --args @call.json --exit-code\n"
               "  echo '{\"statement\": \"SELECT 1\"}' | veto-opa eval --tool execute_sql "
               "--args -\n"
               "  veto-opa eval --bundle build/veto.tar.gz --key public.pem --key-id veto "
               "--tool send_email")
    ev.add_argument("policies", nargs="*", metavar="POLICY", help="Veto YAML policy files")
    ev.add_argument("--bundle", metavar="BUNDLE", help="decide with a built bundle instead")
    ev.add_argument("--key", metavar="FILE",
                    help="with --bundle: refuse it unless signed with this public key (PEM) "
                         "or HS* secret, as OPA >= 1.21.3 with signing.keyid")
    ev.add_argument("--key-id", metavar="ID", help="the key's id (required with --key)")
    ev.add_argument("--alg", default="RS256", help="the key's algorithm (RS256)")
    ev.add_argument("--scope", help="the signing scope the bundle must carry")
    ev.add_argument("--tool", required=True)
    ev.add_argument("--args", default="{}", metavar="JSON",
                    help="the tool call's arguments: JSON text, @FILE, or - for stdin")
    ev.add_argument("--context", default="{}", metavar="JSON",
                    help="the call's context object: JSON text, @FILE, or - for stdin")
    ev.add_argument("--model", default=None)
    ev.add_argument("--call-id", default=None)
    ev.add_argument("--exit-code", action="store_true",
                    help="exit 0 for allow, 3 for deny, 4 for require_approval")
    ev.set_defaults(func=cmd_eval)

    rego = commands.add_parser(
        "rego", help="print the generated Rego", formatter_class=_RAW,
        description="Print the Rego generated from policy files (one package per policy).",
        epilog="example:\n  veto-opa rego examples/policies.yaml\n"
               "  veto-opa rego --tests --library examples/policies.yaml")
    _policies(rego)
    rego.add_argument("--tests", action="store_true", help="also the generated tests")
    rego.add_argument("--library", action="store_true", help="also the hand-written library")
    rego.set_defaults(func=cmd_rego)

    verify = commands.add_parser(
        "verify", help="verify a signed bundle", formatter_class=_RAW,
        description="Check a bundle's .signatures.json as OPA does: the signature, and that it "
                    "covers exactly the bundle's files with matching digests.",
        epilog="example:\n  veto-opa verify build/veto.tar.gz --key public.pem --alg RS256")
    verify.add_argument("bundle", metavar="BUNDLE")
    verify.add_argument("--key", required=True, metavar="FILE",
                        help="PEM public key, or the secret for HS*")
    verify.add_argument("--alg", default="RS256")
    verify.add_argument("--key-id", metavar="ID")
    verify.add_argument("--scope")
    verify.set_defaults(func=cmd_verify)

    demo = commands.add_parser(
        "demo", help="an SRE agent on Mistral triages a prompt-injected ticket, governed",
        formatter_class=_RAW,
        description="An SRE agent triages a ticket carrying a prompt injection through the "
                    "mistralai SDK: against Mistral's API when MISTRAL_API_KEY is set "
                    "(model MISTRAL_MODEL), else against a scripted local stand-in of it. "
                    "Every tool call is decided by the seed policy shipped with veto-opa (or "
                    "POLICY); the demo approves the pending rotation as the security team, "
                    "shows the retry, the decision records and the spans.",
        epilog="example:\n  veto-opa demo\n  MISTRAL_API_KEY=... veto-opa demo --home /tmp/veto")
    demo.add_argument("policies", nargs="*", metavar="POLICY")
    demo.add_argument("--home",
                      help="where records, approvals and spans go (default: VETO_HOME or .veto)")
    demo.set_defaults(func=cmd_demo)

    records_cli.register(commands)
    approvals_cli.register(commands)
    traces_cli.register(commands)
    return parser


def _policies(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("policies", nargs="+", metavar="POLICY", help="Veto YAML policy files")


class UsageError(Exception):
    """A command used in a way that cannot work: printed on one line, exit status 2."""


def _text_arg(value: str, what: str) -> str:
    """The text of an option that takes JSON, ``@FILE`` or ``-`` (standard input)."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--{what}: cannot read {value[1:]}: "
                             f"{getattr(e, 'strerror', None) or e}") from None
    return value


# -- commands ------------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    from veto_opa.translators import load_policies

    try:
        policies = load_policies(args.policies)
    except PolicyError as e:
        if not args.json:
            raise
        print(json.dumps({"ok": False, "problems": [d.to_dict() for d in e.diagnostics]},
                         indent=2, ensure_ascii=False))
        return 1
    rules = sum(len(p.rules) for p in policies)
    tests = sum(len(p.tests) for p in policies)
    warnings = [w for p in policies for w in p.warnings]
    if args.json:
        print(json.dumps({"ok": True, "policies": [p.name for p in policies], "rules": rules,
                          "tests": tests, "warnings": [w.to_dict() for w in warnings]},
                         indent=2, ensure_ascii=False))
    else:
        # Warnings do not change the exit status: the policies load as written.
        for warning in warnings:
            print(warning, file=sys.stderr)
        names = ", ".join(p.name for p in policies)
        print(f"ok: {_count(len(policies), 'policy', 'policies')} ({names}), "
              f"{_count(rules, 'rule')}, {_count(tests, 'example')}"
              + (f", {_count(len(warnings), 'warning')}" if warnings else ""))
    return 0


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 rule``, ``2 rules``."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def cmd_build(args: argparse.Namespace) -> int:
    from veto_opa.translators import build, bundle as bundles

    target = Path(args.output or args.dir)
    if args.output and target.is_dir():
        raise UsageError(f"-o {target} is a directory: give a file name such as "
                         f"{target / 'veto.tar.gz'}, or use --dir {target}")
    key = _key(args.signing_key, args.signing_alg, private=True) if args.signing_key else None
    result = build(args.policies).bundle()
    if key is not None:
        result = bundles.sign_bundle(result, key=key, algorithm=args.signing_alg,
                                     key_id=args.signing_key_id, scope=args.scope)
    try:
        if args.output:
            target.parent.mkdir(parents=True, exist_ok=True)
            bundles.write_tar_gz(result, target)
        else:
            bundles.write_directory(result, target)
    except OSError as e:
        raise UsageError(f"cannot write the bundle to {target}: {e.strerror or e}") from None
    signed = " (signed)" if key is not None else ""
    print(f"wrote {target}{signed}: {len(result.files)} files, revision {result.revision}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from veto_opa.translators import build, bundle as bundles
    from veto_opa.translators.examples import explain_failures
    from veto_opa.translators.regotest import TestLoadError, format_report, run_tests

    if (args.examples or args.json) and not args.mutate:
        raise VetoError("--examples and --json go with --mutate")
    compiled = build(args.policies)
    if args.opa:
        opa = shutil.which("opa")
        if opa is None:
            raise VetoError("--opa needs an 'opa' binary on PATH; without it, drop --opa to run "
                            "the same tests in the embedded OPA engine")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "veto.tar.gz"
            bundles.write_tar_gz(compiled.bundle(), path)
            command = [opa, "test", "-b", str(path)]
            if args.verbose:
                command.append("-v")
            if args.run:
                command += ["-r", args.run]
            return subprocess.run(command, check=False).returncode
    try:
        bundle = compiled.bundle()
        report = run_tests(bundle.modules(), data=bundle.data_documents(), run=args.run)
    except TestLoadError as e:
        print(f"veto-opa: error: {e}", file=sys.stderr)
        return 1
    if args.run and not report.results:
        print(f"veto-opa: error: no test matches -r {args.run!r}", file=sys.stderr)
        return 1
    text = format_report(report, verbose=args.verbose)
    if text and not args.json:
        print(text)
    # A failed example: what it expected and what the policy decided, at its line.
    failed = [r.full_name for r in report.results if r.status == "FAIL"]
    for line in explain_failures(compiled, failed):
        print(line)
    if not args.mutate:
        return report.exit_code()
    from veto_opa.mutate import mutate

    mutation = mutate(args.policies, examples=args.examples)
    if args.json:
        print(json.dumps({"tests": report.exit_code() == 0, **mutation.document()}, indent=2,
                         ensure_ascii=False))
    else:
        print(mutation.format())
    return report.exit_code() or mutation.exit_code()


_EXIT_CODES = {"allow": 0, "deny": 3, "require_approval": 4}


def cmd_eval(args: argparse.Namespace) -> int:
    from veto_opa import Veto
    from veto_opa._json import loads_json

    if args.bundle and args.policies:
        raise UsageError("give policy files or --bundle, not both")
    if args.key and not args.bundle:
        raise UsageError("--key checks a bundle's signature: give --bundle too")
    if args.args == "-" and args.context == "-":
        raise UsageError("only one of --args and --context can be read from stdin")
    arguments = _text_arg(args.args, "args")
    try:
        context = loads_json(_text_arg(args.context, "context"))
    except ValueError as e:
        raise UsageError(f"--context is not valid JSON: {e}") from None
    source: dict[str, Any] = ({"bundle": args.bundle} if args.bundle else
                              {"policies": args.policies or None})
    if args.key:
        source.update(verification_key=args.key, key_id=args.key_id,
                      bundle_key_algorithm=args.alg, bundle_scope=args.scope)
    with Veto(**source, records=False, spans=False, reload_interval=0, pool_size=1,
              go_heap_reserve=0) as veto:
        decision = veto.guard(args.tool, arguments, context, model=args.model,
                              call_id=args.call_id)
    document = decision.verdict.document()
    if decision.cause is not None:
        document["cause"] = decision.cause
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return _EXIT_CODES[decision.decision] if args.exit_code else 0


def cmd_rego(args: argparse.Namespace) -> int:
    from veto_opa.translators import build

    compiled = build(args.policies)
    modules = compiled.modules if args.library else compiled.generated()
    for path, source in modules.items():
        if path.endswith("_test.rego") and not args.tests:
            continue
        print(f"# ==> {path} <==")
        print(source)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from veto_opa.translators import bundle as bundles

    key = _key(args.key, args.alg, private=False)
    bundle = bundles.read_bundle(args.bundle)
    bundles.verify_bundle(bundle, key=key, algorithm=args.alg, key_id=args.key_id,
                          scope=args.scope)
    print(f"ok: {args.bundle} is signed and its {len(bundle.files) - 1} files match the "
          f"signature (revision {bundle.revision})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from veto_opa.demo import run_demo

    return run_demo(args.policies or None, home=args.home)


_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC"}


def _key(path: str, algorithm: str, *, private: bool) -> bytes:
    """The key in ``path`` for ``algorithm``: a PEM key of the algorithm's type (private to
    sign, public to verify), or the shared secret for HS*.

    Raises:
        UsageError: the file cannot be read, the algorithm is unknown, or the key is not of
            the kind the algorithm and the command need.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from veto_opa.translators.bundle import ALGORITHMS

    if algorithm not in ALGORITHMS:
        raise UsageError(f"unknown algorithm {algorithm!r}; expected one of "
                         f"{', '.join(sorted(ALGORITHMS))}")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read key {path}: {e.strerror or e}") from None
    if algorithm.startswith("HS"):
        return data.rstrip(b"\r\n")
    kind = _KEY_TYPES[algorithm[:2]]
    wanted = "private" if private else "public"
    try:
        key: object = (serialization.load_pem_private_key(data, password=None) if private
                       else serialization.load_pem_public_key(data))
    except (ValueError, TypeError):
        other = "public" if private else "private"
        hint = ""
        try:
            (serialization.load_pem_public_key(data) if private
             else serialization.load_pem_private_key(data, password=None))
            hint = f" (it is a {other} key)"
        except (ValueError, TypeError):
            pass
        raise UsageError(f"{path} is not a PEM {wanted} key{hint}; "
                         f"{'signing' if private else 'verifying'} with {algorithm} needs an "
                         f"{kind} {wanted} key") from None
    expected = (rsa.RSAPrivateKey, rsa.RSAPublicKey) if kind == "RSA" else (
        ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)
    if not isinstance(key, expected):
        raise UsageError(f"{path} holds a {type(key).__name__.lstrip('_')} key; {algorithm} "
                         f"needs an {kind} {wanted} key")
    return data


if __name__ == "__main__":
    sys.exit(main())
