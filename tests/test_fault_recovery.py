"""Fault recovery on the local control plane with the simulated images: readiness that follows Doris
(including the first start, with no gate preset), drain-safe evictions through the real ``kubectl drain``,
the FE quorum guard, and failover of pods on a lost node with its cap.

The tests share one cluster and run in order (each leaves it Ready)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import localcluster
from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.images import ImageDriver
from harness import Kubectl, Operator, eventually, free_port, sample, status, wait_ready

pytestmark = [pytest.mark.cluster]

NAME = "doriscluster-sample"
GATE = "doris.apache.org/member-alive"
WEBHOOK = "doris-fault-recovery"


@pytest.fixture(scope="module")
def operator(
    kube_cluster: Any, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    port = free_port()
    op = Operator(
        kube_cluster, tmp_path_factory.mktemp("operator"), "--resync", "3",
        "--webhook", "--webhook-host", "127.0.0.1", "--webhook-port", str(port),
        "--webhook-url", f"https://127.0.0.1:{port}", "--webhook-namespace", "default",
        "--webhook-config-name", WEBHOOK, "--webhook-secret-name", f"{WEBHOOK}-cert",
        "--webhook-policy-name", f"{WEBHOOK}-sts", "--webhook-no-policy",
    ).start()  # fmt: skip
    try:
        eventually(
            lambda: (
                "evictions.pods.doris.apache.org"
                in kubectl("get", "validatingwebhookconfiguration", WEBHOOK, "-o", "json", check=False)
            ),
            60,
            what="the eviction webhook registered",
        )
        yield op
    finally:
        op.stop()
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            kubectl("delete", kind, WEBHOOK, "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def doris(kube_cluster: Any, kubectl: Kubectl, operator: Operator) -> Iterator[tuple[str, ImageDriver]]:
    ns = kubectl.new_namespace("fr")
    driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME).start()
    manifest = sample()
    manifest["metadata"]["annotations"] = {FE_ADDRESS_ANNOTATION: f"{driver.host}:{driver.port}"}
    # kwok leaves the readiness gates to the operator, as a kubelet would: first start must not deadlock
    for comp in ("feSpec", "beSpec"):
        manifest["spec"][comp]["annotations"] = {localcluster.READINESS_GATES_ANNOTATION: "leave"}
    kubectl.apply(manifest, ns)
    try:
        wait_ready(kubectl, ns, timeout=180)
        yield ns, driver
    finally:
        driver.stop()
        kubectl.delete_created_namespaces()


def fqdn(ns: str, comp: str, ordinal: int) -> str:
    return f"{NAME}-{comp}-{ordinal}.{NAME}-{comp}-internal.{ns}.svc.cluster.local"


def pod(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    out = kubectl("get", "pod", name, "-n", ns, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def condition(p: dict[str, Any] | None, ctype: str) -> str | None:
    for c in ((p or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return str(c["status"])
    return None


def ready_endpoints(kubectl: Kubectl, ns: str, service: str) -> set[str]:
    """Pods behind the Service's EndpointSlices that are ready (clients are sent there)."""
    slices = kubectl.items("endpointslices", ns, f"kubernetes.io/service-name={service}")
    return {
        e["targetRef"]["name"]
        for s in slices
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready") and e.get("targetRef")
    }


def backend(driver: ImageDriver, host: str) -> dict[str, Any]:
    result = driver.server.run("SHOW BACKENDS")
    assert result is not None
    return next(r for r in result.dicts() if r["Host"] == host)


def frontend_alive(driver: ImageDriver, host: str) -> bool:
    result = driver.server.run("SHOW FRONTENDS")
    return result is not None and any(r["Host"] == host and r["Alive"] == "true" for r in result.dicts())


def test_first_start_and_gates_set_from_doris(kubectl: Kubectl, doris: tuple[str, ImageDriver]) -> None:
    ns, _ = doris
    for p in kubectl.items("pods", ns):
        assert {"conditionType": GATE} in p["spec"]["readinessGates"]
        assert condition(p, GATE) == "True" and condition(p, "Ready") == "True", p["metadata"]["name"]
        gate = next(c for c in p["status"]["conditions"] if c["type"] == GATE)
        assert gate["reason"] == "Alive"


