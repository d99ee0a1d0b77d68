"""The controller manager on the local control plane: it creates, converges, reports, recovers."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest

from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.images import ImageDriver
from harness import Kubectl, Operator, eventually, names_of, sample, status, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]


@pytest.fixture(scope="module")
def operator(
    kube_cluster: Any, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(kube_cluster, tmp_path_factory.mktemp("operator"), "--resync", "3").start()
    yield op
    op.stop()


def test_seed_sample_converges_to_ready(kubectl: Kubectl, operator: Operator) -> None:
    ns = kubectl.new_namespace()
    kubectl.apply(sample(), ns)
    st = wait_ready(kubectl, ns)
    assert names_of(kubectl, "statefulsets", ns) == {"doriscluster-sample-fe", "doriscluster-sample-be"}
    assert names_of(kubectl, "services", ns) == {
        "doriscluster-sample-fe-service",
        "doriscluster-sample-fe-internal",
        "doriscluster-sample-be-service",
        "doriscluster-sample-be-internal",
    }
    assert names_of(kubectl, "poddisruptionbudgets", ns) == {
        "doriscluster-sample-fe",
        "doriscluster-sample-be",
    }
    pods = kubectl.items("pods", ns)
    assert len(pods) == 6 and all(p["status"]["phase"] == "Running" for p in pods)
    assert st["feStatus"]["ready"] == "3/3" and st["beStatus"]["ready"] == "3/3"
    assert (
        st["observedGeneration"]
        == kubectl.json("dcr", "doriscluster-sample", "-n", ns)["metadata"]["generation"]
    )
    conditions = {c["type"]: c["status"] for c in st["conditions"]}
    assert conditions == {"Ready": "True", "Progressing": "False", "Degraded": "False"}
    assert st["feStatus"]["componentCondition"]["phase"] == "available"
    access = st["feStatus"]["access"]
    assert access["service"] == "doriscluster-sample-fe-service" and access["type"] == "ClusterIP"
    assert [p["port"] for p in access["ports"]] == [8030, 9020, 9030, 9010]
    # every child is owned by the DorisCluster
    uid = kubectl.json("dcr", "doriscluster-sample", "-n", ns)["metadata"]["uid"]
    for kind in ("statefulsets", "services", "poddisruptionbudgets"):
        for obj in kubectl.items(kind, ns):
            (ref,) = obj["metadata"]["ownerReferences"]
            assert (ref["uid"], ref["controller"]) == (uid, True)
    # kubectl get dcr shows health at a glance
    table = kubectl("get", "dcr", "-n", ns)
    assert table.split("\n")[0].split()[:4] == ["NAME", "PHASE", "FE", "BE"]
    assert table.split("\n")[1].split()[:4] == ["doriscluster-sample", "Ready", "3/3", "3/3"]
    # one "Created" Event for the new cluster, though its BEs were made in a later reconcile (after an FE)
    created = [
        e["message"]
        for e in kubectl.items("events", ns)
        if e["reason"] == "Created" and e["involvedObject"]["kind"] == "DorisCluster"
    ]
    assert len(created) == 1, created
    assert created[0].startswith("created ") and all(
        n in created[0]
        for n in ("doriscluster-sample-fe", "doriscluster-sample-be", "doriscluster-sample-be-service")
    ), created


@pytest.mark.parametrize(
    "name",
    ["doriscluster-loadbalancer.yaml", "doriscluster-nodeport.yaml", "doriscluster-nodeport-pinned.yaml"],
)
def test_every_access_sample_converges(kubectl: Kubectl, operator: Operator, name: str) -> None:
    ns = kubectl.new_namespace()
    manifest = sample(name)
    kubectl.apply(manifest, ns)
    st = wait_ready(kubectl, ns)
    svc = kubectl.json("service", "doriscluster-sample-fe-service", "-n", ns)
    assert svc["spec"]["type"] == manifest["spec"]["feSpec"]["service"]["type"]
    node_ports = [p.get("nodePort") for p in svc["spec"]["ports"]]
    assert all(node_ports)  # allocated (or pinned) by the apiserver
    if "pinned" in name:
        assert node_ports == [31001, 31002, 31003, 31004]
    assert [p.get("nodePort") for p in st["feStatus"]["access"]["ports"]] == node_ports


def test_changes_converge(kube_cluster: Any, kubectl: Kubectl, operator: Operator) -> None:
    ns = kubectl.new_namespace()
    manifest = sample()
    # the BE rolling update asks Doris (disable_query, alive): the simulated FE stands in for it
    driver = ImageDriver(kube_cluster.kubeconfig, ns, "doriscluster-sample").start()
    manifest["metadata"]["annotations"] = {FE_ADDRESS_ANNOTATION: f"{driver.host}:{driver.port}"}
    try:
        _change_and_converge(kubectl, ns, manifest)
    finally:
        driver.stop()


def _change_and_converge(kubectl: Kubectl, ns: str, manifest: dict[str, Any]) -> None:
    kubectl.apply(manifest, ns)
    wait_ready(kubectl, ns)
    changed = copy.deepcopy(manifest)
    changed["spec"]["beSpec"]["replicas"] = 4
    changed["spec"]["beSpec"]["image"] = "selectdb/doris.be-ubuntu:2.0.3"
    changed["spec"]["beSpec"]["requests"] = {"cpu": 4, "memory": "8Gi"}
    changed["spec"]["beSpec"]["limits"] = {"cpu": 4, "memory": "8Gi"}
    changed["spec"]["feSpec"]["service"] = {"type": "NodePort"}
    kubectl.apply(changed, ns)

    def converged() -> bool:
        sts = kubectl.json("sts", "doriscluster-sample-be", "-n", ns)
        container = sts["spec"]["template"]["spec"]["containers"][0]
        svc = kubectl.json("svc", "doriscluster-sample-fe-service", "-n", ns)
        pods = kubectl.items("pods", ns, "app.kubernetes.io/component=be")
        return (
            sts["spec"]["replicas"] == 4
            and container["image"] == "selectdb/doris.be-ubuntu:2.0.3"
            and container["resources"]["requests"] == {"cpu": "4", "memory": "8Gi"}
            and svc["spec"]["type"] == "NodePort"
            and len(pods) == 4
            and all(p["spec"]["containers"][0]["image"].endswith("2.0.3") for p in pods)
        )

    eventually(converged, 120, what="changes applied")
    st = wait_ready(kubectl, ns)
    assert st["beStatus"]["ready"] == "4/4"
    assert st["feStatus"]["access"]["type"] == "NodePort"


def test_removing_a_component_prunes_it(kubectl: Kubectl, operator: Operator) -> None:
    ns = kubectl.new_namespace()
    manifest = sample()
    manifest["spec"]["brokerSpec"] = {"replicas": 1, "image": "selectdb/doris.broker-ubuntu:2.0.2"}
    kubectl.apply(manifest, ns)
    wait_ready(kubectl, ns)
    assert "doriscluster-sample-broker" in names_of(kubectl, "statefulsets", ns)
    kubectl.patch(ns, '[{"op":"remove","path":"/spec/brokerSpec"}]', "json")
    eventually(lambda: "doriscluster-sample-broker" not in names_of(kubectl, "statefulsets", ns), 60)
    assert "doriscluster-sample-broker-internal" not in names_of(kubectl, "services", ns)
    # the status is written after the deletes: a Ready read in between is the one from before them
    st = eventually(
        lambda: (st := status(kubectl, ns)).get("phase") == "Ready" and "brokerStatus" not in st and st,
        60,
        what="Ready without brokerStatus",
    )
    # BE holds data: removing its spec while it runs pods is refused, and nothing is deleted
    kubectl.patch(ns, '[{"op":"remove","path":"/spec/beSpec"}]', "json")

    def refused() -> dict[str, Any] | None:
        st = status(kubectl, ns)
        return st if st.get("phase") == "Degraded" else None

    st = eventually(refused, 60, what="removal refused")
    cond = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert cond["reason"] == "RemovalRefused" and "spec.beSpec.replicas to 0" in cond["message"]
    assert "doriscluster-sample-be" in names_of(kubectl, "statefulsets", ns)
    assert len(kubectl.items("pods", ns, "app.kubernetes.io/component=be")) == 3


def test_delete_removes_children_and_keeps_pvcs(kubectl: Kubectl, operator: Operator) -> None:
    ns = kubectl.new_namespace()
    manifest = sample()
    manifest["spec"]["beSpec"]["replicas"] = 2
    manifest["spec"]["beSpec"]["persistentVolumes"] = [
        {
            "name": "be-storage",
            "mountPath": "/opt/apache-doris/be/storage",
            "persistentVolumeClaimSpec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "10Gi"}},
            },
        }
    ]
    kubectl.apply(manifest, ns)
    wait_ready(kubectl, ns)
    assert names_of(kubectl, "pvc", ns) == {
        "be-storage-doriscluster-sample-be-0",
        "be-storage-doriscluster-sample-be-1",
    }
    kubectl("delete", "dcr", "doriscluster-sample", "-n", ns, "--wait=true", "--timeout=60s")
    eventually(
        lambda: not names_of(kubectl, "statefulsets", ns) and not names_of(kubectl, "services", ns), 60
    )
    eventually(lambda: not kubectl.items("pods", ns), 60)
    assert names_of(kubectl, "poddisruptionbudgets", ns) == set()
    assert names_of(kubectl, "pvc", ns) == {
        "be-storage-doriscluster-sample-be-0",
        "be-storage-doriscluster-sample-be-1",
    }


def test_missing_config_map_degrades_only_that_cluster(kubectl: Kubectl, operator: Operator) -> None:
    ns = kubectl.new_namespace()
    broken = sample()
    broken["metadata"]["name"] = "broken"
    broken["spec"]["beSpec"]["configMapInfo"] = {"configMapName": "be-conf"}
    kubectl.apply(broken, ns)
    kubectl.apply(sample(), ns)

    def degraded() -> dict[str, Any] | None:
        st = status(kubectl, ns, "broken")
        return st if st.get("phase") == "Degraded" else None

    st = eventually(degraded, 90, what="broken cluster Degraded")
    cond = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert cond["reason"] == "ConfigMapMissing"
    assert "ConfigMap be-conf (spec.beSpec.configMapInfo) does not exist" in cond["message"]
    assert "broken-be" not in names_of(kubectl, "statefulsets", ns)  # nothing half-made
    events = kubectl.items("events", ns, "")
    assert any(
        e["involvedObject"]["name"] == "broken"
        and e["reason"] == "ConfigMapMissing"
        and e["type"] == "Warning"
        for e in events
    ), [e["reason"] for e in events]
    wait_ready(kubectl, ns)  # the other cluster is unaffected
    # creating the ConfigMap heals it
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "be-conf"},
            "data": {"be.conf": "be_port = 9060\n"},
        },
        ns,
    )
    wait_ready(kubectl, ns, "broken")


def test_pause_annotation_stops_reconciling(kubectl: Kubectl, operator: Operator) -> None:
    ns = kubectl.new_namespace()
    kubectl.apply(sample(), ns)
    wait_ready(kubectl, ns)
    kubectl("annotate", "dcr", "doriscluster-sample", "-n", ns, "doris.apache.org/paused=true")
    eventually(lambda: status(kubectl, ns).get("phase") == "Paused", 30)
    progressing = next(c for c in status(kubectl, ns)["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "Paused")
    kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":5}}}')
    time.sleep(8)  # more than two resyncs
    assert kubectl.json("sts", "doriscluster-sample-be", "-n", ns)["spec"]["replicas"] == 3
    kubectl("annotate", "dcr", "doriscluster-sample", "-n", ns, "doris.apache.org/paused-")
    eventually(lambda: kubectl.json("sts", "doriscluster-sample-be", "-n", ns)["spec"]["replicas"] == 5, 60)
    wait_ready(kubectl, ns)


def test_drift_is_repaired(kubectl: Kubectl, operator: Operator) -> None:
    ns = kubectl.new_namespace()
    kubectl.apply(sample(), ns)
    wait_ready(kubectl, ns)
    kubectl.patch(ns, '{"spec":{"sessionAffinity":"None"}}', target="svc/doriscluster-sample-be-service")
    eventually(
        lambda: (
            kubectl.json("svc", "doriscluster-sample-be-service", "-n", ns)["spec"]["sessionAffinity"]
            == "ClientIP"
        ),
        30,
    )
    kubectl("delete", "svc", "doriscluster-sample-fe-internal", "-n", ns)
    eventually(lambda: "doriscluster-sample-fe-internal" in names_of(kubectl, "services", ns), 30)


def test_metrics_and_health(operator: Operator) -> None:
    assert operator.healthy() and operator.ready()
    metrics = operator.metrics()
    assert any(k.startswith("doris_operator_reconciles_total") for k in metrics)
    assert any(k.startswith("doris_operator_reconcile_duration_seconds_bucket") for k in metrics)
    assert any(k.startswith('doris_operator_clusters{phase="Ready"}') for k in metrics)
    assert any(k.startswith("doris_operator_api_requests_total") for k in metrics)
