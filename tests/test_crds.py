"""The checked-in CRDs are generated from the models, structural, and small enough for client-side
`kubectl apply` (whose last-applied annotation holds at most 262144 bytes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from doris_operator.api import crdgen

ROOT = Path(__file__).resolve().parents[1]


def test_checked_in_crds_are_up_to_date() -> None:
    for crd in crdgen.all_crds():
        path = ROOT / crdgen.CRD_DIR / crdgen.crd_filename(crd)
        assert path.exists(), f"{path} missing: run python -m doris_operator.api.crdgen"
        assert path.read_text() == crdgen.render_yaml(crd), (
            f"{path} is stale: run python -m doris_operator.api.crdgen and commit the result"
        )


def _walk(node: Any, path: str = "") -> list[str]:
    """Structural-schema violations: $ref, non int-or-string unions, nodes without a type."""
    problems: list[str] = []
    if not isinstance(node, dict):
        return problems
    for key in ("$ref", "$defs", "definitions", "oneOf", "allOf", "not", "title", "default"):
        if key in node:
            problems.append(f"{path}: {key}")
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        problems.append(f"{path}: anyOf without x-kubernetes-int-or-string")
    if "type" not in node and not node.get("x-kubernetes-int-or-string"):
        problems.append(f"{path}: no type")
    if node.get("additionalProperties") is False:
        problems.append(f"{path}: additionalProperties false")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties")
    for name, sub in (node.get("properties") or {}).items():
        problems += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _walk(node["additionalProperties"], f"{path}{{}}")
    return problems


def test_schema_is_structural() -> None:
    for crd in crdgen.all_crds():
        for version in crd["spec"]["versions"]:
            assert _walk(version["schema"]["openAPIV3Schema"]) == []


def test_preserve_unknown_fields_only_on_embedded_kubernetes_objects() -> None:
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("x-kubernetes-preserve-unknown-fields"):
                found.append(path.rsplit(".", 1)[-1].rstrip("[]"))
            for key, sub in node.items():
                walk(
                    sub,
                    f"{path}.{key}"
                    if key not in ("properties", "items")
                    else path + ("[]" if key == "items" else ""),
                )

    walk(crdgen.doriscluster_crd()["spec"]["versions"][0]["schema"], "")
    allowed = {
        "valueFrom", "affinity", "securityContext", "containerSecurityContext", "topologySpreadConstraints",
        "podTemplate", "metrics", "behavior", "selector", "dataSource", "dataSourceRef",
    }  # fmt: skip
    assert set(found) <= allowed, set(found) - allowed


def test_small_enough_for_client_side_apply() -> None:
    for crd in crdgen.all_crds():
        assert len(json.dumps(crd, separators=(",", ":"))) < 262144 // 2


def test_official_field_names_are_present() -> None:
    spec = crdgen.doriscluster_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    top = spec["properties"]
    assert {
        "feSpec", "beSpec", "cnSpec", "brokerSpec", "adminUser", "authSecret",
        "enableRestartWhenConfigChange", "kerberosInfo", "sharedPersistentVolumeClaims",
    } <= set(top)  # fmt: skip
    base = top["beSpec"]["properties"]
    assert {
        "replicas", "image", "imagePullSecrets", "service", "configMapInfo", "persistentVolumes",
        "systemInitialization", "requests", "limits", "claims", "nodeSelector", "envVars", "affinity",
        "tolerations", "podLabels", "hostAliases", "securityContext", "containerSecurityContext", "secrets",
        "annotations", "serviceAccount", "feAddress", "startTimeout", "liveTimeout", "readinessProbePolicy",
        "enableWorkloadGroup", "skipDefaultSystemInit", "enableFeAffinity", "autoResolveLimitCPU", "fsGroup",
    } <= set(base)  # fmt: skip
    assert "electionNumber" in top["feSpec"]["properties"]
    assert "autoScalingPolicy" in top["cnSpec"]["properties"]
    assert "kickOffAffinityBe" in top["brokerSpec"]["properties"]
    assert set(base["service"]["properties"]) >= {"type", "servicePorts", "annotations", "loadBalancerIP"}
    assert top["feSpec"]["required"] == ["image"]
    assert set(top["feSpec"]["properties"]["feAddress"]["properties"]) == {"ServiceName", "endpoints"}


def test_printer_columns_and_status_subresource() -> None:
    version = yaml.safe_load(crdgen.render_yaml(crdgen.doriscluster_crd()))["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    names = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert names == ["Phase", "FE", "BE", "Age"]