def test_readiness_follows_doris(kubectl: Kubectl, doris: tuple[str, ImageDriver]) -> None:
    ns, driver = doris
    be1, service = f"{NAME}-be-1", f"{NAME}-be-service"
    eventually(lambda: be1 in ready_endpoints(kubectl, ns, service), 30)
    driver.cluster.set_backend_alive(fqdn(ns, "be", 1), 9050, False)
    p = eventually(lambda: (x := pod(kubectl, ns, be1)) and condition(x, "Ready") == "False" and x, 20)
    assert condition(p, GATE) == "False"
    eventually(lambda: be1 not in ready_endpoints(kubectl, ns, service), 20, what="be-1 out of the slice")
    assert {f"{NAME}-be-0", f"{NAME}-be-2"} <= ready_endpoints(kubectl, ns, service)
    driver.cluster.set_backend_alive(fqdn(ns, "be", 1), 9050, True)
    eventually(lambda: condition(pod(kubectl, ns, be1), "Ready") == "True", 20)
    eventually(lambda: be1 in ready_endpoints(kubectl, ns, service), 20, what="be-1 back in the slice")


def _drain(kube_cluster: Any, node: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(kube_cluster.kubectl_path()), f"--kubeconfig={kube_cluster.kubeconfig}", "drain", node,
         "--ignore-daemonsets", "--delete-emptydir-data", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_kubectl_drain_waits_for_running_queries(
    kube_cluster: Any, kubectl: Kubectl, operator: Operator, doris: tuple[str, ImageDriver]
) -> None:
    ns, driver = doris
    be0 = f"{NAME}-be-0"
    host = fqdn(ns, "be", 0)
    before = pod(kubectl, ns, be0)
    assert before is not None
    node, uid = before["spec"]["nodeName"], before["metadata"]["uid"]
    queries = [driver.cluster.start_query(host), driver.cluster.start_query(host)]
    violations: list[str] = []
    stop = threading.Event()

    def watch() -> None:  # invariant: the BE pod never goes while queries run on it
        while not stop.is_set():
            running = driver.cluster.running_queries(host)
            p = pod(kubectl, ns, be0)
            if running and (
                p is None or p["metadata"]["uid"] != uid or p["metadata"].get("deletionTimestamp")
            ):
                violations.append(f"{be0} deleted with {len(running)} queries running")
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    drain = _drain(kube_cluster, node, "--timeout=180s")  # the whole node: its FE goes too
    try:
        eventually(
            lambda: (
                backend(driver, host)["Status"]
                and '"isQueryDisabled":true' in backend(driver, host)["Status"]
            ),
            30,
            what="disable_query set",
        )
        annotated = eventually(
            lambda: (
                (pod(kubectl, ns, be0) or {})
                .get("metadata", {})
                .get("annotations", {})
                .get("doris.apache.org/drain-started-at")
            ),
            30,
        )
        assert annotated
        with pytest.raises(ValueError):
            driver.cluster.start_query(host)  # Doris schedules nothing new on it
        time.sleep(12)  # kubectl retries every 5s: at least two more refusals
        p = pod(kubectl, ns, be0)
        assert p is not None and p["metadata"]["uid"] == uid and not p["metadata"].get("deletionTimestamp")
        assert drain.poll() is None
        for q in queries:
            driver.cluster.finish_query(q)
        out, _ = drain.communicate(timeout=120)
        assert drain.returncode == 0, out
        assert f"node/{node} drained" in out
        refusals = [
            line for line in operator.log_path.read_text().splitlines() if f"{ns}/{be0} refused" in line
        ]
        assert len(refusals) >= 2 and "queries are disabled and 2 tasks still run on it" in refusals[-1]
    finally:
        stop.set()
        watcher.join(5)
        if drain.poll() is None:
            drain.kill()
        kubectl("uncordon", node)
    assert not violations, violations
    after = eventually(lambda: (p := pod(kubectl, ns, be0)) and p["metadata"]["uid"] != uid and p, 60)
    assert after["spec"]["nodeName"] != node
    # back: the image re-enabled its queries, and the gate lets clients in again
    eventually(lambda: condition(pod(kubectl, ns, be0), "Ready") == "True", 60)
    assert '"isQueryDisabled":false' in backend(driver, host)["Status"]
    wait_ready(kubectl, ns)


def test_fe_drain_that_breaks_quorum_is_refused(
    kube_cluster: Any, kubectl: Kubectl, operator: Operator, doris: tuple[str, ImageDriver]
) -> None:
    ns, driver = doris
    fe2 = pod(kubectl, ns, f"{NAME}-fe-2")
    assert fe2 is not None
    # paused: the operator leaves the gates alone, so the dead FE-1 stays Ready and the PDB allows one
    kubectl("annotate", "dcr", NAME, "-n", ns, "doris.apache.org/paused=true")
    eventually(lambda: status(kubectl, ns).get("phase") == "Paused", 30)
    driver.cluster.set_frontend_alive(fqdn(ns, "fe", 1), 9010, False)
    node = fe2["spec"]["nodeName"]
    try:
        pdb = kubectl.json("pdb", f"{NAME}-fe", "-n", ns)
        assert pdb["status"]["disruptionsAllowed"] == 1
        drain = _drain(kube_cluster, node, "--pod-selector=app.kubernetes.io/component=fe", "--timeout=15s")
        out, _ = drain.communicate(timeout=60)
        assert drain.returncode != 0, out
        assert (
            "would leave 1 alive followers of 3, fewer than the quorum of 2" in operator.log_path.read_text()
        )
        p = pod(kubectl, ns, f"{NAME}-fe-2")
        assert p is not None and p["metadata"]["uid"] == fe2["metadata"]["uid"]
    finally:
        kubectl("uncordon", node)
        driver.cluster.set_frontend_alive(fqdn(ns, "fe", 1), 9010, True)
        kubectl("annotate", "dcr", NAME, "-n", ns, "doris.apache.org/paused-")
    wait_ready(kubectl, ns)


def _lose(kubectl: Kubectl, node: str) -> None:
    """The node stops answering: kwok no longer plays its kubelet, and its Ready turns False."""
    kubectl("annotate", "node", node, f"{localcluster.FAKE_NODE_ANNOTATION}-")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    patch = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "KubeletStopped", "message": "lost",
                 "lastHeartbeatTime": now, "lastTransitionTime": now}
            ]
        }
    }  # fmt: skip
    kubectl("patch", "node", node, "--subresource=status", "--type=strategic", "-p", json.dumps(patch))


