"""Safe scale-in on the local control plane, with the simulated Doris playing the FE and the images:
BEs leave through DECOMMISSION and their pods go only once the master FE confirms them empty or gone,
whatever the cluster's DNS domain, with IP registration, and when a non-master FE answers; FE observers
are dropped first.  A watcher checks all along that no BE pod goes while its BE holds tablets."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from doris_operator.reconcile.intent import MEMBERS
from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.images import ImageDriver
from doris_sim.server import EMPTY_BACKENDS, UNREACHABLE
from harness import Kubectl, Operator, eventually, sample, status, wait_ready
from safety import BePodGuard

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]
NAME = "doriscluster-sample"
Setup = tuple[str, ImageDriver, Operator]
Start = Callable[..., Setup]


def manifest(driver: ImageDriver, fe: int = 3, be: int = 5) -> dict[str, Any]:
    doc = sample()
    doc["metadata"].setdefault("annotations", {})[FE_ADDRESS_ANNOTATION] = f"{driver.host}:{driver.port}"
    for comp, replicas in (("feSpec", fe), ("beSpec", be)):
        doc["spec"][comp]["replicas"] = replicas
        for key in ("requests", "limits"):
            doc["spec"][comp].pop(key, None)
    return doc


@pytest.fixture
def start(kube_cluster: Any, kubectl: Kubectl, tmp_path: Path) -> Iterator[Start]:
    """Start the simulated images (with the given ImageDriver options) and the operator."""
    running: list[tuple[ImageDriver, Operator]] = []

    def go(resync: float = 2, **options: Any) -> Setup:
        ns = kubectl.new_namespace()
        options = {"tablets_per_be": 60, "decommission_rate": 6.0, **options}
        driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME, **options).start()
        op = Operator(kube_cluster, tmp_path, "--resync", str(resync), "-n", ns).start()
        running.append((driver, op))
        return ns, driver, op

    yield go
    for driver, op in running:
        op.stop()
        driver.stop()


def backends(driver: ImageDriver) -> dict[str, dict[str, Any]]:
    return {str(b["Host"]): b for b in driver.cluster.show_backends().dicts()}


def sts_replicas(kubectl: Kubectl, ns: str, comp: str = "be") -> int:
    return int(kubectl.json("sts", f"{NAME}-{comp}", "-n", ns)["spec"]["replicas"])


def registered(driver: ImageDriver, *ordinals: int) -> set[str]:
    out = set()
    for i in ordinals:
        address = driver.registered_address(f"{NAME}-be-{i}")
        assert address is not None
        out.add(address[0])
    return out


def scale_in_5_to_3(kubectl: Kubectl, ns: str, driver: ImageDriver, kube_cluster: Any) -> BePodGuard:
    """5 -> 3 with the guard watching; returns it (checked by the caller)."""
    leaving = registered(driver, 3, 4)
    total = sum(int(b["TabletNum"]) for b in backends(driver).values())
    with BePodGuard(kube_cluster.kubeconfig, ns, driver) as guard:
        kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":3}}}')
        eventually(
            lambda: all(
                backends(driver).get(h, {}).get("SystemDecommissioned", "true") == "true" for h in leaving
            ),
            60,
            what="the two highest BEs decommissioning",
        )
        eventually(lambda: sts_replicas(kubectl, ns) == 3, 120, what="the StatefulSet shrunk")
        eventually(lambda: len(kubectl.items("pods", ns, "app.kubernetes.io/component=be")) == 3, 60)
        wait_ready(kubectl, ns)
    assert guard.checks > 20 and guard.violations == [], guard.violations
    remaining = backends(driver)
    assert not leaving & set(remaining)
    assert sum(int(b["TabletNum"]) for b in remaining.values()) == total  # every replica moved, none lost
    assert driver.cluster.lowest_healthy_replicas_seen() == 3
    return guard


def test_be_scale_in_decommissions_first_and_survives_an_operator_kill(
    kubectl: Kubectl, start: Start, kube_cluster: Any
) -> None:
    ns, driver, op = start(decommission_rate=3.0)
    kubectl.apply(manifest(driver, be=5), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(3, 5)
    leaving = registered(driver, 3, 4)
    # a BE registered after the data was loaded starts empty and the balancer fills it: the drain to
    # interrupt must hold something (Ready comes sooner than the balancer)
    eventually(lambda: all(int(backends(driver)[h]["TabletNum"]) >= 20 for h in leaving), 90, what="data")
    with BePodGuard(kube_cluster.kubeconfig, ns, driver) as guard:
        kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":3}}}')
        eventually(
            lambda: all(backends(driver)[h]["SystemDecommissioned"] == "true" for h in leaving),
            30,
            what="the two highest BEs decommissioning",
        )
        st = status(kubectl, ns)
        assert set(st["beStatus"].get("decommissioning", {})) <= {f"{NAME}-be-3", f"{NAME}-be-4"}
        assert sts_replicas(kubectl, ns) == 5  # pods stay meanwhile
        sts = kubectl.json("sts", f"{NAME}-be", "-n", ns)
        assert '"leaving":true' in sts["metadata"]["annotations"][MEMBERS]  # the intent, on the object
        op.kill(signal.SIGKILL)  # in the middle of the drain
        op.start()
        eventually(lambda: sts_replicas(kubectl, ns) == 3, 90)
        st = wait_ready(kubectl, ns)
        eventually(lambda: len(kubectl.items("pods", ns, "app.kubernetes.io/component=be")) == 3, 30)
    assert guard.checks > 20 and guard.violations == [], guard.violations
    assert set(backends(driver)) == registered(driver, 0, 1, 2)
    assert st["beStatus"]["ready"] == "3/3" and "decommissioning" not in st["beStatus"]
    reasons = {e["reason"] for e in kubectl.items("events", ns) if e["involvedObject"]["name"] == NAME}
    assert {"Decommissioning", "ScaledIn"} <= reasons


def test_scale_in_with_cluster_domain_corp_local(kubectl: Kubectl, start: Start, kube_cluster: Any) -> None:
    ns, driver, _ = start(cluster_domain="corp.local")
    kubectl.apply(manifest(driver, be=5), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(3, 5)
    assert all(h.endswith(".svc.corp.local") for h in backends(driver))
    scale_in_5_to_3(kubectl, ns, driver, kube_cluster)


def test_scale_in_with_ip_registration_and_the_leaving_pod_down(
    kubectl: Kubectl, start: Start, kube_cluster: Any
) -> None:
    ns, driver, _ = start(fqdn_mode=False)
    kubectl.apply(manifest(driver, be=5), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(3, 5)
    assert all(h.count(".") == 3 and h.replace(".", "").isdigit() for h in backends(driver))
    old = registered(driver, 4)

    # the operator has seen the pods' IPs (no Doris call needed): they are on the StatefulSet
    def recorded() -> bool:
        sts = kubectl.json("sts", f"{NAME}-be", "-n", ns)
        return all(h in sts["metadata"]["annotations"].get(MEMBERS, "") for h in old)

    eventually(recorded, 30, what="the pod IPs recorded")
    # be-4 goes down: its node can't be scheduled again, so its replacement has no IP (and no BE)
    nodes = [n["metadata"]["name"] for n in kubectl.items("nodes", "")]
    for node in nodes:
        kubectl("cordon", node)
    try:
        pod = kubectl.json("pod", f"{NAME}-be-4", "-n", ns)
        with BePodGuard(kube_cluster.kubeconfig, ns, driver) as guard:
            guard.allowed.add(pod["metadata"]["uid"])  # the test's own deletion
            kubectl("delete", "pod", f"{NAME}-be-4", "-n", ns, "--wait=false")
            eventually(lambda: backends(driver)[next(iter(old))]["Alive"] == "false", 30, what="be-4 dead")
            kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":3}}}')
            eventually(
                lambda: (
                    backends(driver).get(next(iter(old)), {}).get("SystemDecommissioned") == "true"
                    or next(iter(old)) not in backends(driver)
                ),
                60,
                what="the down BE decommissioned, found by its recorded IP",
            )
            eventually(lambda: sts_replicas(kubectl, ns) == 3, 120, what="the StatefulSet shrunk")
            time.sleep(2)
        assert guard.checks > 20 and guard.violations == [], guard.violations
    finally:
        for node in nodes:
            kubectl("uncordon", node)
    wait_ready(kubectl, ns)
    remaining = backends(driver)
    assert not old & set(remaining) and len(remaining) == 3
    assert driver.cluster.lowest_healthy_replicas_seen() >= 2


def test_scale_in_answered_by_a_non_master_fe(kubectl: Kubectl, start: Start, kube_cluster: Any) -> None:
    ns, driver, _ = start()
    kubectl.apply(manifest(driver, be=5), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(3, 5)
    follower = driver.registered_address(f"{NAME}-fe-1")
    assert follower is not None
    driver.route_to(f"{NAME}-fe-1")  # the Service lands on a follower...
    driver.cluster.pause_replay(*follower)  # ...whose own catalog stops moving: only the master knows
    scale_in_5_to_3(kubectl, ns, driver, kube_cluster)


def test_empty_or_unreachable_fe_shrinks_nothing(kubectl: Kubectl, start: Start, kube_cluster: Any) -> None:
    ns, driver, _ = start()
    kubectl.apply(manifest(driver, be=5), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(3, 5)

    def degraded(reason: str) -> Callable[[], bool]:
        def check() -> bool:
            st = status(kubectl, ns).get("beStatus") or {}
            cond = next((c for c in st.get("conditions", []) if c["type"] == "Degraded"), {})
            return cond.get("status") == "True" and cond.get("reason") == reason

        return check

    with BePodGuard(kube_cluster.kubeconfig, ns, driver) as guard:
        driver.set_fault(EMPTY_BACKENDS)
        kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":3}}}')
        eventually(degraded("MembershipUnknown"), 30, what="MembershipUnknown")
        st = status(kubectl, ns)["beStatus"]
        message = next(c["message"] for c in st["conditions"] if c["type"] == "Degraded")
        assert "lists no backend" in message
        driver.set_fault(UNREACHABLE)
        eventually(degraded("FEUnreachable"), 30, what="FEUnreachable")
        time.sleep(5)
        assert sts_replicas(kubectl, ns) == 5
        assert all(b["SystemDecommissioned"] == "false" for b in backends(driver).values())
        driver.set_fault(None)
        eventually(lambda: sts_replicas(kubectl, ns) == 3, 120, what="the scale-in once the FE answers")
        wait_ready(kubectl, ns)
    assert guard.checks > 20 and guard.violations == [], guard.violations
    reasons = {e["reason"] for e in kubectl.items("events", ns) if e["type"] == "Warning"}
    assert {"MembershipUnknown", "FEUnreachable"} <= reasons


def test_raising_replicas_again_cancels_the_decommission(kubectl: Kubectl, start: Start) -> None:
    ns, driver, _ = start()
    driver.cluster.set_decommission_rate(0.5)
    kubectl.apply(manifest(driver, be=4), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(3, 4)
    (last,) = registered(driver, 3)
    # a drain long enough to cancel: the last BE registered may still be empty (Ready comes before the
    # balancer fills it), and an empty BE is dropped as soon as it is decommissioned
    eventually(lambda: int(backends(driver)[last]["TabletNum"]) > 5, 90, what="the leaving BE's data")
    kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":3}}}')
    eventually(lambda: backends(driver)[last]["SystemDecommissioned"] == "true", 30)
    kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":4}}}')
    eventually(
        lambda: backends(driver)[last]["SystemDecommissioned"] == "false", 30, what="decommission canceled"
    )
    st = wait_ready(kubectl, ns)
    assert st["beStatus"]["ready"] == "4/4" and len(backends(driver)) == 4


def test_fe_scale_in_drops_observers_and_refuses_below_election_number(
    kubectl: Kubectl, start: Start
) -> None:
    ns, driver, _ = start()
    kubectl.apply(manifest(driver, fe=5, be=3), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(5, 3)
    roles = {str(f["Host"]).split(".")[0]: f["Role"] for f in driver.cluster.show_frontends().dicts()}
    assert roles[f"{NAME}-fe-3"] == roles[f"{NAME}-fe-4"] == "OBSERVER"
    kubectl.patch(ns, '{"spec":{"feSpec":{"replicas":3}}}')
    eventually(lambda: sts_replicas(kubectl, ns, "fe") == 3, 60)
    hosts = {str(f["Host"]).split(".")[0] for f in driver.cluster.show_frontends().dicts()}
    assert hosts == {f"{NAME}-fe-0", f"{NAME}-fe-1", f"{NAME}-fe-2"}
    wait_ready(kubectl, ns)
    kubectl.patch(ns, '{"spec":{"feSpec":{"replicas":2}}}')

    def refused() -> dict[str, Any] | None:
        st = status(kubectl, ns)
        return st if st.get("phase") == "Degraded" else None

    st = eventually(refused, 30, what="FE scale-in below electionNumber refused")
    cond = next(c for c in st["feStatus"]["conditions"] if c["type"] == "Degraded")
    assert cond["reason"] == "ScaleInRefused" and "electionNumber" in cond["message"]
    assert sts_replicas(kubectl, ns, "fe") == 3
    assert len(driver.cluster.show_frontends().dicts()) == 3


def test_the_statefulset_shrinks_soon_after_doris_drops_the_drained_be(
    kubectl: Kubectl, start: Start, kube_cluster: Any
) -> None:
    """No resync to lean on (600 s): while the BE drains, the operator polls the master FE at a pace
    set by the drain's progress, so the StatefulSet shrinks soon after Doris drops the drained BE, well
    before a fixed 30 s requeue would have noticed.  (The figure itself is bench/'s to measure.)"""
    # a tablet a second: between two looks of the old fixed requeue, nothing else wakes the operator
    ns, driver, _ = start(resync=600, tablets_per_be=12, decommission_rate=1.0)
    kubectl.apply(manifest(driver, be=4), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(3, 4)
    (leaving,) = registered(driver, 3)
    # the last BE to register may still be empty (Ready comes before the balancer fills it): an empty
    # BE drains at once, and there would be no drain to follow
    eventually(lambda: int(backends(driver)[leaving]["TabletNum"]) > 5, 90, what="the leaving BE's data")
    with BePodGuard(kube_cluster.kubeconfig, ns, driver) as guard:
        kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":3}}}')
        eventually(lambda: backends(driver)[leaving]["SystemDecommissioned"] == "true", 30, 0.2)
        assert int(backends(driver)[leaving]["TabletNum"]) > 2  # a drain of several seconds ahead
        eventually(lambda: leaving not in backends(driver), 90, 0.1, what="Doris dropping the drained BE")
        dropped = time.monotonic()
        eventually(lambda: sts_replicas(kubectl, ns) == 3, 60, 0.2, what="the StatefulSet shrunk")
        shrunk_after = time.monotonic() - dropped
        wait_ready(kubectl, ns)
    assert guard.violations == [], guard.violations
    assert shrunk_after < 15, f"the StatefulSet shrank {shrunk_after:.1f}s after Doris dropped the BE"
