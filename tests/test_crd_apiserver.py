"""The generated CRD on the real apiserver: it installs (the structural-schema check is the apiserver's),
the seed samples are accepted, and invalid manifests are rejected with the schema's message."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from harness import ROOT, Kubectl, sample

pytestmark = pytest.mark.cluster


def test_crd_is_established_and_structural(kubectl: Kubectl) -> None:
    crd = kubectl.json("crd", "dorisclusters.doris.selectdb.com")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions.get("NonStructuralSchema", "False") == "False"
    assert crd["spec"]["names"]["shortNames"] == ["dcr"]


@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "examples").glob("doriscluster-*.yaml")))
def test_seed_samples_are_accepted(kubectl: Kubectl, path: str) -> None:
    out = kubectl("apply", "--dry-run=server", "-n", "default", "-f", str(ROOT / "examples" / path))
    assert "doriscluster.doris.selectdb.com/doriscluster-sample created (server dry run)" in out


def _apply(kubectl: Kubectl, manifest: dict[str, Any]) -> str:
    result = kubectl.cluster.kubectl(
        "apply", "--dry-run=server", "-n", "default", "-f", "-", input=yaml.safe_dump(manifest), check=False
    )
    assert result.returncode != 0, "the apiserver accepted an invalid manifest"
    return str(result.stderr)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("feSpec", "replicas"), -1, "spec.feSpec.replicas: Invalid value: -1"),
        (
            ("beSpec", "service", "type"),
            "Headless",
            'spec.beSpec.service.type: Unsupported value: "Headless"',
        ),
        (("beSpec", "requests", "cpu"), "8 cores", "spec.beSpec.requests.cpu: Invalid value"),
        (("feSpec", "replicas"), "three", "spec.feSpec.replicas: Invalid value"),
        (("feSpec", "image"), None, "spec.feSpec.image: Required value"),
    ],
)
def test_invalid_manifests_are_rejected_by_the_schema(
    kubectl: Kubectl, path: tuple[str, ...], value: Any, message: str
) -> None:
    manifest = copy.deepcopy(sample())
    node = manifest["spec"]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(path[-1])
    else:
        node[path[-1]] = value
    assert message in _apply(kubectl, manifest)
