"""A real metrics-server on the local control plane, reading the pod usage kwok emulates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.config.kubeconfig import KubeConfig

from doris_operator.k8s import Kube
from doris_operator.operator import kube_client
from doris_operator.reconcile.autoscaler import POD_SELECTOR, PodUsage
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
    node = eventually(metrics_server.scraped_node, 120, 2, what="a node metrics-server scrapes")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "busy", "annotations": {USAGE_CPU_ANNOTATION: "1500m"}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "1"}}}],
        },
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


def test_the_operators_pod_metrics_read_one_namespace_or_every_one(
    metrics_server: MetricsServer, kube_cluster: Any, kubectl: Kubectl, clean_namespaces: None
) -> None:
    """Kube.pod_metrics (k8s.py) on the real aggregated API: the label selector is metrics-server's
    (an unlabelled pod is not listed), a namespace or every namespace; and one pass of the autoscaler
    loop over autoscalers in two namespaces reads both with the one list of every namespace."""
    spaces = [kubectl.new_namespace("pm"), kubectl.new_namespace("pm")]
    node = eventually(metrics_server.scraped_node, 120, 2, what="a node metrics-server scrapes")
    for ns in spaces:
        for name, labels in (("be-0", {POD_SELECTOR: "c"}), ("other", {})):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels, "annotations": {USAGE_CPU_ANNOTATION: "300m"}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
            }
            kubectl.apply(pod, ns)

    async def read(fn: Any) -> Any:
        client = kube_client(KubeConfig.from_file(kube_cluster.kubeconfig))
        try:
            kube = Kube(client)
            assert kube.direct is not None
            return await fn(kube)
        finally:
            await client.close()

    def listed(namespace: str | None) -> set[tuple[str, str]] | None:
        try:
            items = asyncio.run(read(lambda kube: kube.pod_metrics(namespace, POD_SELECTOR)))
        except ApiError as err:  # an aggregated API: 503 while metrics-server is busy or restarting
            raise AssertionError(f"metrics.k8s.io: {err.status.code} {err.status.message}") from err
        got = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}
        return {o for o in got if o[0] in spaces} or None

    def both() -> set[tuple[str, str]] | None:
        got = listed(None)
        return got if got and len(got) == 2 else None

    every = eventually(both, 120, 2, what="both pods' metrics")
    assert every == {(spaces[0], "be-0"), (spaces[1], "be-0")}
    eventually(lambda: listed(spaces[1]) == {(spaces[1], "be-0")}, 60, 2, what="one namespace's metrics")

    class Counting:
        def __init__(self, kube: Kube) -> None:
            self.kube = kube
            self.calls: list[str | None] = []

        async def pod_metrics(self, namespace: str | None, selector: str) -> Any:
            self.calls.append(namespace)
            return await self.kube.pod_metrics(namespace, selector)

    async def one_pass(kube: Kube) -> tuple[list[Any], list[list[str]]]:
        counting = Counting(kube)
        usage = PodUsage(counting, set(spaces))
        names = [[i["metadata"]["name"] for i in await usage(ns, {})] for ns in spaces]
        return counting.calls, names

    def a_pass() -> tuple[list[Any], list[list[str]]] | None:
        try:
            return asyncio.run(read(one_pass))
        except ApiError as err:
            raise AssertionError(f"metrics.k8s.io: {err.status.code} {err.status.message}") from err

    calls, names = eventually(a_pass, 60, 2, what="one pass of the loop")
    assert calls == [None]
    assert names == [["be-0"], ["be-0"]]
