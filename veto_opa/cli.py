"""The ``veto-opa`` command line.

    veto-opa check POLICY...                       report every problem as file:line:col
    veto-opa build POLICY... -o veto.tar.gz        an OPA bundle (or --dir DIR), optionally signed
    veto-opa test POLICY... [-v]                   Rego library tests and the policies' examples
    veto-opa eval POLICY... --tool T --args JSON   the decision for one tool call
    veto-opa rego POLICY...                        the generated Rego
    veto-opa verify BUNDLE --key FILE              check a signed bundle's signature
    veto-opa decisions list|show|export|verify     the decision records
    veto-opa approvals list|show|approve|reject    approval requests (require_approval)
    veto-opa demo                                  evaluate the example agent's tool calls

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

from veto_opa.errors import PolicyError, VetoError

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
    except VetoError as e:
        print(f"veto-opa: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


def _parser() -> argparse.ArgumentParser:
    from veto_opa import __version__, approvals_cli
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
               "  veto-opa test --opa veto/policies.yaml    # with an opa binary on PATH")
    _policies(test)
    test.add_argument("-v", "--verbose", action="store_true", help="list every test")
    test.add_argument("-r", "--run", metavar="REGEX", help="only tests matching REGEX")
    test.add_argument("--opa", action="store_true",
                      help="build the bundle and run 'opa test -b' on it instead")
    test.set_defaults(func=cmd_test)

    ev = commands.add_parser(
        "eval", help="decide one tool call", formatter_class=_RAW,
        description="Print the decision object (data.veto.decision) for one tool call.",
        epilog="example:\n  veto-opa eval examples/policies.yaml --tool execute_sql \\\n"
               "      --args '{\"statement\": \"DROP TABLE customers\", \"database\": "
               "\"analytics\"}' \\\n      --context '{\"environment\": \"production\"}'")
    ev.add_argument("policies", nargs="*", metavar="POLICY", help="Veto YAML policy files")
    ev.add_argument("--bundle", metavar="BUNDLE", help="decide with a built bundle instead")
    ev.add_argument("--tool", required=True)
    ev.add_argument("--args", default="{}", metavar="JSON", help="the tool call's arguments")
    ev.add_argument("--context", default="{}", metavar="JSON")
    ev.add_argument("--model", default=None)
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
        "demo", help="decide the example SRE agent's tool calls", formatter_class=_RAW,
        description="Guard a dozen tool calls an SRE agent might make with the policy in "
                    "examples/policies.yaml (or POLICY), recording each decision, and print "
                    "the decisions.",
        epilog="example:\n  veto-opa demo\n  veto-opa demo veto/policies.yaml")
    demo.add_argument("policies", nargs="*", metavar="POLICY")
    demo.add_argument("--home", help="where records go (default: VETO_HOME or .veto)")
    demo.set_defaults(func=cmd_demo)

    records_cli.register(commands)
    approvals_cli.register(commands)
    return parser


def _policies(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("policies", nargs="+", metavar="POLICY", help="Veto YAML policy files")


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise VetoError(f"--{what} is not valid JSON: {e}") from None


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

    result = build(args.policies).bundle()
    if args.signing_key:
        key = _read_key(args.signing_key, args.signing_alg)
        result = bundles.sign_bundle(result, key=key, algorithm=args.signing_alg,
                                     key_id=args.signing_key_id, scope=args.scope)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        bundles.write_tar_gz(result, args.output)
        where = args.output
    else:
        bundles.write_directory(result, args.dir)
        where = args.dir
    signed = " (signed)" if args.signing_key else ""
    print(f"wrote {where}{signed}: {len(result.files)} files, revision {result.revision}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from veto_opa.translators import build, bundle as bundles
    from veto_opa.translators.examples import explain_failures
    from veto_opa.translators.regotest import TestLoadError, format_report, run_tests

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
    if text:
        print(text)
    # A failed example: what it expected and what the policy decided, at its line.
    failed = [r.full_name for r in report.results if r.status == "FAIL"]
    for line in explain_failures(compiled, failed):
        print(line)
    return report.exit_code()


def cmd_eval(args: argparse.Namespace) -> int:
    import opa_bindings

    from veto_opa.translators import build, bundle as bundles

    if bool(args.bundle) == bool(args.policies):
        raise VetoError("give policy files or --bundle, not both and not neither")
    arguments = _json_arg(args.args, "args")
    context = _json_arg(args.context, "context")
    if args.bundle:
        bundle = bundles.read_bundle(args.bundle)
    else:
        bundle = build(args.policies).bundle()
    engine = opa_bindings.OpaEngine()
    try:
        bundles.load_into_engine(bundle, engine)
        decision = engine.eval_document("veto.decision", {
            "tool": args.tool, "args": arguments, "context": context, "model": args.model,
            "call_id": None})
    except opa_bindings.OpaError as e:
        raise VetoError(f"the engine could not decide: {e}") from None
    finally:
        engine.close()
    print(json.dumps(decision, indent=2, ensure_ascii=False))
    return 0


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

    bundle = bundles.read_bundle(args.bundle)
    bundles.verify_bundle(bundle, key=_read_key(args.key, args.alg), algorithm=args.alg,
                          key_id=args.key_id, scope=args.scope)
    print(f"ok: {args.bundle} is signed and its {len(bundle.files) - 1} files match the "
          f"signature (revision {bundle.revision})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from veto_opa.demo import run_demo

    return run_demo(args.policies or None, home=args.home)


def _read_key(path: str, algorithm: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise VetoError(f"cannot read key {path}: {e.strerror}") from None
    return data.rstrip(b"\r\n") if algorithm.upper().startswith("HS") else data


if __name__ == "__main__":
    sys.exit(main())
