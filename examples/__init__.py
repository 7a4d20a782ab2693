"""The example policies, shipped with the package as ``veto_opa.examples``: the seed policy
(``policies.yaml``, the demo's) and the full-form ``platform.yaml``."""