def _restore(kubectl: Kubectl, node: str) -> None:
    kubectl("annotate", "node", node, f"{localcluster.FAKE_NODE_ANNOTATION}=fake", "--overwrite")
    eventually(
        lambda: condition(kubectl.json("node", node), "Ready") == "True", 60, what=f"{node} Ready again"
    )


def test_node_loss_fails_over_with_a_cap(kubectl: Kubectl, doris: tuple[str, ImageDriver]) -> None:
    ns, driver = doris
    kubectl.patch(
        ns, json.dumps({"spec": {"failover": {"period": "10s", "maxFailovers": 1, "window": "1h"}}})
    )
    pods = kubectl.items("pods", ns)
    # a node under a BE and an FE follower that is not the master (fe-0 bootstrapped as the master; the
    # simulated FE server answers as the master, and an FE answering for itself always says it is alive)
    node = next(
        n
        for n in sorted({p["spec"]["nodeName"] for p in pods})
        if {
            p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods if p["spec"]["nodeName"] == n
        }
        == {"fe", "be"}
        and not any(p["metadata"]["name"] == f"{NAME}-fe-0" and p["spec"]["nodeName"] == n for p in pods)
    )
    on_node = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods if p["spec"]["nodeName"] == node}
    be_lost = min(n for n in on_node if "-be-" in n)  # the first to go (by name); the rest wait for the cap
    fe_lost = next(n for n in on_node if "-fe-" in n)
    others = sorted(n for n in on_node if n != be_lost)
    changes: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:  # when each lost pod was replaced
        while not stop.is_set():
            for name, uid in on_node.items():
                p = pod(kubectl, ns, name)
                if name not in changes and (p is None or p["metadata"]["uid"] != uid):
                    changes[name] = time.monotonic()
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lost_at = time.monotonic()
    _lose(kubectl, node)
    for name in on_node:  # its processes' heartbeats stop
        comp, ordinal = name.split("-")[-2], int(name.split("-")[-1])
        if comp == "be":
            driver.cluster.set_backend_alive(fqdn(ns, comp, ordinal), 9050, False)
        else:
            driver.cluster.set_frontend_alive(fqdn(ns, comp, ordinal), 9010, False)
    try:
        eventually(lambda: be_lost in changes, 60, what="the BE failed over")
        assert changes[be_lost] - lost_at >= 10, "deleted within the period"
        recreated = eventually(
            lambda: (p := pod(kubectl, ns, be_lost)) and p["spec"].get("nodeName") and p, 60
        )
        assert recreated["spec"]["nodeName"] != node
        eventually(
            lambda: backend(driver, fqdn(ns, "be", int(be_lost.rsplit("-", 1)[1])))["Alive"] == "true",
            60,
            what="the BE alive again",
        )

        # the FE (and any other BE) lost with it waits for the cap (1 per hour)
        def capped() -> bool:
            waiting = (status(kubectl, ns).get("failover") or {}).get("waiting") or []
            return all(any(n in w and "failover cap reached" in w for w in waiting) for n in others)

        eventually(capped, 60, what=f"the others waiting for the cap: {status(kubectl, ns).get('failover')}")
        time.sleep(10)
        assert not set(others) & set(changes)
        records = status(kubectl, ns)["failover"]["records"]
        assert [(r["pod"], r["node"]) for r in records] == [(be_lost, node)]
        eventually(lambda: status(kubectl, ns)["failover"]["records"][0].get("completed"), 60)
        events = kubectl.items("events", ns)
        assert any(e["reason"] == "Failover" and be_lost in e["message"] for e in events)
        # a larger cap lets the others go too (one per component at a time), and they come back alive
        kubectl.patch(ns, json.dumps({"spec": {"failover": {"maxFailovers": len(on_node)}}}))
        eventually(
            lambda: set(others) <= set(changes),
            120,
            what=f"all failed over: {status(kubectl, ns).get('failover')}",
        )
        ordinal = int(fe_lost.rsplit("-", 1)[1])
        eventually(lambda: frontend_alive(driver, fqdn(ns, "fe", ordinal)), 60, what="the FE alive again")
    finally:
        stop.set()
        watcher.join(5)
        _restore(kubectl, node)
    wait_ready(kubectl, ns, timeout=120)


