"""The hand-written Rego library (package ``veto``), shipped as package data.

The ``.rego`` files under ``veto/`` are the source of truth; this module only lets the
installed ``veto_opa`` find them with ``importlib.resources``.
"""
