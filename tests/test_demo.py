"""The README's first command: the demo deploys the Doris docs' sample and ends with it Ready."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from harness import ROOT

pytestmark = pytest.mark.cluster


def test_demo_ends_with_a_ready_cluster(kube_cluster: Any) -> None:
    namespace = f"demo-{uuid.uuid4().hex[:6]}"
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo.py"), "--namespace", namespace, "--timeout", "180"],
        env=kube_cluster.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"DorisCluster {namespace}/doriscluster-sample is Ready." in result.stdout
        listing = result.stdout.split("kubectl get dcr,sts,svc,pods")[1]
        assert "doriscluster-sample-fe-service    ClusterIP" in listing
        assert "8030/TCP,9020/TCP,9030/TCP,9010/TCP" in listing
        members = result.stdout.split("kubectl doris status")[1]  # as the simulated Doris sees them
        assert members.count("FOLLOWER") == 3, members
        assert all(f"doriscluster-sample-be-{i}  yes" in members for i in range(3)), members
    finally:
        kube_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_make_demo_starts_its_own_control_plane() -> None:
    """The README's first command as a new user runs it: no KUBECONFIG, so the demo starts the local
    control plane itself, and stops everything at the end."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DORIS_OPERATOR_KUBECONFIG")}
    result = subprocess.run(
        ["make", "-s", "demo", f"PYTHON={sys.executable}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "No KUBECONFIG: starting the local control plane" in result.stdout
    assert "DorisCluster doris/doriscluster-sample is Ready." in result.stdout
    state = ROOT / ".tmp" / "demo" / "cluster"
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True, check=False)
    assert leftovers.stdout.strip() == "", "the demo left processes running"
