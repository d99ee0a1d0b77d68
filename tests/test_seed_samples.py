"""Every DorisCluster sample of the seed document renders the Services its `kubectl get service`
listing shows, and StatefulSets with the sample's replicas, images and resources."""

from __future__ import annotations

from typing import Any

import pytest

import seeds
from doris_operator.api.validation import parse_cluster
from doris_operator.builders import build

SAMPLES = seeds.samples()


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_the_seed_document_has_the_four_access_samples() -> None:
    assert [s.title for s in SAMPLES] == ["ClusterIP", "LoadBalancer", "NodePort", "NodePort-pinned"]


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.title for s in SAMPLES])
def test_services_match_the_listing(sample: seeds.Sample) -> None:
    services = _by_kind(build(parse_cluster(sample.manifest)), "Service")
    assert set(services) == set(sample.services)
    for name, row in sample.services.items():
        spec = services[name]["spec"]
        if row.cluster_ip == "None":
            assert spec["clusterIP"] == "None" and "type" not in spec  # headless, listed as ClusterIP
        else:
            assert spec["type"] == row.type
        assert [(p["port"], p["protocol"]) for p in spec["ports"]] == [
            (p, proto) for p, _, proto in row.ports
        ]
        assert all(p["targetPort"] == p["port"] for p in spec["ports"])
        if sample.title.endswith("-pinned"):
            # nodePorts 31001-31008 are fixed by servicePorts: they must be exactly the listing's
            assert [p.get("nodePort") for p in spec["ports"]] == [node for _, node, _ in row.ports]
        else:
            # unpinned node ports are allocated by the apiserver: we must not set them
            assert all("nodePort" not in p for p in spec["ports"])


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.title for s in SAMPLES])
def test_statefulsets_carry_replicas_images_and_resources(sample: seeds.Sample) -> None:
    sets = _by_kind(build(parse_cluster(sample.manifest)), "StatefulSet")
    assert set(sets) == {"doriscluster-sample-fe", "doriscluster-sample-be"}
    for comp in ("fe", "be"):
        want = sample.manifest["spec"][f"{comp}Spec"]
        sts = sets[f"doriscluster-sample-{comp}"]
        assert sts["spec"]["replicas"] == want["replicas"]
        assert sts["spec"]["podManagementPolicy"] == "Parallel"
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        assert container["image"] == want["image"]
        assert container["resources"] == {"requests": want["requests"], "limits": want["limits"]}
