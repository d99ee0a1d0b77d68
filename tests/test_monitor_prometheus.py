"""Every query is answered: a real Prometheus server (built from github.com/prometheus/prometheus by
hack/prometheus.py) on 127.0.0.1 scrapes the simulated FEs' and BEs' /metrics and the operator's own
metrics, all on 127.0.0.1 through static targets carrying the labels our relabelling gives pod targets;
then every dashboard panel's query and every alert's signal must return data, and every alert
expression must evaluate.  The test lists each query that returns nothing.  No pod IP is dialled."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest
import yaml
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

import prometheus
from doris_operator import metrics as operator_metrics
from doris_operator.api.doriscluster import DorisCluster
from doris_operator.api.dorismonitor import DorisMonitor
from doris_operator.builders import alerts as alert_defs
from doris_operator.builders import dashboards as dash
from doris_operator.builders import monitor as mb
from doris_operator.k8s import FIELD_MANAGER, Kube
from doris_sim.be_http import BeWebServer
from doris_sim.fe import SimCluster
from doris_sim.metrics import DorisMetrics, MetricsHttpServer
from harness import eventually, free_port

pytestmark = [pytest.mark.prometheus, pytest.mark.cluster]

NS, CLUSTER = "ns", "demo"
FES = [
    ("127.0.0.1", 9010),
    ("demo-fe-1.demo-fe-internal.ns.svc.cluster.local", 9010),
    ("demo-fe-2.demo-fe-internal.ns.svc.cluster.local", 9010),
]
BES = [(f"demo-be-{i}.demo-be-internal.ns.svc.cluster.local", 9050) for i in range(3)]


def monitor() -> DorisMonitor:
    return DorisMonitor.model_validate(
        {
            "metadata": {"name": "mon", "namespace": NS, "uid": "u"},
            "spec": {"cluster": CLUSTER, "mode": "bundled"},
        }
    )


def cluster() -> DorisCluster:
    return DorisCluster.model_validate(
        {
            "metadata": {"name": CLUSTER, "namespace": NS},
            "spec": {
                "feSpec": {"replicas": 3, "image": "apache/doris:fe-2.1.8"},
                "beSpec": {"replicas": 3, "image": "apache/doris:be-2.1.8"},
            },
        }
    )


def get(url: str, timeout: float = 10) -> Any:
    assert url.startswith("http://127.0.0.1:"), url  # loopback only
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> list[Any]:
        out = get(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert out["status"] == "success", (expr, out)
        return list(out["data"]["result"])


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, Any]]:
    """Simulated FEs and BEs and the operator's metrics, each on its own 127.0.0.1 port."""
    sim = SimCluster(master_host=FES[0][0], master_edit_log_port=FES[0][1])
    for host, port in FES[1:]:
        sim.register_frontend(host, port)
    for i, (host, port) in enumerate(BES):
        sim.register_backend(host, port, tablets=100 + 10 * i)
    metrics = DorisMetrics(sim)
    servers: list[Any] = []
    fe_targets: list[tuple[str, dict[str, str]]] = []
    be_targets: list[tuple[str, dict[str, str]]] = []
    for i, (host, port) in enumerate(FES):
        server = MetricsHttpServer(lambda h=host, p=port: metrics.fe_text(h, p)).start()
        servers.append(server)
        fe_targets.append((f"127.0.0.1:{server.port}", {"component": "fe", "pod": f"{CLUSTER}-fe-{i}"}))
    for i, (host, port) in enumerate(BES):
        be = BeWebServer().start()
        be.metrics = lambda h=host, p=port: metrics.be_text(h, p)
        servers.append(be)
        be_targets.append((f"127.0.0.1:{be.port}", {"component": "be", "pod": f"{CLUSTER}-be-{i}"}))
    # the operator: its registry, as `doris-operator run` serves it, on 127.0.0.1
    op_port = free_port()
    httpd, thread = prometheus_client.start_http_server(
        op_port, addr="127.0.0.1", registry=operator_metrics.REGISTRY
    )
    try:
        yield {"fe": fe_targets, "be": be_targets, "operator": [(f"127.0.0.1:{op_port}", {})], "sim": sim}
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        for s in servers:
            s.stop()


