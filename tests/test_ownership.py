"""What the operator owns, on the local control plane: it prunes only what its DorisCluster controls and
never what the spec references; it does nothing but status while the DorisCluster is being deleted; it
takes over the official operator's objects without restarting a pod or changing a replica count; it
puts back a hand-edited label.  Each test runs its own operator, watching only its namespace."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from doris_operator.builders import names
from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_operator.reconcile.observed import ADOPTED_TEMPLATE
from doris_sim.images import ImageDriver
from harness import Kubectl, Operator, eventually, names_of, sample, status, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]
NAME = "doriscluster-sample"
RESYNC = 2.0
HOLD = "test.doris.apache.org/hold"


@pytest.fixture
def setup(kube_cluster: Any, kubectl: Kubectl, tmp_path: Path) -> Iterator[tuple[str, ImageDriver]]:
    """A namespace and the simulated images; the test starts the operator when it wants it."""
    ns = kubectl.new_namespace()
    driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME, tablets_per_be=20).start()
    try:
        yield ns, driver
    finally:
        driver.stop()


def light(driver: ImageDriver) -> dict[str, Any]:
    """The sample without its 42 CPUs, asking the simulated FE."""
    doc = sample()
    doc["metadata"]["annotations"] = {FE_ADDRESS_ANNOTATION: f"{driver.host}:{driver.port}"}
    for comp in ("feSpec", "beSpec"):
        for key in ("requests", "limits"):
            doc["spec"][comp].pop(key, None)
    return doc


def operator(kube_cluster: Any, tmp_path: Path, ns: str) -> Operator:
    return Operator(kube_cluster, tmp_path, "--resync", str(RESYNC), "-n", ns, name=f"operator-{ns}").start()


def api_writes(op: Operator, verbs: tuple[str, ...] = ("apply", "delete")) -> float:
    return sum(
        v
        for k, v in op.metrics().items()
        if k.startswith("doris_operator_api_requests_total") and any(f'verb="{verb}"' in k for verb in verbs)
    )


def settled_writes(op: Operator, quiet: float = 2 * RESYNC, timeout: float = 60) -> float:
    """The write count once it stayed the same for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = api_writes(op), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the operator's writes never settled"
        time.sleep(0.5)
        now = api_writes(op)
        if now != last:
            last, since = now, time.monotonic()
    return last


class Watch:
    """Polls ``check`` in a thread all along; every non-empty answer is a violation."""

    def __init__(self, check: Any, interval: float = 0.2) -> None:
        self.check, self.interval = check, interval
        self.violations: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            found = self.check()
            self.checks += 1
            if found:
                self.violations.append(found)
            self._stop.wait(self.interval)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_auth_secret_switched_to_the_generated_secret_deletes_nothing_referenced(
    kube_cluster: Any, kubectl: Kubectl, tmp_path: Path, setup: tuple[str, ImageDriver]
) -> None:
    ns, driver = setup
    op = operator(kube_cluster, tmp_path, ns)
    secret = names.admin_secret(NAME)
    try:
        doc = light(driver)
        doc["spec"]["adminUser"] = {"name": "root", "password": ""}
        kubectl.apply(doc, ns)
        wait_ready(kubectl, ns)
        uid = kubectl.json("secret", secret, "-n", ns)["metadata"]["uid"]

        def gone() -> str:
            found = kubectl("get", "secret", secret, "-n", ns, "-o", "jsonpath={.metadata.uid}", check=False)
            return "" if found.strip() == uid else f"Secret {secret}: {found.strip() or 'missing'}"

        with Watch(gone, 0.3) as watch:
            # what the deprecation warning for adminUser suggests: name the Secret made from it
            switched = copy.deepcopy(doc)
            del switched["spec"]["adminUser"]
            switched["spec"]["authSecret"] = secret
            kubectl.apply(switched, ns)
            eventually(
                lambda: (
                    status(kubectl, ns).get("observedGeneration")
                    == kubectl.json("dcr", NAME, "-n", ns)["metadata"]["generation"]
                ),
                60,
                what="the switch reconciled",
            )
            time.sleep(4 * RESYNC)
            wait_ready(kubectl, ns)
        assert watch.checks >= 3 and watch.violations == [], watch.violations[:3]
        events = kubectl.items("events", ns)
        assert not [e for e in events if e["reason"] == "Deleted"], [e["message"] for e in events]
        # every pod still mounts it
        for pod in kubectl.items("pods", ns, f"{names.LABEL_CLUSTER}={NAME}"):
            assert {"secretName": secret} in [
                {k: v for k, v in (vol.get("secret") or {}).items() if k == "secretName"}
                for vol in pod["spec"]["volumes"]
            ]
    finally:
        op.stop()


