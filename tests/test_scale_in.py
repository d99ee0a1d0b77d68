"""Safe scale-in on the local control plane, with the simulated FE playing Doris and the images:
BEs leave through DECOMMISSION and their pods go only at 0 tablets; FE observers are dropped first."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from doris_operator.builders import names
from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.images import ImageDriver
from harness import Kubectl, Operator, eventually, sample, status, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]
NAME = "doriscluster-sample"
Setup = tuple[str, ImageDriver, Operator]


def manifest(driver: ImageDriver, fe: int = 3, be: int = 5) -> dict[str, Any]:
    doc = sample()
    doc["metadata"].setdefault("annotations", {})[FE_ADDRESS_ANNOTATION] = f"{driver.host}:{driver.port}"
    for comp, replicas in (("feSpec", fe), ("beSpec", be)):
        doc["spec"][comp]["replicas"] = replicas
        for key in ("requests", "limits"):
            doc["spec"][comp].pop(key, None)
    return doc


@pytest.fixture
def cluster(
    kube_cluster: Any, kubectl: Kubectl, tmp_path: Path
) -> Iterator[tuple[str, ImageDriver, Operator]]:
    ns = kubectl.new_namespace()
    driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME, tablets_per_be=60, decommission_rate=6.0).start()
    op = Operator(kube_cluster, tmp_path, "--resync", "2", "-n", ns).start()
    try:
        yield ns, driver, op
    finally:
        op.stop()
        driver.stop()


def backends(driver: ImageDriver) -> dict[str, dict[str, Any]]:
    return {str(b["Host"]): b for b in driver.cluster.show_backends().dicts()}


class TabletGuard:
    """Watches, all along, that no BE pod is gone or terminating while its backend holds tablets."""

    def __init__(self, kubectl: Kubectl, ns: str, driver: ImageDriver) -> None:
        self.kubectl, self.ns, self.driver = kubectl, ns, driver
        self.violations: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TabletGuard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            pods = {
                p["metadata"]["name"]
                for p in self.kubectl.items("pods", self.ns, "app.kubernetes.io/component=be")
                if not p["metadata"].get("deletionTimestamp")
            }
            for host, be in backends(self.driver).items():
                pod = host.split(".")[0]
                if int(be["TabletNum"]) > 0 and pod not in pods:
                    self.violations.append(f"{pod} gone with {be['TabletNum']} tablets")
            self.checks += 1
            self._stop.wait(0.1)


def test_be_scale_in_decommissions_first_and_survives_an_operator_kill(
    kubectl: Kubectl, cluster: Setup
) -> None:
    ns, driver, op = cluster
    kubectl.apply(manifest(driver, be=5), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(3, 5)
    total = sum(int(b["TabletNum"]) for b in backends(driver).values())
    leaving = {names.pod_fqdn(NAME, "be", i, ns) for i in (3, 4)}
    with TabletGuard(kubectl, ns, driver) as guard:
        kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":3}}}')

        def draining() -> bool:
            bes = backends(driver)
            return all(bes[h]["SystemDecommissioned"] == "true" for h in leaving)

        eventually(draining, 30, what="the two highest BEs decommissioning")
        st = status(kubectl, ns)
        assert set(st["beStatus"].get("decommissioning", {})) <= {f"{NAME}-be-3", f"{NAME}-be-4"}
        assert kubectl.json("sts", f"{NAME}-be", "-n", ns)["spec"]["replicas"] == 5  # pods stay meanwhile
        op.kill(signal.SIGKILL)  # in the middle of the drain
        op.start()
        eventually(lambda: kubectl.json("sts", f"{NAME}-be", "-n", ns)["spec"]["replicas"] == 3, 90)
        st = wait_ready(kubectl, ns)
        eventually(lambda: len(kubectl.items("pods", ns, "app.kubernetes.io/component=be")) == 3, 30)
    assert guard.checks > 20 and guard.violations == []
    remaining = backends(driver)
    assert set(remaining) == {names.pod_fqdn(NAME, "be", i, ns) for i in range(3)}
    assert sum(int(b["TabletNum"]) for b in remaining.values()) == total  # every tablet moved, none lost
    assert st["beStatus"]["ready"] == "3/3" and "decommissioning" not in st["beStatus"]
    reasons = {e["reason"] for e in kubectl.items("events", ns) if e["involvedObject"]["name"] == NAME}
    assert {"Decommissioning", "ScaledIn"} <= reasons


def test_raising_replicas_again_cancels_the_decommission(kubectl: Kubectl, cluster: Setup) -> None:
    ns, driver, _ = cluster
    driver.cluster.set_decommission_rate(0.5)
    kubectl.apply(manifest(driver, be=4), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(3, 4)
    last = names.pod_fqdn(NAME, "be", 3, ns)
    kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":3}}}')
    eventually(lambda: backends(driver)[last]["SystemDecommissioned"] == "true", 30)
    kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":4}}}')
    eventually(
        lambda: backends(driver)[last]["SystemDecommissioned"] == "false", 30, what="decommission canceled"
    )
    st = wait_ready(kubectl, ns)
    assert st["beStatus"]["ready"] == "4/4" and len(backends(driver)) == 4


def test_fe_scale_in_drops_observers_and_refuses_below_election_number(
    kubectl: Kubectl, cluster: Setup
) -> None:
    ns, driver, _ = cluster
    kubectl.apply(manifest(driver, fe=5, be=3), ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(5, 3)
    roles = {str(f["Host"]).split(".")[0]: f["Role"] for f in driver.cluster.show_frontends().dicts()}
    assert roles[f"{NAME}-fe-3"] == roles[f"{NAME}-fe-4"] == "OBSERVER"
    kubectl.patch(ns, '{"spec":{"feSpec":{"replicas":3}}}')
    eventually(lambda: kubectl.json("sts", f"{NAME}-fe", "-n", ns)["spec"]["replicas"] == 3, 60)
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
    assert kubectl.json("sts", f"{NAME}-fe", "-n", ns)["spec"]["replicas"] == 3
    assert len(driver.cluster.show_frontends().dicts()) == 3
