"""The compose stack and every configuration it mounts, checked structurally: there is no
Docker engine here, so these tests hold the files to the formats their programs document.

Sources: OPA's configuration reference (docs/docs/configuration.md: top-level keys,
``services``, ``bundles`` with ``polling``/``signing``, ``keys``, ``decision_logs``, ``status``,
``distributed_tracing``, ``persistence_directory``) and bundle docs (management-bundles);
the OpenTelemetry Collector's component names as the contrib distribution of the pinned
version builds them (``otlp`` receiver; ``batch`` processor; ``otlp``, ``otlphttp``, ``debug``
and ``file`` exporters; the ``otlp_grpc``/``otlp_http`` names exist only from v0.144.0).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
# Mount sources that are made by documented commands (header of docker-compose.yml), not
# kept in the repository.
GENERATED = {"./build/bundles", "./build/keys/veto-public.pem", "./out/traces"}

OPA_TOP_LEVEL = {"services", "labels", "discovery", "bundles", "decision_logs", "status",
                 "plugins", "keys", "default_decision", "default_authorization_decision",
                 "caching", "nd_builtin_cache", "persistence_directory",
                 "distributed_tracing", "server", "storage", "extra"}
OPA_BUNDLE = {"service", "resource", "persist", "polling", "signing", "trigger",
              "size_limit_bytes"}
OPA_POLLING = {"min_delay_seconds", "max_delay_seconds", "long_polling_timeout_seconds"}
OPA_SIGNING = {"keyid", "scope", "exclude_files"}
OPA_KEY = {"key", "private_key", "algorithm", "scope"}
OPA_SERVICE = {"url", "credentials", "headers", "response_header_timeout_seconds", "tls",
               "allow_insecure_tls", "type"}
OPA_DECISION_LOGS = {"service", "resource", "partition_name", "console", "reporting",
                     "request_context", "mask_decision", "drop_decision", "plugin",
                     "nd_builtin_cache"}
OPA_STATUS = {"service", "partition_name", "console", "prometheus", "plugin", "trigger"}
OPA_TRACING = {"type", "address", "service_name", "sample_percentage", "encryption",
               "allow_insecure_tls", "tls_ca_cert_file", "tls_cert_file",
               "tls_private_key_file", "resource", "batch_span_processor_options"}
COLLECTOR = {"receivers": {"otlp"}, "processors": {"batch", "memory_limiter"},
             "exporters": {"otlp", "otlphttp", "debug", "file"}}


def mounts(service: str) -> list[tuple[str, str]]:
    out = []
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        out.append((source, target))
    return out


def mounted(service: str, target: str) -> Path:
    for source, inside in mounts(service):
        if inside == target:
            return ROOT / source
    raise AssertionError(f"{service} does not mount {target}")


def version(image: str) -> tuple[int, ...]:
    match = re.search(r":(\d+)\.(\d+)\.(\d+)", image)
    assert match, f"{image}: expected an explicit x.y.z tag"
    return tuple(int(part) for part in match.groups())


def test_the_services() -> None:
    assert set(SERVICES) == {"bundles", "opa", "otel-collector", "jaeger"}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_image_is_pinned(service: str) -> None:
    image = SERVICES[service]["image"]
    assert "latest" not in image and "edge" not in image
    version(image)


def test_opa_is_at_least_1_21_3() -> None:
    image = SERVICES["opa"]["image"]
    assert image.startswith("openpolicyagent/opa:")
    assert version(image) >= (1, 21, 3)


def test_the_collector_is_the_contrib_distribution() -> None:
    assert SERVICES["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert SERVICES["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")


def test_ports() -> None:
    published = {name: [p.split(":")[0] for p in spec.get("ports", [])]
                 for name, spec in SERVICES.items()}
    assert published == {"bundles": ["8080"], "opa": ["8181"],
                         "otel-collector": ["4317", "4318"], "jaeger": ["16686"]}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_mounted_file_is_in_the_repository_or_documented(service: str) -> None:
    header = (ROOT / "docker-compose.yml").read_text().split("\nname:")[0]
    for source, _ in mounts(service):
        if not source.startswith("./"):
            assert source in COMPOSE.get("volumes", {}), source   # a named volume
        elif source in GENERATED:
            assert source.removeprefix("./").split("/")[0] in header  # how to make it
        else:
            assert (ROOT / source).is_file(), f"{service} mounts {source}, which is missing"


def test_the_private_key_is_never_served() -> None:
    served = [source for source, _ in mounts("bundles")]
    assert "./build/bundles" in served
    assert not any(source in ("./build", "./build/", "./build/keys") for source in served)


# -- OPA ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def opa() -> dict[str, Any]:
    command = SERVICES["opa"]["command"]
    config = next(a.split("=", 1)[1] for a in command if a.startswith("--config-file="))
    return yaml.safe_load(mounted("opa", config).read_text())


def test_opa_config_keys_are_opas(opa: dict[str, Any]) -> None:
    assert set(opa) <= OPA_TOP_LEVEL
    for name, service in opa["services"].items():
        assert set(service) <= OPA_SERVICE and service["url"], name
    assert set(opa["decision_logs"]) <= OPA_DECISION_LOGS
    assert set(opa["status"]) <= OPA_STATUS
    for key in opa["keys"].values():
        assert set(key) <= OPA_KEY


def test_opa_polls_the_bundle_server_with_an_explicit_key_id(opa: dict[str, Any]) -> None:
    bundle = opa["bundles"]["veto"]
    assert set(bundle) <= OPA_BUNDLE
    assert set(bundle["polling"]) <= OPA_POLLING
    assert bundle["polling"]["min_delay_seconds"] <= bundle["polling"]["max_delay_seconds"]
    assert set(bundle["signing"]) <= OPA_SIGNING
    keyid = bundle["signing"]["keyid"]
    assert keyid in opa["keys"]
    url = opa["services"][bundle["service"]]["url"]
    assert url == "http://bundles"   # the nginx service, port 80
    location = (ROOT / "deploy" / "nginx.conf").read_text()
    assert f"location /{bundle['resource'].split('/')[0]}/" in location
    set_file = [a for a in SERVICES["opa"]["command"] if a.startswith("--set-file=")]
    assert set_file == [f"--set-file=keys.{keyid}.key=/keys/veto-public.pem"]
    mounted("opa", "/keys/veto-public.pem")


def test_opa_persists_where_a_volume_is(opa: dict[str, Any]) -> None:
    assert opa["bundles"]["veto"]["persist"] is True
    assert any(target == opa["persistence_directory"] for _, target in mounts("opa"))


def test_opa_traces_to_the_collector(opa: dict[str, Any]) -> None:
    tracing = opa["distributed_tracing"]
    assert set(tracing) <= OPA_TRACING and tracing["type"] in ("grpc", "http")
    host, port = tracing["address"].split(":")
    assert host in SERVICES and port == ("4317" if tracing["type"] == "grpc" else "4318")
    assert tracing["encryption"] == "off"


def test_opa_listens_on_all_interfaces() -> None:
    assert "--addr=0.0.0.0:8181" in SERVICES["opa"]["command"]


# -- the collector -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return yaml.safe_load(mounted("otel-collector",
                                  "/etc/otelcol-contrib/config.yaml").read_text())


def test_collector_components_exist_in_the_pinned_version(collector: dict[str, Any]) -> None:
    pinned = version(SERVICES["otel-collector"]["image"])
    for kind, names in COLLECTOR.items():
        for name in collector[kind]:
            component = name.split("/")[0]
            assert component in names, f"{kind}: {component} is not in contrib {pinned}"
    if pinned < (0, 144, 0):
        assert not any(n.split("/")[0] in ("otlp_grpc", "otlp_http")
                       for n in collector["exporters"])


def test_collector_pipeline_uses_defined_components(collector: dict[str, Any]) -> None:
    pipeline = collector["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(collector[kind])


def test_collector_listens_on_all_interfaces_and_exports(collector: dict[str, Any]) -> None:
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    jaeger = collector["exporters"]["otlp/jaeger"]
    assert jaeger["endpoint"] == "jaeger:4317" and jaeger["tls"]["insecure"] is True
    path = collector["exporters"]["file"]["path"]
    target = next(t for _, t in mounts("otel-collector") if path.startswith(t + "/"))
    source = next(s for s, t in mounts("otel-collector") if t == target)
    assert source == "./out/traces"   # what `veto-opa traces list --file` reads


def test_build_writes_straight_into_the_served_directory(tmp_path: Path) -> None:
    target = tmp_path / "build" / "bundles" / "veto.tar.gz"
    subprocess.run([sys.executable, "-m", "veto_opa.cli", "build",
                    str(ROOT / "examples" / "policies.yaml"), "-o", str(target)],
                   check=True, capture_output=True)
    assert target.is_file()
    assert [p.name for p in target.parent.iterdir()] == ["veto.tar.gz"]   # no temporary left
