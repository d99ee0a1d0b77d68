"""Autoscaling on real metrics: a real metrics-server reads the pod usage kwok emulates, the real HPA
controller in kube-controller-manager scales the official sample's CNs, and the operator's
DorisClusterAutoscaler scales BEs through the decommission path."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from doris_operator.k8s import FIELD_MANAGER
from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.images import ImageDriver
from harness import ROOT, Kubectl, Operator, eventually, sample, status, wait_ready
from metrics_server import USAGE_CPU_ANNOTATION, MetricsServer

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]
NAME = "doriscluster-sample"
COMPAT = ROOT.parent / "shared" / "compat" / "examples"


class Load:
    """Emulated CPU load: keeps ``cores`` on every pod of a component (new pods included), through the
    usage annotation kwok's metrics read."""

    def __init__(self, kubectl: Kubectl, ns: str, comp: str, cores: float) -> None:
        self.kubectl, self.ns, self.comp, self.cores = kubectl, ns, comp, cores
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = f"{int(self.cores * 1000)}m"
            for pod in self.kubectl.items("pods", self.ns, f"app.kubernetes.io/component={self.comp}"):
                if (pod["metadata"].get("annotations") or {}).get(USAGE_CPU_ANNOTATION) != value:
                    self.kubectl(
                        "annotate", "pod", pod["metadata"]["name"], "-n", self.ns,
                        f"{USAGE_CPU_ANNOTATION}={value}", "--overwrite", check=False,
                    )  # fmt: skip
            self._stop.wait(1)


class ReplicaRecorder:
    """Records every distinct spec.replicas of a StatefulSet, all along (to see any flapping)."""

    def __init__(self, kubectl: Kubectl, ns: str, name: str) -> None:
        self.kubectl, self.ns, self.name = kubectl, ns, name
        self.values: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReplicaRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = self.kubectl(
                "get", "sts", self.name, "-n", self.ns, "-o", "jsonpath={.spec.replicas}", check=False
            )
            if out.strip().isdigit() and (not self.values or self.values[-1] != int(out)):
                self.values.append(int(out))
            self._stop.wait(0.5)


def replicas_owners(kubectl: Kubectl, ns: str, name: str) -> set[str]:
    sts = json.loads(kubectl("get", "sts", name, "-n", ns, "-o", "json", "--show-managed-fields"))
    return {
        m["manager"]
        for m in sts["metadata"].get("managedFields") or []
        if "f:replicas" in ((m.get("fieldsV1") or {}).get("f:spec") or {})
    }


@pytest.fixture
def cn_cluster(
    kube_cluster: Any, kubectl: Kubectl, metrics_server: MetricsServer, tmp_path: Path
) -> Iterator[tuple[str, ImageDriver, Operator]]:
    ns = kubectl.new_namespace("hpa")
    driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME).start()
    op = Operator(kube_cluster, tmp_path, "--resync", "3", "-n", ns).start()
    try:
        yield ns, driver, op
    finally:
        op.stop()
        driver.stop()


def test_official_cn_autoscaler_sample_is_scaled_by_the_real_hpa(
    cn_cluster: tuple[str, ImageDriver, Operator], kubectl: Kubectl
) -> None:
    ns, driver, _ = cn_cluster
    be_conf = (COMPAT / "be.conf").read_text() + "\nbe_node_role = computation\n"
    kubectl("create", "configmap", "cn-configmap", "-n", ns, "--from-literal", f"be.conf={be_conf}")
    doc = yaml.safe_load((COMPAT / "doriscluster-sample-cn-autoscaler.yaml").read_text())
    doc["metadata"].setdefault("annotations", {})[FE_ADDRESS_ANNOTATION] = f"{driver.host}:{driver.port}"
    # the sample as written, but a short scale-down window: the default 300 s would only slow the test
    policy = doc["spec"]["cnSpec"]["autoScalingPolicy"]
    policy["hpaPolicy"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 15}}
    kubectl.apply(doc, ns)

    hpa = eventually(
        lambda: kubectl.json("hpa", "-n", ns)["items"], 60, what="the CN HorizontalPodAutoscaler"
    )[0]
    assert hpa["metadata"]["name"] == f"{NAME}-cn-autoscaler"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": f"{NAME}-cn",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"] == policy["hpaPolicy"]["metrics"]
    assert hpa["metadata"]["ownerReferences"][0]["kind"] == "DorisCluster"
    eventually(lambda: (status(kubectl, ns).get("cnStatus") or {}).get("horizontalScaler"), 60)
    assert status(kubectl, ns)["cnStatus"]["horizontalScaler"] == {
        "name": f"{NAME}-cn-autoscaler",
        "version": "v2",
    }

    sts = f"{NAME}-cn"
    with ReplicaRecorder(kubectl, ns, sts) as recorder:
        eventually(lambda: kubectl.json("sts", sts, "-n", ns)["spec"]["replicas"] == 3, 60, what="3 CNs")
        # 6 of 8 requested cores busy on every CN: 75% against a 30% target
        with Load(kubectl, ns, "cn", 6.0):
            eventually(
                lambda: kubectl.json("sts", sts, "-n", ns)["spec"]["replicas"] == 10, 240, 2,
                what="the HPA scaling CN up to maxReplicas",
            )  # fmt: skip
            assert "kube-controller-manager" in replicas_owners(kubectl, ns, sts)
            assert FIELD_MANAGER not in replicas_owners(kubectl, ns, sts)
            time.sleep(10)  # the operator keeps reconciling (resync 3 s): it must not move them
            assert kubectl.json("sts", sts, "-n", ns)["spec"]["replicas"] == 10
        with Load(kubectl, ns, "cn", 0.1):
            eventually(
                lambda: kubectl.json("sts", sts, "-n", ns)["spec"]["replicas"] == 2, 300, 2,
                what="the HPA scaling CN down to minReplicas",
            )  # fmt: skip
            time.sleep(10)
            assert kubectl.json("sts", sts, "-n", ns)["spec"]["replicas"] == 2
    values = recorder.values
    peak = values.index(max(values))
    assert values[: peak + 1] == sorted(values[: peak + 1]), f"replicas flapped on the way up: {values}"
    assert values[peak:] == sorted(values[peak:], reverse=True), f"replicas flapped on the way down: {values}"
    assert values[0] == 3 and max(values) == 10 and values[-1] == 2, values


