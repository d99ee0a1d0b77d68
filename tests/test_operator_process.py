"""The operator as separate processes: killed mid-reconcile, watching one namespace, two replicas with
leader election.  No other operator runs while these tests do (unlike tests/test_controller.py)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import Kubectl, Operator, eventually, free_port, names_of, sample, status, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]


def test_sigkill_mid_reconcile_converges_without_duplicates(
    kube_cluster: Any, kubectl: Kubectl, tmp_path: Path
) -> None:
    ns = kubectl.new_namespace()
    op = Operator(kube_cluster, tmp_path, "--resync", "3", "-n", ns).start()
    try:
        kubectl.apply(sample(), ns)
        eventually(
            lambda: names_of(kubectl, "statefulsets", ns), 30, interval=0.05, what="the first StatefulSet"
        )
        op.kill(signal.SIGKILL)  # in the middle: FE made, BE not yet
        op.start()
        st = wait_ready(kubectl, ns)
        assert st["beStatus"]["ready"] == "3/3"
    finally:
        op.stop()
    assert names_of(kubectl, "statefulsets", ns) == {"doriscluster-sample-fe", "doriscluster-sample-be"}
    assert len(kubectl.items("services", ns)) == 4
    assert len(kubectl.items("poddisruptionbudgets", ns)) == 2
    assert len(kubectl.items("pods", ns)) == 6


def test_namespaced_operator_ignores_other_namespaces(
    kube_cluster: Any, kubectl: Kubectl, tmp_path: Path
) -> None:
    watched, other = kubectl.new_namespace("w"), kubectl.new_namespace("o")
    op = Operator(kube_cluster, tmp_path, "--resync", "3", "-n", watched).start()
    try:
        for ns in (watched, other):
            kubectl.apply(sample(), ns)
        wait_ready(kubectl, watched)
        time.sleep(3)
        assert names_of(kubectl, "statefulsets", other) == set()
        assert status(kubectl, other) == {}
    finally:
        op.stop()
    assert op.proc is not None and op.proc.returncode == 0, op.log_tail()  # SIGTERM is a clean stop
    assert "Traceback" not in op.log_path.read_text()
    kubectl("delete", "namespace", other, "--wait=false")


def test_leader_election_hands_over(kube_cluster: Any, kubectl: Kubectl, tmp_path: Path) -> None:
    ns = kubectl.new_namespace()
    lease_ns = kubectl.new_namespace("lease")
    common = ("--resync", "3", "-n", ns, "--leader-elect", "--lease-namespace", lease_ns)
    a = Operator(kube_cluster, tmp_path, *common, "--identity", "replica-a", name="a").start()
    b = Operator(kube_cluster, tmp_path, *common, "--identity", "replica-b", name="b").start()
    try:
        holder = eventually(
            lambda: kubectl.json("lease", "doris-operator", "-n", lease_ns)["spec"].get("holderIdentity"), 30
        )
        leader, standby = (a, b) if holder == "replica-a" else (b, a)
        kubectl.apply(sample(), ns)
        wait_ready(kubectl, ns)
        leader.kill(signal.SIGKILL)
        other = "replica-b" if holder == "replica-a" else "replica-a"
        eventually(
            lambda: (
                kubectl.json("lease", "doris-operator", "-n", lease_ns)["spec"]["holderIdentity"] == other
            ),
            45,
            what="the standby to take the lease",
        )
        kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":4}}}')
        eventually(
            lambda: kubectl.json("sts", "doriscluster-sample-be", "-n", ns)["spec"]["replicas"] == 4, 60
        )
        assert wait_ready(kubectl, ns)["beStatus"]["ready"] == "4/4"
        assert standby.ready()
    finally:
        a.stop()
        b.stop()


def test_operator_serves_the_webhook(kube_cluster: Any, kubectl: Kubectl, tmp_path: Path) -> None:
    """`run --webhook`: the apiserver calls the webhook the operator process serves."""
    ns = kubectl.new_namespace()
    port = free_port()
    name = f"op-{ns}"
    op = Operator(
        kube_cluster,
        tmp_path,
        "-n", ns, "--webhook", "--webhook-port", str(port), "--webhook-host", "127.0.0.1",
        "--webhook-url", f"https://127.0.0.1:{port}", "--webhook-namespace", ns,
        "--webhook-config-name", name, "--webhook-policy-name", f"{name}-statefulsets",
        "--webhook-no-policy",
    )  # fmt: skip
    op.start()
    try:
        eventually(op.ready, 60, what="operator ready with its webhook listening")
        eventually(lambda: kubectl.json("validatingwebhookconfiguration", name), 30)
        bad = sample()
        bad["spec"]["beSpec"]["service"] = {
            "type": "NodePort",
            "servicePorts": [{"nodePort": 31005, "targetPort": 8040}, {"targetPort": 8040}],
        }
        result = kube_cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(bad), check=False)
        assert result.returncode != 0
        assert "spec.beSpec.service.servicePorts[1].targetPort" in result.stderr, result.stderr
        # Kubernetes' own validation of the children, through the dry-run
        bad = sample()
        bad["spec"]["beSpec"]["podLabels"] = {"team": "a b"}
        result = kube_cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(bad), check=False)
        assert result.returncode != 0
        assert "spec.beSpec.podLabels[team]: " in result.stderr, result.stderr
        kubectl.apply(sample(), ns)
        assert wait_ready(kubectl, ns)["phase"] == "Ready"
    finally:
        op.stop()
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            kubectl("delete", kind, name, "--ignore-not-found")


def test_converged_cluster_costs_no_writes(kube_cluster: Any, kubectl: Kubectl, tmp_path: Path) -> None:
    """Measured on an operator of its own, so no other cluster's convergence counts."""
    ns = kubectl.new_namespace()
    operator = Operator(kube_cluster, tmp_path, "--resync", "3", "-n", ns).start()
    try:
        _idle_writes(kubectl, ns, operator)
    finally:
        operator.stop()


def _idle_writes(kubectl: Kubectl, ns: str, operator: Operator) -> None:
    kubectl.apply(sample(), ns)
    wait_ready(kubectl, ns)

    def settled() -> bool:
        before = operator.writes()
        time.sleep(4)
        return operator.writes() == before

    eventually(settled, 60, interval=0, what="writes to stop")
    before = operator.writes()
    reconciles = operator.metrics().get('doris_operator_reconciles_total{result="unchanged"}', 0)
    time.sleep(10)  # three resyncs of every cluster
    assert operator.writes() == before
    assert operator.metrics()['doris_operator_reconciles_total{result="unchanged"}'] > reconciles
