"""Version skew on the local control plane: a newer CRD (here: ours plus two fields) stores DorisClusters
with fields this operator's models don't know. The controller logs them once, ignores them and
reconciles the cluster to Ready; it doesn't park it as InvalidSpec."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import CRD, Kubectl, Operator, status, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]


@pytest.fixture
def newer_crd(kubectl: Kubectl) -> Iterator[None]:
    crd = yaml.safe_load(CRD.read_text())
    newer = copy.deepcopy(crd)
    for version in newer["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["futureSetting"] = {"type": "string"}
        spec["properties"]["beSpec"]["properties"]["futureKnob"] = {"type": "boolean"}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(newer))
    try:
        yield
    finally:
        kubectl("apply", "-f", str(CRD))


def test_unknown_stored_fields_are_ignored_and_the_cluster_reconciles(
    kube_cluster: Any, kubectl: Kubectl, newer_crd: None, tmp_path: Path
) -> None:
    ns = kubectl.new_namespace("skew")
    doc = yaml.safe_load((CRD.parents[2] / "examples" / "doriscluster-sample.yaml").read_text())
    for comp in ("feSpec", "beSpec"):
        for key in ("requests", "limits"):
            doc["spec"][comp].pop(key, None)
    doc["spec"]["futureSetting"] = "on"
    doc["spec"]["beSpec"]["futureKnob"] = True
    kubectl.apply(doc, ns)
    stored = kubectl.json("dcr", "doriscluster-sample", "-n", ns)
    assert stored["spec"]["futureSetting"] == "on" and stored["spec"]["beSpec"]["futureKnob"] is True
    op = Operator(kube_cluster, tmp_path, "--resync", "2", "-n", ns).start()
    try:
        st = wait_ready(kubectl, ns)
        assert st["beStatus"]["ready"] == "3/3"
        time.sleep(6)  # three resyncs: still one log line
    finally:
        op.stop()
    assert "InvalidSpec" not in str(status(kubectl, ns))
    log = op.log_path.read_text()
    lines = [line for line in log.splitlines() if "doesn't know" in line]
    assert len(lines) == 1, lines
    assert "spec.futureSetting" in lines[0] and "spec.beSpec.futureKnob" in lines[0]