def dca_manifest(minimum: int, maximum: int, window: int) -> dict[str, Any]:
    return {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisClusterAutoscaler",
        "metadata": {"name": "be-scaler"},
        "spec": {
            "cluster": NAME,
            "be": {"minReplicas": minimum, "maxReplicas": maximum},
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": window}},
        },
    }


def test_dca_scales_be_out_under_load_and_in_through_decommission(
    kube_cluster: Any, kubectl: Kubectl, metrics_server: MetricsServer, tmp_path: Path
) -> None:
    from safety import BePodGuard

    ns = kubectl.new_namespace("dca")
    driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME, tablets_per_be=30, decommission_rate=10.0).start()
    op = Operator(kube_cluster, tmp_path, "--resync", "2", "--autoscaler-interval", "3", "-n", ns).start()
    try:
        doc = sample()
        doc["metadata"].setdefault("annotations", {})[FE_ADDRESS_ANNOTATION] = f"{driver.host}:{driver.port}"
        doc["spec"]["feSpec"]["replicas"] = 1
        doc["spec"]["feSpec"]["electionNumber"] = 1
        doc["spec"]["beSpec"]["replicas"] = 3
        for comp in ("feSpec", "beSpec"):
            doc["spec"][comp].pop("limits", None)
            doc["spec"][comp].pop("requests", None)
        doc["spec"]["beSpec"]["requests"] = {"cpu": "2", "memory": "4Gi"}
        kubectl.apply(doc, ns)
        wait_ready(kubectl, ns, timeout=180)
        kubectl.apply(dca_manifest(3, 6, 20), ns)

        def dca_status() -> dict[str, Any]:
            return dict(kubectl.json("dca", "be-scaler", "-n", ns).get("status") or {})

        def be_replicas() -> int:
            return int(kubectl.json("dcr", NAME, "-n", ns)["spec"]["beSpec"]["replicas"])

        with BePodGuard(str(kube_cluster.kubeconfig), ns, driver) as guard:
            with Load(kubectl, ns, "be", 1.8):  # 90% of the 2 requested cores, against 50%
                eventually(lambda: be_replicas() == 6, 240, 2, what="BE scaled out to 6")
                decision = dca_status()["be"]["lastDecision"]
                assert (decision["to"], decision["reason"]) == (6, "ScaleUp") and decision["from"] >= 3
                assert dca_status()["be"]["currentMetrics"][0]["name"] == "cpu"
                driver.wait_registered(1, 6, timeout=120)
                wait_ready(kubectl, ns, timeout=180)
            dropped = time.monotonic()
            with Load(kubectl, ns, "be", 0.2):  # 10%: the metrics ask for 2, minReplicas is 3
                eventually(lambda: be_replicas() < 6, 240, 1, what="BE scale-in decided")
                held = time.monotonic() - dropped
                assert held >= 15, (
                    f"the scale-in came {held:.0f}s after the load fell: the 20s window didn't hold"
                )
                eventually(lambda: be_replicas() == 3, 240, 1, what="BE scaled in to minReplicas")
                st = eventually(
                    lambda: (st := dca_status()["be"])["lastDecision"]["to"] == 3 and st,
                    60,
                    what="the decision",
                )
                assert st["lastDecision"]["reason"] == "ScaleDown"
                limited = next(c for c in st["conditions"] if c["type"] == "ScalingLimited")
                assert (limited["status"], limited["reason"]) == ("True", "TooFewReplicas")
                eventually(
                    lambda: len(kubectl.items("pods", ns, "app.kubernetes.io/component=be")) == 3, 240, 2,
                    what="the 3 leaving BE pods gone after their decommission",
                )  # fmt: skip
                wait_ready(kubectl, ns, timeout=120)
        assert guard.checks > 10 and not guard.violations, guard.violations
        managers = {
            m["manager"]
            for m in json.loads(kubectl("get", "dcr", NAME, "-n", ns, "-o", "json", "--show-managed-fields"))[
                "metadata"
            ]["managedFields"]
            if "f:replicas" in ((m.get("fieldsV1") or {}).get("f:spec") or {}).get("f:beSpec", {})
        }
        assert "doris-operator-autoscaler" in managers, managers
    finally:
        op.stop()
        driver.stop()