def test_foreground_deletion_applies_nothing_and_deletes_no_pod(
    kube_cluster: Any, kubectl: Kubectl, tmp_path: Path, setup: tuple[str, ImageDriver]
) -> None:
    ns, driver = setup
    op = operator(kube_cluster, tmp_path, ns)
    try:
        kubectl.apply(light(driver), ns)
        wait_ready(kubectl, ns)
        # hold the deletion open: the garbage collector waits for this Service before the DorisCluster goes
        held = names.internal_service(NAME, "fe")
        kubectl.patch(ns, f'{{"metadata":{{"finalizers":["{HOLD}"]}}}}', target=f"svc/{held}")
        # the count once the operator is done with the Ready cluster (a last apply may trail the Ready)
        before = settled_writes(op)
        kubectl("delete", "dcr", NAME, "-n", ns, "--cascade=foreground", "--wait=false")
        # a change that, were it applied, would write (and roll the BEs): it must not be acted on
        kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":4,"image":"selectdb/doris.be-ubuntu:2.0.3"}}}')
        eventually(
            lambda: not names_of(kubectl, "statefulsets", ns), 60, what="the GC to delete the StatefulSets"
        )

        def recreated() -> str:
            made = names_of(kubectl, "statefulsets", ns) | names_of(kubectl, "poddisruptionbudgets", ns)
            return f"recreated: {sorted(made)}" if made else ""

        with Watch(recreated, 0.3) as watch:
            eventually(lambda: status(kubectl, ns).get("phase") == "Deleting", 30, what="phase Deleting")
            time.sleep(4 * RESYNC)
        assert watch.checks >= 3 and watch.violations == [], watch.violations[:3]
        assert api_writes(op) == before, "no apply and no delete (pods included) while deleting"
        progressing = next(c for c in status(kubectl, ns)["conditions"] if c["type"] == "Progressing")
        assert progressing["reason"] == "Deleting"
        kubectl.patch(ns, '{"metadata":{"finalizers":null}}', target=f"svc/{held}")
        eventually(lambda: not kubectl.items("dcr", ns), 60, what="the DorisCluster to go")
    finally:
        op.stop()


def test_hand_edited_labels_are_restored_within_one_resync(
    kube_cluster: Any, kubectl: Kubectl, tmp_path: Path, setup: tuple[str, ImageDriver]
) -> None:
    ns, driver = setup
    op = operator(kube_cluster, tmp_path, ns)
    try:
        kubectl.apply(light(driver), ns)
        wait_ready(kubectl, ns)
        sts, pdb = names.statefulset(NAME, "be"), names.pdb(NAME, "fe")
        for target in (f"sts/{sts}", f"pdb/{pdb}"):
            generation = kubectl.json(*target.split("/"), "-n", ns)["metadata"]["generation"]
            kubectl("label", target, "-n", ns, f"{names.LABEL_COMPONENT}=edited", "--overwrite")
            kubectl("label", target, "-n", ns, f"{names.LABEL_OWNER}-")  # out of the operator's index
            edited = kubectl.json(*target.split("/"), "-n", ns)["metadata"]
            assert edited["generation"] == generation  # metadata edits don't bump it
            started = time.monotonic()
            eventually(
                lambda t=target: (
                    kubectl.json(*t.split("/"), "-n", ns)["metadata"]["labels"]
                    == names.object_labels(NAME, "be" if t.startswith("sts") else "fe")
                ),
                RESYNC + 10,
                interval=0.2,
                what=f"the labels of {target} restored",
            )
            assert time.monotonic() - started < RESYNC + 10
        wait_ready(kubectl, ns)
    finally:
        op.stop()


