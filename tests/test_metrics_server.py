"""A real metrics-server on the local control plane, reading the pod usage kwok emulates."""

from __future__ import annotations

import pytest

from harness import Kubectl, eventually
from metrics_server import USAGE_CPU_ANNOTATION, MetricsServer

pytestmark = pytest.mark.cluster


def _cpu_millis(quantity: str) -> float:
    if quantity.endswith("n"):
        return float(quantity[:-1]) / 1e6
    if quantity.endswith("u"):
        return float(quantity[:-1]) / 1e3
    if quantity.endswith("m"):
        return float(quantity[:-1])
    return float(quantity) * 1000


def test_pod_usage_follows_the_annotation(
    metrics_server: MetricsServer, kubectl: Kubectl, clean_namespaces: None
) -> None:
    ns = kubectl.new_namespace("ms")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "busy", "annotations": {USAGE_CPU_ANNOTATION: "1500m"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "1"}}}]},
    }
    kubectl.apply(pod, ns)

    def usage() -> float | None:
        metrics = metrics_server.pod_usage(ns, "busy")
        if not metrics or not metrics.get("containers"):
            return None
        return sum(_cpu_millis(c["usage"]["cpu"]) for c in metrics["containers"])

    # a rate over two scrapes: about 1500m (the counter kwok serves grows at the annotated rate)
    assert 1300 < eventually(usage, 120, 2, what="pod metrics from metrics-server") < 1700
    kubectl("annotate", "pod", "busy", "-n", ns, f"{USAGE_CPU_ANNOTATION}=200m", "--overwrite")
    eventually(lambda: (u := usage()) is not None and u < 400, 120, 2, what="the lower usage")