@pytest.mark.prometheus
def test_dca_scales_be_on_a_promql_query_against_a_real_prometheus(
    kube_cluster: Any, kubectl: Kubectl, tmp_path: Path
) -> None:
    """The Prometheus path: a real Prometheus (hack/prometheus.py) scrapes the simulated BE /metrics on
    127.0.0.1; the autoscaler's query on it drives the BE replicas out and back in."""
    import subprocess
    import urllib.request

    import prometheus
    from doris_sim.be_http import BeWebServer
    from doris_sim.metrics import DorisMetrics, Workload
    from harness import free_port

    ns = kubectl.new_namespace("promql")
    driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME, tablets_per_be=30, decommission_rate=10.0).start()
    workload = Workload(compaction_score=20)
    metrics = DorisMetrics(driver.cluster, workload)

    def be_metrics() -> str | None:
        alive = [b for b in driver.cluster.show_backends().dicts() if b["Alive"] == "true"]
        return metrics.be_text(str(alive[0]["Host"]), int(alive[0]["HeartbeatPort"])) if alive else None

    be_web = BeWebServer().start()
    be_web.metrics = be_metrics
    tools = prometheus.ensure_prometheus()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "doris-be", "static_configs": [{"targets": [f"127.0.0.1:{be_web.port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom_port = free_port()
    prom_log = (tmp_path / "prometheus.log").open("wb")
    prom = subprocess.Popen(
        [
            str(tools.prometheus),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=prom_log,
        stderr=subprocess.STDOUT,
    )
    op = Operator(kube_cluster, tmp_path, "--resync", "2", "--autoscaler-interval", "3", "-n", ns).start()
    try:

        def prometheus_ready() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/-/ready", timeout=2).close()
                return True
            except OSError:
                return False

        eventually(prometheus_ready, 60, what="prometheus ready")
        doc = sample()
        doc["metadata"].setdefault("annotations", {})[FE_ADDRESS_ANNOTATION] = f"{driver.host}:{driver.port}"
        doc["spec"]["feSpec"].update(replicas=1, electionNumber=1)
        doc["spec"]["beSpec"]["replicas"] = 3
        for comp in ("feSpec", "beSpec"):
            doc["spec"][comp].pop("limits", None)
            doc["spec"][comp].pop("requests", None)
        kubectl.apply(doc, ns)
        wait_ready(kubectl, ns, timeout=180)
        query = 'max(doris_be_tablet_cumulative_max_compaction_score{job="doris-be"})'
        scaler = dca_manifest(3, 5, 5)
        scaler["spec"]["metrics"] = [
            {
                "type": "Prometheus",
                "prometheus": {
                    "serverURL": f"http://127.0.0.1:{prom_port}",
                    "query": query,
                    "target": {"type": "Value", "value": "100"},
                },
            }
        ]
        kubectl.apply(scaler, ns)

        def be_replicas() -> int:
            return int(kubectl.json("dcr", NAME, "-n", ns)["spec"]["beSpec"]["replicas"])

        def metric_value() -> str | None:
            st = kubectl.json("dca", "be-scaler", "-n", ns).get("status") or {}
            return next((m.get("current") for m in (st.get("be") or {}).get("currentMetrics") or []), None)

        assert eventually(metric_value, 60, what="the query's value in status") == "20"
        workload.compaction_score = 300  # 3x the target
        eventually(lambda: be_replicas() == 5, 120, 1, what="BE scaled out to maxReplicas on the query")
        driver.wait_registered(1, 5, timeout=120)
        wait_ready(kubectl, ns, timeout=180)
        workload.compaction_score = 50
        eventually(lambda: be_replicas() == 3, 240, 1, what="BE scaled back in on the query")
        wait_ready(kubectl, ns, timeout=180)
    finally:
        op.stop()
        prom.terminate()
        prom.wait(timeout=20)
        prom_log.close()
        be_web.stop()
        driver.stop()