def official_objects(ns: str, uid: str, replicas: dict[str, int]) -> list[dict[str, Any]]:
    """A DorisCluster's StatefulSets and Services as the official operator makes them (its names and
    labels, owner references without ``controller``, RollingUpdate, its hash annotation)."""
    owner = [
        {
            "apiVersion": "doris.selectdb.com/v1",
            "kind": "DorisCluster",
            "name": NAME,
            "uid": uid,
            "blockOwnerDeletion": True,
        }
    ]
    ports = {
        "fe": [("http-port", 8030), ("rpc-port", 9020), ("query-port", 9030), ("edit-log-port", 9010)],
        "be": [("be-port", 9060), ("webserver-port", 8040), ("heartbeat-port", 9050), ("brpc-port", 8060)],
    }
    internal_port = {"fe": ("query-port", 9030), "be": ("heartbeat-port", 9050)}
    out: list[dict[str, Any]] = []
    for comp in ("fe", "be"):
        labels = {names.LABEL_OWNER: NAME, names.LABEL_COMPONENT: comp}
        selector = {names.LABEL_OWNER: f"{NAME}-{comp}", names.LABEL_COMPONENT: comp}
        meta = {"namespace": ns, "ownerReferences": owner}
        env = [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "CONFIGMAP_MOUNT_PATH", "value": "/etc/doris"},
            {"name": "USER", "value": "root"},
            {"name": "ENV_FE_ADDR", "value": f"{NAME}-fe-service"},
            {"name": "FE_QUERY_PORT", "value": "9030"},
        ]
        if comp == "fe":
            env.append({"name": "ELECT_NUMBER", "value": "3"})
        health = 8030 if comp == "fe" else 8040
        out.append(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {
                    **meta,
                    "name": f"{NAME}-{comp}",
                    "labels": labels,
                    "annotations": {"app.doris.components/hash": "2860170593"},
                },
                "spec": {
                    "replicas": replicas[comp],
                    "selector": {"matchLabels": selector},
                    "serviceName": f"{NAME}-{comp}-internal",
                    "podManagementPolicy": "Parallel",
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                    "revisionHistoryLimit": 5,
                    "template": {
                        "metadata": {"labels": {**selector, names.LABEL_CLUSTER: NAME}},
                        "spec": {
                            "containers": [
                                {
                                    "name": comp,
                                    "image": f"selectdb/doris.{comp}-ubuntu:2.0.2",
                                    "command": [f"/opt/apache-doris/{comp}_entrypoint.sh"],
                                    "args": ["$(ENV_FE_ADDR)"],
                                    "env": env,
                                    "ports": [{"name": n, "containerPort": p} for n, p in ports[comp]],
                                    "readinessProbe": {
                                        "httpGet": {"path": "/api/health", "port": health},
                                        "periodSeconds": 5,
                                        "failureThreshold": 3,
                                    },
                                    "volumeMounts": [{"name": "podinfo", "mountPath": "/etc/podinfo"}],
                                }
                            ],
                            "volumes": [
                                {
                                    "name": "podinfo",
                                    "downwardAPI": {
                                        "items": [
                                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
                                        ]
                                    },
                                }
                            ],
                            "terminationGracePeriodSeconds": 330 if comp == "fe" else 200,
                        },
                    },
                },
            }
        )
        name, port = internal_port[comp]
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    **meta,
                    "name": f"{NAME}-{comp}-internal",
                    "labels": {**labels, names.LABEL_SERVICE_ROLE: "internal"},
                },
                "spec": {
                    "clusterIP": "None",
                    "publishNotReadyAddresses": True,
                    "selector": selector,
                    "ports": [{"name": name, "port": port, "targetPort": port}],
                },
            }
        )
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    **meta,
                    "name": f"{NAME}-{comp}-service",
                    "labels": {**labels, names.LABEL_SERVICE_ROLE: "access"},
                },
                "spec": {
                    "selector": selector,
                    "sessionAffinity": "ClientIP",
                    "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports[comp]],
                },
            }
        )
    return out


