"""The official operator's manifests, unchanged: our CRD holds every field of the official CRD, and
every official sample parses, passes admission (the NodePort example with a warning) and renders with
its fields honoured.  tests/test_admission_corpus.py does the same through the apiserver."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

import compat
from doris_operator.api import crdgen
from doris_operator.api.validation import parse_cluster
from doris_operator.builders import build
from doris_operator.builders.config import resolve
from doris_operator.webhook import admission
from doris_operator.webhook.admission import Request
from doris_operator.webhook.live import Facts

SAMPLES = compat.samples()
HISTORICAL_PATHS = {f"spec.{c}Spec.feAddress.endpoints.:address" for c in ("fe", "be", "cn", "broker")}
"""Spec paths of older official CRDs that the current one no longer has (``:address``, up to 25.8.0)."""


def spec_paths(crd: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Every property path under ``spec`` (``[]`` for list items, ``{}`` for map values), and the paths
    whose subtree is kept as is (x-kubernetes-preserve-unknown-fields)."""
    paths: set[str] = set()
    preserved: set[str] = set()

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        paths.add(path)
        if node.get("x-kubernetes-preserve-unknown-fields"):
            preserved.add(path)
        for name, sub in (node.get("properties") or {}).items():
            walk(sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")

    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    walk(schema, "spec")
    return paths, preserved


def unheld(official: set[str], ours: set[str], preserved: set[str]) -> list[str]:
    """Official paths our schema neither has nor keeps under a preserve-unknown-fields node."""

    def kept(path: str) -> bool:
        return any(path.startswith(p) and path[len(p) : len(p) + 1] in (".", "[", "{") for p in preserved)

    return sorted(p for p in official if p not in ours and not kept(p))


def test_our_crd_holds_every_field_of_the_official_crd() -> None:
    official, _ = spec_paths(yaml.safe_load(compat.OFFICIAL_CRD.read_text()))
    assert len(official) > 1000  # the whole official schema was read, embedded Kubernetes types included
    ours, preserved = spec_paths(crdgen.doriscluster_crd())
    missing = unheld(official | HISTORICAL_PATHS, ours, preserved)
    assert missing == [], f"{len(missing)} official fields would be pruned: {missing[:20]}"


def test_the_diff_fails_on_a_missing_field() -> None:
    """The diff can fail: drop one field from our schema and it is named."""
    crd = crdgen.doriscluster_crd()
    be = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["beSpec"]
    del be["properties"]["systemInitialization"]["properties"]["claims"]
    del be["properties"]["affinity"]["x-kubernetes-preserve-unknown-fields"]
    official, _ = spec_paths(yaml.safe_load(compat.OFFICIAL_CRD.read_text()))
    missing = unheld(official, *spec_paths(crd))
    assert "spec.beSpec.systemInitialization.claims[].name" in missing
    assert "spec.beSpec.affinity.nodeAffinity" in missing


def test_there_are_samples() -> None:
    ids = [s.id for s in SAMPLES]
    assert len(ids) == 23 and len(set(ids)) == len(ids), ids
    assert {"helm-nodeport", "helm-configmap", "ex-storageclass", "ex-cn-autoscaler"} <= set(ids)


def _verdict(sample: compat.Sample) -> admission.Verdict:
    obj = {**sample.manifest, "metadata": {**sample.manifest["metadata"], "namespace": "doris"}}
    facts = Facts(config_maps=sample.config_maps())
    return admission.validate_doris_cluster(
        Request("u", "CREATE", obj, None, "doris", obj["metadata"]["name"]), facts
    )


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_official_sample_is_admitted_and_rendered_with_its_fields(sample: compat.Sample) -> None:
    verdict = _verdict(sample)
    assert verdict.allowed, verdict.message
    dc = parse_cluster({**sample.manifest, "metadata": {**sample.manifest["metadata"], "namespace": "doris"}})
    config_maps = sample.config_maps()
    objects = build(dc, config_maps)
    ports = {c: {p.number for p in resolve(c, s, config_maps).ports()} for c, s in dc.components()}
    checked = compat.assert_honoured(sample.manifest, objects, ports)
    assert len(checked) >= 4, checked


def test_the_charts_nodeport_example_is_admitted_with_a_warning() -> None:
    (sample,) = [s for s in SAMPLES if s.id == "helm-nodeport"]
    verdict = _verdict(sample)
    assert verdict.allowed
    (warning,) = [w for w in verdict.warnings if "servicePorts" in w]
    assert warning.startswith("spec.beSpec.service.servicePorts[0].targetPort: 9040 is not a port of BE")
    assert "ignored, as the official operator ignores it" in warning


def test_a_config_maps_ports_decide_which_service_ports_apply() -> None:
    """With a ConfigMap, a targetPort is checked against the ports its conf file sets."""
    (sample,) = [s for s in SAMPLES if s.id == "ex-configmap"]
    manifest = {**sample.manifest, "metadata": {**sample.manifest["metadata"], "namespace": "doris"}}
    fe = manifest["spec"]["feSpec"] = {**manifest["spec"]["feSpec"]}
    fe["service"] = {"type": "NodePort", "servicePorts": [{"nodePort": 31030, "targetPort": 19030}]}
    moved = {
        "fe-configmap": {"fe.conf": "query_port = 19030\n"},
        "be-configmap": sample.config_maps()["be-configmap"],
    }
    req = Request("u", "CREATE", manifest, None, "doris", "x")
    verdict = admission.validate_doris_cluster(req, Facts(config_maps=moved))
    assert verdict.allowed and not [w for w in verdict.warnings if "servicePorts" in w], verdict.warnings
    access = next(
        o for o in build(parse_cluster(manifest), moved) if o["metadata"]["name"].endswith("fe-service")
    )
    assert {p["port"]: p.get("nodePort") for p in access["spec"]["ports"]}[19030] == 31030
    default = admission.validate_doris_cluster(req, Facts(config_maps=sample.config_maps()))
    assert any(
        w.startswith("spec.feSpec.service.servicePorts[0].targetPort: 19030 is not a port")
        for w in default.warnings
    )
    unread = admission.validate_doris_cluster(req, None)  # the ConfigMap unknown: no guess
    assert not [w for w in unread.warnings if "servicePorts" in w]


def test_the_older_address_key_is_read_as_address() -> None:
    manifest = {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisCluster",
        "metadata": {"name": "legacy", "namespace": "doris"},
        "spec": {
            "beSpec": {
                "image": "apache/doris:be-2.1.7",
                "feAddress": {"endpoints": {":address": ["fe-0.doris", "fe-1.doris"], "port": 9030}},
            }
        },
    }
    verdict = admission.validate_doris_cluster(Request("u", "CREATE", manifest, None, "doris", "legacy"))
    assert verdict.allowed, verdict.message
    assert any("endpoints[':address'] is read as endpoints.address" in w for w in verdict.warnings)
    sts = next(o for o in build(parse_cluster(manifest)) if o["kind"] == "StatefulSet")
    env = {e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ENV_FE_ADDR"] == "fe-0.doris,fe-1.doris" and env["FE_QUERY_PORT"] == "9030"


def test_system_initialization_claims_reach_the_init_container() -> None:
    manifest = {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisCluster",
        "metadata": {"name": "claims", "namespace": "doris"},
        "spec": {
            "feSpec": {"image": "apache/doris:fe-2.1.7"},
            "beSpec": {
                "image": "apache/doris:be-2.1.7",
                "systemInitialization": {
                    "command": ["/bin/true"],
                    "claims": [{"name": "gpu", "request": "one"}],
                },
            },
        },
    }
    sts = next(
        o
        for o in build(parse_cluster(manifest))
        if o["kind"] == "StatefulSet" and "be" in o["metadata"]["name"]
    )
    init = next(c for c in sts["spec"]["template"]["spec"]["initContainers"] if c["name"] == "init")
    assert init["resources"]["claims"] == [{"name": "gpu", "request": "one"}]
