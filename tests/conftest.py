"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

import localcluster  # hack/localcluster.py (pytest: pythonpath = ["hack"])
import prometheus  # hack/prometheus.py
from gotool import METRICS_SERVER
from harness import CRD, Kubectl, eventually
from metrics_server import MetricsServer


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the local control plane before any test runs: a first build (tens of minutes) must not
    count against a test's timeout. Cached builds return at once."""
    if session.config.option.collectonly:
        return
    capman = session.config.pluginmanager.getplugin("capturemanager")
    # promtool, prometheus and the Prometheus Operator CRDs (hack/prometheus.py), the same way
    if any(item.get_closest_marker("prometheus") for item in session.items):
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            prometheus.ensure_prometheus_operator_crds()
            prometheus.ensure_prometheus()
    if os.environ.get("DORIS_OPERATOR_KUBECONFIG"):
        return
    fixtures = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    if "kube_cluster" in fixtures:
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            localcluster.ensure_binaries()
            if "metrics_server" in fixtures:
                METRICS_SERVER.ensure()


LOG_TAIL_LINES = 30


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that ran an operator (or another process logging under its ``tmp_path``) reports
    the end of each log too: CI keeps only what pytest prints."""
    report = yield
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if not report.failed or tmp is None:
        return report
    for log in sorted(Path(tmp).glob("**/*.log"))[:2]:
        with contextlib.suppress(OSError):
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"end of {log.name}", "\n".join(lines)))
    return report


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[localcluster.LocalCluster]:
    """A real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok with
    fake Ready nodes) on 127.0.0.1 for the whole session, or the cluster of DORIS_OPERATOR_KUBECONFIG.

    Exposes ``.kubeconfig`` (Path), ``.server``, ``.ca_file``, ``.token``, ``.node_names``,
    ``.kubectl(*args, input=None, check=True)``, ``.kubectl_json(*args)``, ``.apply(manifest)`` and
    ``.env()`` (os.environ with KUBECONFIG set). Knobs: DORIS_OPERATOR_CLUSTER_NODES (default 3),
    DORIS_OPERATOR_POD_READY_DELAY (seconds, default 0).
    """
    existing = os.environ.get("DORIS_OPERATOR_KUBECONFIG")
    if existing:
        yield localcluster.LocalCluster.attach(existing)
        return
    cluster = localcluster.LocalCluster(
        nodes=int(os.environ.get("DORIS_OPERATOR_CLUSTER_NODES", "3")),
        pod_ready_delay=float(os.environ.get("DORIS_OPERATOR_POD_READY_DELAY", "0")),
    )
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def kubectl(kube_cluster: localcluster.LocalCluster) -> Kubectl:
    k = Kubectl(kube_cluster)
    k("apply", "-f", str(CRD))  # client-side apply: the CRD is small enough for the annotation
    for other in sorted(CRD.parent.glob("*.yaml")):  # the other kinds (DorisClusterAutoscaler, ...)
        if other.name != CRD.name:
            k("apply", "-f", str(other))
    eventually(lambda: "dorisclusters" in k("api-resources", "--api-group=doris.selectdb.com"), 30)
    return k


@pytest.fixture(scope="session")
def metrics_server(kube_cluster: localcluster.LocalCluster) -> Iterator[MetricsServer]:
    """A real metrics-server (hack/metrics_server.py) serving metrics.k8s.io from kwok's emulated usage."""
    with MetricsServer(kube_cluster) as ms:
        yield ms


@pytest.fixture
def clean_namespaces(kubectl: Kubectl) -> Iterator[None]:
    """Delete the namespaces a test made, freeing the fake nodes for the next test."""
    yield
    kubectl.delete_created_namespaces()