def test_the_official_operators_objects_are_adopted_without_a_pod_restart(
    kube_cluster: Any, kubectl: Kubectl, tmp_path: Path, setup: tuple[str, ImageDriver]
) -> None:
    ns, driver = setup
    doc = light(driver)
    kubectl.apply(doc, ns)  # no operator runs yet: the official one made the objects below
    uid = kubectl.json("dcr", NAME, "-n", ns)["metadata"]["uid"]
    replicas = {"fe": 3, "be": 3}
    for obj in official_objects(ns, uid, replicas):
        kubectl("create", "--field-manager=dorisoperator", "-f", "-", input=yaml.safe_dump(obj))
    selector = f"{names.LABEL_CLUSTER}={NAME}"

    def running() -> dict[str, str] | None:
        pods = kubectl.items("pods", ns, selector)
        ready = {
            p["metadata"]["name"]: p["metadata"]["uid"]
            for p in pods
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        }
        return ready if len(ready) == sum(replicas.values()) == len(pods) else None

    pods = eventually(running, 90, what="the official operator's pods running")
    driver.wait_registered(3, 3)

    def changed() -> str:
        now = {p["metadata"]["name"]: p["metadata"] for p in kubectl.items("pods", ns, selector)}
        moved = [
            n
            for n, uid in pods.items()
            if n not in now or now[n]["uid"] != uid or now[n].get("deletionTimestamp")
        ]
        extra = sorted(set(now) - set(pods))
        counts = {c: kubectl.json("sts", f"{NAME}-{c}", "-n", ns)["spec"]["replicas"] for c in replicas}
        problems = [f"pods replaced: {moved}"] if moved else []
        problems += [f"new pods: {extra}"] if extra else []
        problems += [f"replicas {counts}"] if counts != replicas else []
        return "; ".join(problems)

    op = operator(kube_cluster, tmp_path, ns)
    try:
        with Watch(changed, 0.5) as watch:
            for comp in replicas:
                eventually(
                    lambda c=comp: kubectl.json("sts", f"{NAME}-{c}", "-n", ns)["metadata"]["labels"].get(
                        names.LABEL_MANAGED_BY
                    ),
                    60,
                    what=f"StatefulSet {comp} taken over",
                )
            wait_ready(kubectl, ns)
            time.sleep(4 * RESYNC)  # a few resyncs more: still nothing replaced
            wait_ready(kubectl, ns)
        assert watch.checks >= 3 and watch.violations == [], watch.violations[:3]
        for comp in replicas:
            sts = kubectl.json("sts", f"{NAME}-{comp}", "-n", ns)
            ref = sts["metadata"]["ownerReferences"]
            assert [(r["uid"], r.get("controller")) for r in ref] == [(uid, True)]
            assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}  # rollingUpdate went with its owner
            assert "app.doris.components/hash" not in sts["metadata"].get("annotations", {})
            assert ADOPTED_TEMPLATE in sts["metadata"]["annotations"]
            assert sts["status"]["updateRevision"] == sts["status"]["currentRevision"]
            for kind, name in (("svc", f"{NAME}-{comp}-internal"), ("svc", f"{NAME}-{comp}-service")):
                svc = kubectl.json(kind, name, "-n", ns)
                assert svc["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY
        events = {e["reason"] for e in kubectl.items("events", ns)}
        assert "Adopted" in events and "RollingUpdate" not in events

        # A change of the spec that changes the pod template: now the BEs move to the operator's own
        # template, one pod at a time, with nothing of the official one left behind.
        changed_doc = copy.deepcopy(doc)
        changed_doc["spec"]["beSpec"]["image"] = "selectdb/doris.be-ubuntu:2.0.3"
        kubectl.apply(changed_doc, ns)

        def moved_over() -> bool:
            sts = kubectl.json("sts", f"{NAME}-be", "-n", ns)
            container = sts["spec"]["template"]["spec"]["containers"][0]
            be_pods = kubectl.items("pods", ns, f"{names.LABEL_COMPONENT}=be")
            return (
                container["image"].endswith("2.0.3")
                and "httpGet" not in container["readinessProbe"]  # the official probe handler is gone
                and "preStop" in container["lifecycle"]
                and ADOPTED_TEMPLATE not in sts["metadata"].get("annotations", {})
                and len(be_pods) == 3
                and all(p["spec"]["containers"][0]["image"].endswith("2.0.3") for p in be_pods)
            )

        eventually(moved_over, 180, what="the BEs on the operator's template")
        st = wait_ready(kubectl, ns)
        assert st["beStatus"]["ready"] == "3/3"
        fe = kubectl.json("sts", f"{NAME}-fe", "-n", ns)
        assert ADOPTED_TEMPLATE in fe["metadata"]["annotations"]  # the FE template was not changed
        assert {p["metadata"]["uid"] for p in kubectl.items("pods", ns, f"{names.LABEL_COMPONENT}=fe")} == {
            u for n, u in pods.items() if "-fe-" in n
        }
    finally:
        op.stop()