async def _operator_activity(kube_cluster: Any) -> None:
    """Real work of the operator's code, so that its metrics carry data: API requests through its Kube
    wrapper, and a BE scale-in in progress as the pipeline exports it."""
    client = AsyncClient(KubeConfig.from_file(str(kube_cluster.kubeconfig)), field_manager=FIELD_MANAGER)
    try:
        kube = Kube(client)
        await kube.secret_exists("no-such-secret", "default")
        await kube.config_map("no-such-config", "default")
    finally:
        await client.close()
    operator_metrics.export_draining(NS, CLUSTER, {"be": {f"{CLUSTER}-be-2": 40}})
    operator_metrics.QUEUE_DEPTH.set(0)


@pytest.fixture(scope="module")
def prom(targets: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    tools = prometheus.ensure_prometheus()
    work = tmp_path_factory.mktemp("prometheus")
    cluster_labels = {"namespace": NS, "doris_cluster": CLUSTER}
    jobs: list[dict[str, Any]] = []
    for job, items in (("doris-fe", targets["fe"]), ("doris-be", targets["be"])):
        jobs.append(
            {
                "job_name": job,
                "static_configs": [
                    {"targets": [t], "labels": {**cluster_labels, **labels}} for t, labels in items
                ],
            }
        )
    jobs.append(
        {"job_name": "doris-operator", "static_configs": [{"targets": [t for t, _ in targets["operator"]]}]}
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [mb.RULES_FILE],
        "scrape_configs": jobs,
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    (work / mb.RULES_FILE).write_text(yaml.safe_dump(mb.rules_file(monitor(), cluster())))
    port = free_port()
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(tools.prometheus),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        p = Prom(port)

        def ready() -> bool:
            try:
                urllib.request.urlopen(f"{p.base}/-/ready", timeout=2).close()
                return True
            except OSError:
                return False

        eventually(ready, 60, what="prometheus ready")
        yield p
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def all_queries() -> list[tuple[str, str]]:
    dm = monitor()
    out = []
    for file, model in dash.dashboards(dm).items():
        out += [(f"dashboard {file}: {title}", expr) for title, expr in dash.queries(model)]
    out += [(f"alert {a.name} (signal)", a.signal) for a in alert_defs.alerts(dm, cluster())]
    return out


async def test_every_dashboard_query_and_alert_signal_returns_data(prom: Prom, kube_cluster: Any) -> None:
    await _operator_activity(kube_cluster)
    n_targets = len(FES) + len(BES) + 1
    eventually(lambda: len(prom.query("up == 1")) == n_targets, 60, what="every target scraped and up")
    # rate() and delta() need two samples in their window, increase() too: wait for a few scrapes
    eventually(lambda: prom.query("count_over_time(up[1m])")[0]["value"][1] not in ("1", "2", "3"), 30)
    empty: list[str] = []

    def answered() -> bool:
        empty.clear()
        empty.extend(f"{where}: {expr}" for where, expr in all_queries() if not prom.query(expr))
        return not empty

    with contextlib.suppress(AssertionError):  # the assertion below names what stayed empty
        eventually(answered, 60, what="every query answered")
    assert not empty, "queries that returned nothing:\n" + "\n".join(empty)


def test_every_alert_expression_evaluates_and_healthy_alerts_stay_silent(prom: Prom) -> None:
    """The alert expressions parse and run on this data; on the healthy simulated cluster only the
    decommission (40 tablets not moving) is pending or firing."""
    dm = monitor()
    for a in alert_defs.alerts(dm, cluster()):
        prom.query(a.expr)
    eventually(lambda: prom.query("ALERTS") is not None, 10)

    def healthy() -> set[str] | None:
        active = {r["metric"]["alertname"] for r in prom.query("ALERTS")}
        return None if active <= {"DorisDecommissionStuck"} else active

    # a scrape delayed on a loaded machine can make a rate 0 for one evaluation (a pending alert that
    # clears at the next); an alert that stays active fails
    last: set[str] | None = None
    for _ in range(20):
        last = healthy()
        if last is None:
            break
        time.sleep(1)
    assert last is None, last


def test_the_data_follows_the_simulated_state(prom: Prom, targets: dict[str, Any]) -> None:
    """An FE that stops answers nothing (up 0: DorisFEDown's expression selects it); its edit log replay
    stops.  Runs last: it changes the simulated cluster."""
    fe_down = next(a for a in alert_defs.alerts(monitor(), cluster()) if a.name == "DorisFEDown")
    assert prom.query(fe_down.expr) == []
    host, port = FES[2]
    targets["sim"].set_frontend_alive(host, port, False)
    eventually(
        lambda: [r["metric"]["pod"] for r in prom.query(fe_down.expr)] == [f"{CLUSTER}-fe-2"],
        30,
        what="the stopped FE is down in Prometheus",
    )