def test_deleted_node_fails_over(kubectl: Kubectl, doris: tuple[str, ImageDriver]) -> None:
    ns, driver = doris
    # the failovers of the previous test count in the window: room for more
    kubectl.patch(ns, json.dumps({"spec": {"failover": {"period": "10s", "maxFailovers": 20}}}))
    pods = kubectl.items("pods", ns)
    master_node = next(p["spec"]["nodeName"] for p in pods if p["metadata"]["name"] == f"{NAME}-fe-0")
    node = next(
        n
        for n in sorted({p["spec"]["nodeName"] for p in pods})
        if n != master_node
        and any(p["spec"]["nodeName"] == n and "-be-" in p["metadata"]["name"] for p in pods)
    )
    on_node = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods if p["spec"]["nodeName"] == node}
    saved = kubectl.json("node", node)
    for name in on_node:
        comp, ordinal = name.split("-")[-2], int(name.split("-")[-1])
        if comp == "be":
            driver.cluster.set_backend_alive(fqdn(ns, comp, ordinal), 9050, False)
        else:
            driver.cluster.set_frontend_alive(fqdn(ns, comp, ordinal), 9010, False)
    gone_at = time.monotonic()
    kubectl("delete", "node", node, "--wait=false")
    try:

        def lost_recorded() -> bool:
            return node in ((status(kubectl, ns).get("failover") or {}).get("lostNodes") or {})

        eventually(lost_recorded, 30, what=f"{node} recorded as gone")
        for name, uid in on_node.items():
            eventually(
                lambda n=name, u=uid: (p := pod(kubectl, ns, n)) is not None and p["metadata"]["uid"] != u,  # type: ignore[misc]
                90,
                what=f"{name} recreated",
            )
        assert time.monotonic() - gone_at >= 10

        def recorded() -> set[str]:
            records = (status(kubectl, ns).get("failover") or {}).get("records") or []
            return {r["pod"] for r in records if r["node"] == node}

        eventually(
            lambda: recorded() == set(on_node), 30, what=f"failovers off {node} recorded: {recorded()}"
        )
    finally:
        meta = {k: saved["metadata"][k] for k in ("name", "labels", "annotations")}
        kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": meta,
                                                       "spec": {}, "status": saved["status"]}))  # fmt: skip
        eventually(lambda: condition(kubectl.json("node", node), "Ready") == "True", 60)
    wait_ready(kubectl, ns, timeout=120)
    assert node not in ((status(kubectl, ns).get("failover") or {}).get("lostNodes") or {})
