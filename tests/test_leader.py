"""Leader election on the local control plane, with client-go's semantics: a leader whose Lease
renewals fail (a proxy between it and the apiserver refuses them; every other request goes through)
sends no write after its renew deadline, and a standby takes over only after the lease duration."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from apiproxy import ApiProxy
from doris_operator.builders import names
from harness import Kubectl, Operator, eventually, sample, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]
NAME = "doriscluster-sample"
LEASE, RENEW, RETRY = 8.0, 5.0, 1.0


class _ViaProxy:
    """What harness.Operator needs of a cluster (``env()``), with the proxy's kubeconfig."""

    def __init__(self, cluster: Any, kubeconfig: Path) -> None:
        self.cluster, self.kubeconfig = cluster, kubeconfig

    def env(self) -> dict[str, str]:
        return {**self.cluster.env(), "KUBECONFIG": str(self.kubeconfig)}


def _light() -> dict[str, Any]:
    doc = sample()
    for comp in ("feSpec", "beSpec"):
        for key in ("requests", "limits"):
            doc["spec"][comp].pop(key, None)
    return doc


def _micro(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_leader_that_cannot_renew_stops_writing_before_a_standby_takes_over(
    kube_cluster: Any, kubectl: Kubectl, tmp_path: Path
) -> None:
    ns, lease_ns = kubectl.new_namespace(), kubectl.new_namespace("lease")
    proxy = ApiProxy(kube_cluster.server, kube_cluster.ca_file, kube_cluster.token).start()
    common = (
        "--resync", "2", "-n", ns, "--leader-elect", "--lease-namespace", lease_ns,
        "--lease-duration", str(LEASE), "--renew-deadline", str(RENEW), "--retry-period", str(RETRY),
    )  # fmt: skip
    via_proxy = _ViaProxy(kube_cluster, proxy.kubeconfig(tmp_path / "proxy.kubeconfig"))
    leader = Operator(via_proxy, tmp_path, *common, "--identity", "replica-a", name="a")
    standby = Operator(kube_cluster, tmp_path, *common, "--identity", "replica-b", name="b")

    def holder() -> str:
        found = kube_cluster.kubectl(
            "get",
            "lease",
            "doris-operator",
            "-n",
            lease_ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
            check=False,
        )
        return str(found.stdout).strip() if found.returncode == 0 else ""

    stop = threading.Event()
    try:
        leader.start()
        eventually(lambda: holder() == "replica-a", 30, what="replica-a to lead")
        standby.start()
        kubectl.apply(_light(), ns)
        wait_ready(kubectl, ns)
        assert holder() == "replica-a"

        # Work that needs writes all along: a new annotation on the FE access Service every 0.3s.
        changes = [0]

        def change() -> None:
            while not stop.is_set():
                changes[0] += 1
                patch = f'{{"spec":{{"feSpec":{{"service":{{"annotations":{{"n":"{changes[0]}"}}}}}}}}}}'
                kubectl.patch(ns, patch)
                stop.wait(0.3)

        writer = threading.Thread(target=change, daemon=True)
        writer.start()
        time.sleep(2)
        proxy.block_leases.set()
        blocked = time.time()
        eventually(lambda: holder() == "replica-b", LEASE + RENEW + 20, what="the standby to take the lease")
        eventually(lambda: leader.proc is not None and leader.proc.poll() is not None, 30, what="a to exit")
        time.sleep(3)
        stop.set()
        writer.join(10)
    finally:
        stop.set()
        leader.stop()

    try:
        assert leader.proc is not None and leader.proc.returncode == 1, leader.log_tail()
        last_renewal = max(proxy.lease_renewed)  # one in flight when blocked may still have succeeded
        deadline = last_renewal + RENEW
        late = [w for w in proxy.writes if w[0] > deadline]
        assert late == [], f"writes after the renew deadline: {late[:5]}"
        acted = [w for w in proxy.writes if blocked < w[0] <= deadline]
        assert acted, "the leader had work to write until its deadline"  # the test can fail
        lease = kubectl.json("lease", "doris-operator", "-n", lease_ns)["spec"]
        taken = _micro(lease["acquireTime"])
        # judged from when the standby saw the last renewal: a whole lease duration later, never before
        assert taken >= last_renewal + LEASE - 0.5, (taken - last_renewal, lease)
        assert taken > max(w[0] for w in proxy.writes)  # never two leaders writing
        assert "could not renew the lease" in leader.log_path.read_text()

        # the new leader converges the last change
        want = str(changes[0])
        service = names.access_service(NAME, "fe")

        def applied() -> bool:
            annotations = kubectl.json("svc", service, "-n", ns)["metadata"].get("annotations") or {}
            return bool(annotations.get("n") == want)

        eventually(applied, 30, what="the standby to apply the last change")
        assert standby.ready()
    finally:
        standby.stop()
        proxy.stop()
