"""The local control plane behaves like a real cluster: StatefulSets get scheduled, Running and Ready
pods, garbage collection follows ownerReferences, scale-down removes the highest ordinal, and
NodePort allocation works."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

import localcluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture
def ns(kube_cluster: localcluster.LocalCluster) -> Iterator[str]:
    name = f"lc-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl("create", "namespace", name)
    wait_for(
        f"ServiceAccount {name}/default",
        lambda: (
            kube_cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0
        ),
        timeout=60,
    )
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def statefulset(
    name: str, replicas: int = 3, owner: dict[str, Any] | None = None, storage: str | None = None
) -> dict[str, Any]:
    labels = {"app": name}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if owner:
        meta["ownerReferences"] = [owner]
    sts: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "be",
                            "image": "apache/doris:be-3.0.5",
                            # Doris-sample sized: 3 such pods must fit on the fake nodes
                            "resources": {"requests": {"cpu": "8", "memory": "16Gi"}},
                        }
                    ]
                },
            },
        },
    }
    if storage:
        sts["spec"]["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
            }
        ]
        container = sts["spec"]["template"]["spec"]["containers"][0]
        container["volumeMounts"] = [{"name": "data", "mountPath": "/opt/apache-doris/be/storage"}]
    return sts


def pods(cluster: localcluster.LocalCluster, ns: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json("get", "pods", "-n", ns, "-l", f"app={app}")["items"]
    return items


def ready_pods(cluster: localcluster.LocalCluster, ns: str, app: str) -> list[dict[str, Any]]:
    def is_ready(p: dict[str, Any]) -> bool:
        conditions = p.get("status", {}).get("conditions") or []
        return p.get("status", {}).get("phase") == "Running" and any(
            c["type"] == "Ready" and c["status"] == "True" for c in conditions
        )

    return [p for p in pods(cluster, ns, app) if is_ready(p) and not p["metadata"].get("deletionTimestamp")]


def test_statefulset_pods_are_scheduled_running_and_ready(
    kube_cluster: localcluster.LocalCluster, ns: str
) -> None:
    kube_cluster.apply(statefulset("fe"), "-n", ns)

    def three_ready() -> list[dict[str, Any]]:
        ready = ready_pods(kube_cluster, ns, "fe")
        return ready if len(ready) == 3 else []

    ready = wait_for("3 Ready pods", three_ready)
    assert sorted(p["metadata"]["name"] for p in ready) == ["fe-0", "fe-1", "fe-2"]
    for p in ready:
        assert p["spec"]["nodeName"] in kube_cluster.node_names
        assert p["status"]["podIP"]
        assert all(cs["ready"] and "running" in cs["state"] for cs in p["status"]["containerStatuses"])
    wait_for(
        "StatefulSet status.readyReplicas == 3",
        lambda: (
            kube_cluster.kubectl_json("get", "statefulset", "fe", "-n", ns)["status"].get("readyReplicas")
            == 3
        ),
        timeout=60,
    )


def test_deleting_the_owner_garbage_collects_statefulset_and_pods(
    kube_cluster: localcluster.LocalCluster, ns: str
) -> None:
    kube_cluster.kubectl("create", "configmap", "owner", "-n", ns, "--from-literal=k=v")
    uid = kube_cluster.kubectl_json("get", "configmap", "owner", "-n", ns)["metadata"]["uid"]
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid, "blockOwnerDeletion": True}
    kube_cluster.apply(statefulset("owned", owner=owner), "-n", ns)
    wait_for("3 Ready pods", lambda: len(ready_pods(kube_cluster, ns, "owned")) == 3)

    kube_cluster.kubectl("delete", "configmap", "owner", "-n", ns)
    wait_for(
        "the StatefulSet to be garbage-collected",
        lambda: kube_cluster.kubectl("get", "statefulset", "owned", "-n", ns, check=False).returncode != 0,
    )
    wait_for("its pods to be garbage-collected", lambda: pods(kube_cluster, ns, "owned") == [])


def test_scale_down_removes_the_highest_ordinal(kube_cluster: localcluster.LocalCluster, ns: str) -> None:
    kube_cluster.apply(statefulset("be"), "-n", ns)
    wait_for("3 Ready pods", lambda: len(ready_pods(kube_cluster, ns, "be")) == 3)

    kube_cluster.kubectl("scale", "statefulset", "be", "-n", ns, "--replicas=2")

    def names() -> list[str]:
        return sorted(p["metadata"]["name"] for p in pods(kube_cluster, ns, "be"))

    wait_for("be-2 to be deleted", lambda: names() == ["be-0", "be-1"])
    assert sorted(p["metadata"]["name"] for p in ready_pods(kube_cluster, ns, "be")) == ["be-0", "be-1"]


def test_nodeport_allocated_and_pinned_nodeport_honoured(
    kube_cluster: localcluster.LocalCluster, ns: str
) -> None:
    def service(name: str, node_port: int | None = None) -> dict[str, Any]:
        port: dict[str, Any] = {"name": "query", "port": 9030, "targetPort": 9030, "protocol": "TCP"}
        if node_port:
            port["nodePort"] = node_port
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [port]},
        }

    kube_cluster.apply(service("auto"), "-n", ns)
    auto = kube_cluster.kubectl_json("get", "service", "auto", "-n", ns)["spec"]["ports"][0]["nodePort"]
    assert 30000 <= auto <= 32767

    pinned = random.choice([p for p in range(31000, 32000) if p != auto])
    kube_cluster.apply(service("pinned", pinned), "-n", ns)
    got = kube_cluster.kubectl_json("get", "service", "pinned", "-n", ns)["spec"]["ports"][0]["nodePort"]
    assert got == pinned

    clash = kube_cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=_yaml(service("clash", pinned)), check=False
    )
    assert clash.returncode != 0
    assert "already allocated" in clash.stderr


def test_pod_ready_delay_annotation(kube_cluster: localcluster.LocalCluster, ns: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "slow",
            "labels": {"app": "slow"},
            "annotations": {localcluster.POD_READY_DELAY_ANNOTATION: "3s"},
        },
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    kube_cluster.apply(pod, "-n", ns)
    (ready,) = wait_for("the pod to be Ready", lambda: ready_pods(kube_cluster, ns, "slow"), timeout=60)
    created = _ts(ready["metadata"]["creationTimestamp"])
    became_ready = next(
        _ts(c["lastTransitionTime"]) for c in ready["status"]["conditions"] if c["type"] == "Ready"
    )
    assert (became_ready - created).total_seconds() >= 2


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _yaml(obj: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(obj)


def test_volume_claim_templates_get_bound_volumes(kube_cluster: localcluster.LocalCluster, ns: str) -> None:
    kube_cluster.apply(statefulset("pv", storage="100Gi"), "-n", ns)
    wait_for("3 Ready pods", lambda: len(ready_pods(kube_cluster, ns, "pv")) == 3)
    pvcs = kube_cluster.kubectl_json("get", "pvc", "-n", ns)["items"]
    assert sorted(p["metadata"]["name"] for p in pvcs) == ["data-pv-0", "data-pv-1", "data-pv-2"]
    assert all(p["status"]["phase"] == "Bound" for p in pvcs)
    assert all(p["spec"]["storageClassName"] == "standard" for p in pvcs)


def test_validating_admission_policy_is_enforced(kube_cluster: localcluster.LocalCluster, ns: str) -> None:
    name = f"deny-forbidden-{ns}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ]
            },
            "validations": [{"expression": "!has(object.data) || !('forbidden' in object.data)"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
        },
    }
    kube_cluster.apply([policy, binding])
    try:
        # the policy is enforced once the apiserver's policy informer has seen it
        def denied() -> bool:
            r = kube_cluster.kubectl(
                "create", "configmap", "bad", "-n", ns, "--from-literal=forbidden=1", check=False
            )
            if r.returncode == 0:
                kube_cluster.kubectl("delete", "configmap", "bad", "-n", ns)
                return False
            return "ValidatingAdmissionPolicy" in r.stderr

        wait_for("the policy to deny", denied, timeout=30)
        kube_cluster.kubectl("create", "configmap", "good", "-n", ns, "--from-literal=fine=1")
    finally:
        kube_cluster.kubectl(
            "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name, check=False
        )


def test_restart_of_one_component_keeps_the_cluster_state() -> None:
    """LocalCluster.restart (bench/chaos.py's apiserver restart): the same etcd, so objects survive, and
    the control plane schedules new pods afterwards."""
    with localcluster.LocalCluster(nodes=1) as cluster:
        cluster.kubectl("create", "configmap", "before", "-n", "default", "--from-literal=a=1")
        old = cluster._pids["kube-apiserver"]["pid"]
        cluster.restart("kube-apiserver", down=0.5)
        assert cluster._pids["kube-apiserver"]["pid"] != old
        assert cluster.kubectl_json("get", "configmap", "before", "-n", "default")["data"] == {"a": "1"}
        cluster.restart("kube-scheduler")
        cluster.apply(statefulset("after", replicas=1), "-n", "default")
        wait_for("the pod made after the restarts Ready", lambda: ready_pods(cluster, "default", "after"))
        with pytest.raises(localcluster.ClusterError, match="not started"):
            cluster.restart("etcd-backup")
