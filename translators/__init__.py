"""Veto YAML → Rego: the policy compiler, imported as ``veto_opa.translators``."""
