"""``kubectl doris``: unit tests of the ErrorURL rewriting, and the commands against the local control
plane with the operator and the simulated images (FE on MySQL, BE web server on loopback)."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from doris_operator import kubectl_plugin as kp
from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.be_http import HEALTH_BODY, BeWebServer
from doris_sim.images import ImageDriver
from harness import Kubectl, Operator, eventually, free_port, sample, wait_ready

NAME = "doriscluster-sample"
FILE = "__shard_1/error_log_insert_stmt_af474190276a2e9c-49bb9d175b8e968e_af474190276a2e9c_49bb9d175b8e968e"
DOC_URL = (
    "http://doriscluster-sample-be-2.doriscluster-sample-be-internal.doris.svc.cluster.local:8040"
    f"/api/_load_error_log?file={FILE}"
)


def be_pod(name: str = f"{NAME}-be-2", ip: str = "10.0.2.103") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "doris",
            "labels": {"app.doris.cluster": NAME, "app.kubernetes.io/component": "be"},
        },
        "spec": {
            "containers": [{"name": "be", "ports": [{"name": "webserver-port", "containerPort": 8040}]}]
        },
        "status": {"podIP": ip},
    }


def be_service(kind: str = "NodePort", ingress: list[dict[str, str]] | None = None) -> dict[str, Any]:
    ports = [
        {"name": "be-port", "port": 9060, "targetPort": 9060, "nodePort": 30940},
        {"name": "webserver-port", "port": 8040, "targetPort": 8040, "nodePort": 32713},
    ]
    if kind == "ClusterIP":
        ports = [{k: v for k, v in p.items() if k != "nodePort"} for p in ports]
    return {
        "metadata": {"name": f"{NAME}-be-service", "namespace": "doris"},
        "spec": {"type": kind, "ports": ports, "selector": {"app.kubernetes.io/component": "be"}},
        "status": {"loadBalancer": {"ingress": ingress or []}},
    }


NODES = [
    {"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.16.10.7"}]}},
    {"metadata": {"name": "n2"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.16.10.8"}]}},
]


class FakeKube(kp.Kube):
    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]], namespace: str | None = None) -> None:
        super().__init__(None, None, namespace)
        self.objects = objects
        self._client = object()
        self._default_ns = "default"
        self.applied: list[dict[str, Any]] = []

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        if (kind, name) not in self.objects:
            raise kp.PluginError(f"{kind} {name} not found in namespace {namespace}")
        return self.objects[(kind, name)]

    def list(
        self, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None
    ) -> list[Any]:
        if kind == "node":
            return NODES
        return [o for (k, _), o in self.objects.items() if k == kind]

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(obj)
        out = json.loads(json.dumps(obj))
        for port in out["spec"]["ports"]:
            port["nodePort"] = 31201
        return dict(out)


def fake(kind: str = "NodePort", ingress: list[dict[str, str]] | None = None, pods: int = 3) -> FakeKube:
    objects: dict[tuple[str, str], dict[str, Any]] = {
        ("service", f"{NAME}-be-service"): be_service(kind, ingress)
    }
    for i in range(pods):
        objects[("pod", f"{NAME}-be-{i}")] = be_pod(f"{NAME}-be-{i}", f"10.0.2.{105 - i}")
    return FakeKube(objects)


# ---- unit: parsing ----------------------------------------------------------------------------


def test_parse_the_docs_error_url() -> None:
    eu = kp.parse_error_url(DOC_URL)
    assert (eu.pod, eu.namespace, eu.port, eu.path) == (f"{NAME}-be-2", "doris", 8040, "/api/_load_error_log")
    assert eu.query == f"file={FILE}"
    assert eu.with_authority("10.0.2.103", 8040) == f"http://10.0.2.103:8040/api/_load_error_log?file={FILE}"


def test_parse_variants() -> None:
    short = kp.parse_error_url(f"{NAME}-be-0.{NAME}-be-internal.ns1:8040/api/_load_error_log?file=x")
    assert (short.scheme, short.pod, short.namespace) == ("http", f"{NAME}-be-0", "ns1")
    bare = kp.parse_error_url(f"http://{NAME}-be-0:8040/api/_load_error_log?file=x")
    assert (bare.pod, bare.namespace) == (f"{NAME}-be-0", None)
    other = kp.parse_error_url(f"http://{NAME}-be-0.example.com:8040/api/_load_error_log?file=x")
    assert (other.pod, other.namespace) == (f"{NAME}-be-0", None)
    ip = kp.parse_error_url("http://192.168.1.1:8042/api/_load_error_log?file=y")
    assert ip.is_ip and ip.port == 8042
    assert (
        kp.parse_error_url("http://[fd00::1]:8040/api/x").with_authority("fd00::2", 1)
        == "http://[fd00::2]:1/api/x"
    )


@pytest.mark.parametrize(
    "url, problem",
    [
        ("", "empty URL"),
        ("ftp://be-0.x.ns.svc.cluster.local:8040/api/x", "not an http URL"),
        ("http://be-0.x.ns:99999/api/x", "not a valid URL"),
        ("http://be-0.x.ns:8040/index.html", "not a Doris BE API URL"),
        ("http://Bad_Pod.x.ns:8040/api/x", "doesn't start with a pod name"),
        ("http://:8040/api/x", "no host"),
    ],
)
def test_bad_urls_are_usage_errors(url: str, problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(kp.UsageError, match=problem):
        kp.parse_error_url(url)
    with pytest.raises(SystemExit) as exit_info:
        kp.main(["error-url", url, "--kubeconfig", "/dev/null"])
    assert exit_info.value.code == 2
    assert problem in capsys.readouterr().err


def test_resolve_option() -> None:
    table = kp.parse_resolve(["10.16.10.8:32713=127.0.0.1:5555", "[fd00::1]:80=127.0.0.1:81"])
    assert kp.resolve("10.16.10.8", 32713, table) == ("127.0.0.1", 5555)
    assert kp.resolve("fd00::1", 80, table) == ("127.0.0.1", 81)
    assert kp.resolve("10.16.10.8", 1, table) == ("10.16.10.8", 1)
    for bad in ("nope", "a:1=b", "a:x=b:1"):
        with pytest.raises(kp.UsageError, match="--resolve"):
            kp.parse_resolve([bad])


# ---- unit: rewriting ----------------------------------------------------------------------------


def test_pod_ip() -> None:
    rw = kp.plan_error_url(fake(), kp.parse_error_url(DOC_URL), "pod-ip", None, None)
    assert rw.url == f"http://10.0.2.103:8040/api/_load_error_log?file={FILE}"
    pod = be_pod()
    pod["spec"]["containers"][0]["ports"][0]["containerPort"] = 8041
    assert kp.via_pod_ip(kp.parse_error_url(DOC_URL), pod).url.startswith("http://10.0.2.103:8041/")
    pod["status"] = {}
    with pytest.raises(kp.PluginError, match="has no IP"):
        kp.via_pod_ip(kp.parse_error_url(DOC_URL), pod)


def test_pod_found_by_ip() -> None:
    url = "http://10.0.2.104:8040/api/_load_error_log?file=f"
    rw = kp.plan_error_url(fake(), kp.parse_error_url(url), "port-forward", 18040, None)
    assert rw.command is not None and f"pod/{NAME}-be-1" in rw.command
    with pytest.raises(kp.PluginError, match=r"no pod in namespace .* has IP 10\.9\.9\.9"):
        kp.plan_error_url(fake(), kp.parse_error_url("http://10.9.9.9:8040/api/x"), "auto", None, None)


def test_nodeport() -> None:
    rw = kp.plan_error_url(fake(), kp.parse_error_url(DOC_URL), "nodeport", None, None)
    assert rw.url == f"http://10.16.10.7:32713/api/_load_error_log?file={FILE}"
    assert any("balances over every BE pod" in n for n in rw.notes)
    rw = kp.plan_error_url(
        fake(pods=1), kp.parse_error_url(DOC_URL.replace("be-2", "be-0")), "nodeport", None, "n2"
    )
    assert rw.url.startswith("http://10.16.10.8:32713/") and rw.notes == []
    addresses = [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "ExternalIP", "address": "1.2.3.4"}]
    external = [{"metadata": {"name": "x"}, "status": {"addresses": addresses}}]
    assert kp.node_address(external) == "1.2.3.4"
    with pytest.raises(kp.PluginError, match="node n9 not found"):
        kp.plan_error_url(fake(), kp.parse_error_url(DOC_URL), "nodeport", None, "n9")
    with pytest.raises(kp.PluginError, match="is ClusterIP, not NodePort"):
        kp.plan_error_url(fake("ClusterIP"), kp.parse_error_url(DOC_URL), "nodeport", None, None)


def test_loadbalancer() -> None:
    host = "a46bbcd6998c7436bab8ee8fba9f5e81-808549982.us-east-1.elb.amazonaws.com"
    kube = fake("LoadBalancer", [{"hostname": host}])
    rw = kp.plan_error_url(kube, kp.parse_error_url(DOC_URL), "loadbalancer", None, None)
    assert rw.url == f"http://{host}:8040/api/_load_error_log?file={FILE}"
    assert kp.plan_error_url(kube, kp.parse_error_url(DOC_URL), "auto", None, None).via == "loadbalancer"
    pending = fake("LoadBalancer")
    with pytest.raises(kp.PluginError, match="no load-balancer address yet"):
        kp.plan_error_url(pending, kp.parse_error_url(DOC_URL), "loadbalancer", None, None)
    assert kp.plan_error_url(pending, kp.parse_error_url(DOC_URL), "auto", None, None).via == "nodeport"
    with pytest.raises(kp.PluginError, match="not LoadBalancer"):
        kp.plan_error_url(fake(), kp.parse_error_url(DOC_URL), "loadbalancer", None, None)


def test_port_forward_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kube = fake("ClusterIP")
    kube.kubeconfig = "/tmp/kc"
    rw = kp.plan_error_url(kube, kp.parse_error_url(DOC_URL), "auto", None, None)
    assert rw.via == "port-forward"
    assert rw.command == [
        "kubectl", "--kubeconfig", "/tmp/kc", "port-forward", "-n", "doris", f"pod/{NAME}-be-2", "8040:8040"
    ]  # fmt: skip
    assert rw.url == f"http://127.0.0.1:8040/api/_load_error_log?file={FILE}"
    rw = kp.plan_error_url(kube, kp.parse_error_url(DOC_URL), "port-forward", 18040, None)
    assert (
        rw.command is not None
        and rw.command[-1] == "18040:8040"
        and rw.url.startswith("http://127.0.0.1:18040/")
    )
    assert kp.plan_error_url(fake(), kp.parse_error_url(DOC_URL), "auto", None, None).via == "nodeport"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert kp.plan_error_url(fake(), kp.parse_error_url(DOC_URL), "auto", None, None).via == "pod-ip"


def test_expose_makes_a_service_for_the_pod_only() -> None:
    kube = fake()
    rw = kp.plan_error_url(kube, kp.parse_error_url(DOC_URL), "auto", None, None, expose=True)
    assert rw.url == f"http://10.16.10.7:31201/api/_load_error_log?file={FILE}"
    (svc,) = kube.applied
    assert svc["metadata"]["name"] == f"{NAME}-be-2-error-log"
    assert svc["metadata"]["labels"]["app.doris.service/role"] == "debug"
    assert svc["spec"]["selector"] == {
        "app.kubernetes.io/component": "be",
        "statefulset.kubernetes.io/pod-name": f"{NAME}-be-2",
    }
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["targetPort"] == 8040
    assert any(f"kubectl delete service -n doris {NAME}-be-2-error-log" in n for n in rw.notes)
    with pytest.raises(kp.UsageError, match="--expose"):
        kp.plan_error_url(kube, kp.parse_error_url(DOC_URL), "pod-ip", None, None, expose=True)
    long_pod = be_pod("x" * 60 + "-be-1")
    assert len(kp.debug_service(long_pod, "be", 8040, "NodePort")["metadata"]["name"]) <= 63


def test_missing_pod_is_a_runtime_error() -> None:
    with pytest.raises(kp.PluginError, match=f"pod {NAME}-be-7 not found") as info:
        kp.plan_error_url(fake(), kp.parse_error_url(DOC_URL.replace("be-2", "be-7")), "auto", None, None)
    assert info.value.code == 1


# ---- unit: the simulated BE web server and --fetch ------------------------------------------------


def test_fetch_through_resolve() -> None:
    with BeWebServer() as be:
        be.add_error_log(FILE, "Reason: column(k1) is null. src line [1];\n")
        table = kp.parse_resolve([f"10.16.10.7:32713=127.0.0.1:{be.port}"])
        url = f"http://10.16.10.7:32713/api/_load_error_log?file={FILE}"
        assert kp.fetch(url, table) == "Reason: column(k1) is null. src line [1];\n"
        assert json.loads(kp.fetch("http://10.16.10.7:32713/api/health", table)) == json.loads(HEALTH_BODY)
        with pytest.raises(kp.PluginError, match="HTTP 404") as info:
            kp.fetch(url.replace("shard_1", "shard_9"), table)
        assert info.value.code == 1
        assert kp.fetch(f"http://127.0.0.1:{be.port}/api/health", {}) == HEALTH_BODY


def test_fetch_unreachable() -> None:
    with pytest.raises(kp.PluginError, match=r"GET http://127\.0\.0\.1:1/"):
        kp.fetch("http://127.0.0.1:1/api/health", {}, timeout=2)


# ---- unit: status rendering ----------------------------------------------------------------------


def test_render_status() -> None:
    text = kp.render_status(
        {
            "name": NAME, "namespace": "doris", "phase": "Ready", "generation": 2, "observedGeneration": 2,
            "paused": False, "conditions": [{"type": "Ready", "status": "True", "reason": "AllReady"}],
            "components": {
                "be": {
                    "desired": 3, "ready": 3, "phase": "Available", "running": ["a", "b", "c"],
                    "creating": [], "failed": [], "conditions": [], "decommissioning": {f"{NAME}-be-2": 17},
                    "access": {"service": f"{NAME}-be-service", "type": "NodePort", "clusterIP": "10.1.1.1",
                               "ports": [{"name": "be-port", "port": 9060},
                                         {"name": "webserver-port", "port": 8040, "nodePort": 32713}]},
                }
            },
            "members": {"fe": None, "be": None, "error": "FE x:9030 not reachable: boom"},
            "monitors": [kp.monitor_status({
                "metadata": {"name": "mon"}, "spec": {"cluster": NAME, "mode": "bundled"},
                "status": {"phase": "Progressing", "prometheusURL": "http://mon-prometheus.doris.svc:9090",
                           "grafanaURL": "http://mon-grafana.doris.svc:3000",
                           "parts": {"prometheus": {"ready": False,
                                                    "message": "the Prometheus pod is not ready yet"},
                                     "rules": {"ready": True}, "grafana": {"ready": True},
                                     "dashboards": {"ready": True}}},
            })],
        }
    )  # fmt: skip
    assert "DorisMonitor mon (bundled): Progressing, 3/4 parts ready" in text
    assert "prometheus: the Prometheus pod is not ready yet" in text
    assert "Prometheus: http://mon-prometheus.doris.svc:9090" in text
    assert "Grafana: http://mon-grafana.doris.svc:3000" in text
    assert "DorisCluster doris/doriscluster-sample: Ready" in text
    assert "3/3" in text and "Available" in text
    assert f"be: {NAME}-be-2 decommissioning, 17 tablets left" in text
    assert "9060,8040:32713" in text
    assert "not reachable: boom" in text


# ---- on the local control plane ------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(
    kube_cluster: Any, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    ns = kubectl.new_namespace("kd")
    driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME, tablets_per_be=40, decommission_rate=0.5).start()
    op = Operator(kube_cluster, tmp_path_factory.mktemp("kd"), "--resync", "2", "-n", ns).start()
    be = BeWebServer().start()
    try:
        doc = sample("doriscluster-nodeport.yaml")
        doc["metadata"].setdefault("annotations", {})[FE_ADDRESS_ANNOTATION] = f"{driver.host}:{driver.port}"
        for comp in ("feSpec", "beSpec"):
            for key in ("requests", "limits"):
                doc["spec"][comp].pop(key, None)
        kubectl.apply(doc, ns)
        wait_ready(kubectl, ns)
        driver.wait_registered(3, 3)
        yield {"ns": ns, "driver": driver, "be": be, "kubeconfig": str(kube_cluster.kubeconfig)}
    finally:
        be.stop()
        op.stop()
        driver.stop()
        kubectl.delete_created_namespaces()


def plugin(env: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = kp.main([*args, "--kubeconfig", env["kubeconfig"], "-n", env["ns"]])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_status_on_the_cluster(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str], kubectl: Kubectl
) -> None:
    code, out, err = plugin(env, capsys, "status", NAME)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"DorisCluster {env['ns']}/{NAME}: Ready"
    assert any(line.split()[:2] == ["fe", "3/3"] for line in lines), out
    assert any(line.split()[:2] == ["be", "3/3"] for line in lines), out
    fe0 = next(line for line in lines if line.split()[:1] == [f"{NAME}-fe-0"])
    assert fe0.split()[1:4] == ["FOLLOWER", "yes", "yes"], out
    be_rows = [line.split() for line in lines if line.strip().startswith(f"{NAME}-be-")]
    assert [r[0] for r in be_rows] == [f"{NAME}-be-{i}" for i in range(3)]
    assert len(be_rows) == 3 and all(r[1] == "yes" and r[3] == "no" for r in be_rows), out
    svc = kubectl.json("svc", f"{NAME}-be-service", "-n", env["ns"])
    web = next(p for p in svc["spec"]["ports"] if p["name"] == "webserver-port")
    assert f"8040:{web['nodePort']}" in out
    assert f"node ports are open on every node: {kp.node_address(kubectl.json('nodes')['items'])}" in out
    access = next(line for line in lines if line.strip().startswith("be ") and "NodePort" in line)
    assert f"{NAME}-be-service" in access
    code, out, _ = plugin(env, capsys, "status", "-o", "json")
    data = json.loads(out)
    assert data[0]["components"]["fe"]["ready"] == 3 and data[0]["members"]["error"] is None
    assert sorted(f["role"] for f in data[0]["members"]["fe"]) == ["FOLLOWER"] * 3


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_error_url_on_the_cluster(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str], kubectl: Kubectl
) -> None:
    ns, be = env["ns"], env["be"]
    url = f"http://{NAME}-be-2.{NAME}-be-internal.{ns}.svc.cluster.local:8040/api/_load_error_log?file={FILE}"
    svc = kubectl.json("svc", f"{NAME}-be-service", "-n", ns)
    node_port = next(p["nodePort"] for p in svc["spec"]["ports"] if p["name"] == "webserver-port")
    nodes = kubectl.json("nodes")["items"]
    address = kp.node_address(nodes)
    expected = f"http://{address}:{node_port}/api/_load_error_log?file={FILE}"
    code, out, err = plugin(env, capsys, "error-url", url)
    assert (code, out.strip()) == (0, expected), err
    assert "balances over every BE pod" in err
    be.add_error_log(FILE, "Reason: column(k1) values is null while columns is not nullable. src line [1];\n")
    code, out, err = plugin(
        env, capsys, "error-url", url, "--via", "nodeport", "--fetch", "--resolve",
        f"{address}:{node_port}=127.0.0.1:{be.port}",
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [
        expected,
        "Reason: column(k1) values is null while columns is not nullable. src line [1];",
    ]
    pod = kubectl.json("pod", f"{NAME}-be-2", "-n", ns)
    code, out, _ = plugin(env, capsys, "error-url", url, "--via", "pod-ip")
    assert out.strip() == f"http://{pod['status']['podIP']}:8040/api/_load_error_log?file={FILE}"
    code, out, _ = plugin(env, capsys, "error-url", url, "--via", "port-forward", "--local-port", "18040")
    assert f"port-forward -n {ns} pod/{NAME}-be-2 18040:8040" in out
    code, out, err = plugin(env, capsys, "error-url", url, "--expose")  # a Service for be-2 only
    debug_svc = kubectl.json("svc", f"{NAME}-be-2-error-log", "-n", ns)
    assert debug_svc["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == f"{NAME}-be-2"
    own_port = debug_svc["spec"]["ports"][0]["nodePort"]
    assert code == 0 and out.strip() == f"http://{address}:{own_port}/api/_load_error_log?file={FILE}", err
    assert f"kubectl delete service -n {ns} {NAME}-be-2-error-log" in err
    resolve = f"{address}:{own_port}=127.0.0.1:{be.port}"
    code, out, err = plugin(env, capsys, "error-url", url, "--expose", "--fetch", "--resolve", resolve)
    assert code == 0 and out.splitlines()[1].startswith("Reason: column(k1)"), err
    code, _, err = plugin(env, capsys, "error-url", url.replace("be-2", "be-9"), "--via", "pod-ip")
    assert code == 1 and f"pod {NAME}-be-9 not found" in err
    code, _, err = plugin(
        env, capsys, "error-url", url.replace("shard_1", "shard_7"), "--via", "nodeport", "--fetch",
        "--resolve", f"{address}:{node_port}=127.0.0.1:{be.port}",
    )  # fmt: skip
    assert code == 1 and "HTTP 404" in err


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_connect_dry_run(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plugin(env, capsys, "connect", "--dry-run")
    driver = env["driver"]
    assert code == 0 and out.splitlines() == [f"mysql -h {driver.host} -P {driver.port} -u root"]


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_status_shows_the_decommission(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str], kubectl: Kubectl
) -> None:
    ns = env["ns"]
    kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":2}}}')

    def decommissioning() -> str | None:
        _, out, _ = plugin(env, capsys, "status", NAME)
        row = next((line for line in out.splitlines() if line.split()[:1] == [f"{NAME}-be-2"]), "")
        return out if "decommissioning" in row.split() and "tablets left" in out else None

    out = eventually(decommissioning, 60, what="status showing be-2 decommissioning")
    assert f"be: {NAME}-be-2 decommissioning" in out
    kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":3}}}')  # cancel: the next test restarts a pod


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_debug_on_off(env: dict[str, Any], capsys: pytest.CaptureFixture[str], kubectl: Kubectl) -> None:
    ns, pod = env["ns"], f"{NAME}-be-1"
    uid = kubectl.json("pod", pod, "-n", ns)["metadata"]["uid"]
    code, out, err = plugin(env, capsys, "debug", "on", pod)
    assert code == 0, err
    assert kubectl.json("pod", pod, "-n", ns)["metadata"]["annotations"][kp.DEBUG_ANNOTATION] == "debug"
    assert "kubectl exec" in out
    code, _, err = plugin(env, capsys, "debug", "off", pod)  # not a tty, no --yes: refused
    assert code == 2 and "--yes" in err
    assert kubectl.json("pod", pod, "-n", ns)["metadata"]["uid"] == uid
    code, out, err = plugin(env, capsys, "debug", "off", pod, "--yes")
    assert code == 0, err

    def restarted() -> bool:
        try:
            p = kubectl.json("pod", pod, "-n", ns)
        except Exception:  # between the old pod's deletion and the new one's creation
            return False
        return bool(
            p["metadata"]["uid"] != uid
            and kp.DEBUG_ANNOTATION not in (p["metadata"].get("annotations") or {})
        )

    eventually(restarted, 60, what=f"{pod} recreated without the debug annotation")
    code, _, err = plugin(env, capsys, "debug", "on", f"{NAME}-be-9")
    assert code == 1 and "not found" in err


def test_connect_dry_run_port_forwards_the_fe_service(capsys: pytest.CaptureFixture[str]) -> None:
    dc = {"metadata": {"name": NAME, "namespace": "doris"}, "spec": {"feSpec": {}, "authSecret": "creds"}}
    secret = {"data": {"username": "YWRtaW4=", "password": "czNjcjN0"}}  # admin / s3cr3t
    kube = FakeKube({("dcr", NAME): dc, ("secret", "creds"): secret}, namespace="doris")
    args = kp.parser().parse_args(["connect", "--dry-run", "--local-port", "19030"])
    assert kp.cmd_connect(args, kube) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"kubectl port-forward -n doris svc/{NAME}-fe-service 19030:9030 &",
        "mysql -h 127.0.0.1 -P 19030 -u admin -p",
    ]
    assert "s3cr3t" not in out
    dc["metadata"]["annotations"] = {FE_ADDRESS_ANNOTATION: "127.0.0.1:40001"}
    assert kp.cmd_connect(kp.parser().parse_args(["connect", NAME, "--dry-run"]), kube) == 0
    assert capsys.readouterr().out.splitlines() == ["mysql -h 127.0.0.1 -P 40001 -u admin -p"]


# ---- unit: the commands that run kubectl / mysql (fakes on PATH) ----------------------------------

FAKE_KUBECTL = """#!{python}
# a stand-in for `kubectl port-forward ... LOCAL:REMOTE`: serves the BE web API on LOCAL
import sys, time
from doris_sim.be_http import BeWebServer
local = int(sys.argv[-1].split(":")[0])
open({calls!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
be = BeWebServer(port=local)
be.add_error_log("f1", "Reason: bad row\\n")
be.start()
time.sleep(60)
"""

FAKE_MYSQL = """#!{python}
import os, socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[sys.argv.index("-P") + 1])), timeout=5).close()
print("mysql", " ".join(sys.argv[1:]), "password-in-env" if os.environ.get("MYSQL_PWD") else "no-password")
"""


@pytest.fixture
def fake_bin(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    calls = tmp_path / "kubectl-calls"
    for name, text in (("kubectl", FAKE_KUBECTL), ("mysql", FAKE_MYSQL)):
        path = tmp_path / name
        path.write_text(text.format(python=sys.executable, calls=str(calls)))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return calls


def test_fetch_through_a_port_forward(fake_bin: Any, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    url = f"http://{NAME}-be-2.{NAME}-be-internal.doris.svc.cluster.local:8040/api/_load_error_log?file=f1"
    args = kp.parser().parse_args(
        ["error-url", url, "--via", "port-forward", "--local-port", str(port), "--fetch"]
    )
    assert kp.cmd_error_url(args, fake("ClusterIP")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"kubectl port-forward -n doris pod/{NAME}-be-2 {port}:8040",
        f"http://127.0.0.1:{port}/api/_load_error_log?file=f1",
        "Reason: bad row",
    ]
    assert fake_bin.read_text() == f"port-forward -n doris pod/{NAME}-be-2 {port}:8040\n"
    eventually(lambda: not kp_port_open(port), 10, what="the port-forward stopped")


def kp_port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_connect_runs_mysql_through_a_port_forward(fake_bin: Any, capfd: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    dc = {
        "metadata": {"name": NAME, "namespace": "doris"},
        "spec": {"adminUser": {"name": "ops", "password": "pw"}},
    }
    kube = FakeKube({("dcr", NAME): dc}, namespace="doris")
    assert kp.cmd_connect(kp.parser().parse_args(["connect", "--local-port", str(port)]), kube) == 0
    out = capfd.readouterr().out
    assert f"mysql -h 127.0.0.1 -P {port} -u ops password-in-env" in out and "pw " not in out
    assert fake_bin.read_text() == f"port-forward -n doris svc/{NAME}-fe-service {port}:9030\n"


@pytest.mark.cluster
@pytest.mark.timeout(60)
def test_missing_cluster_and_bad_kubeconfig(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = plugin(env, capsys, "status", "nope")
    assert code == 1 and f"DorisCluster nope not found in namespace {env['ns']}" in err
    with pytest.raises(SystemExit) as info:
        kp.main(["status", "--kubeconfig", "/nonexistent/kubeconfig"])
    assert info.value.code == 2


def test_status_when_the_fe_is_unreachable() -> None:
    dc = {"metadata": {"name": NAME, "namespace": "doris"}, "spec": {"feSpec": {"replicas": 3}}}
    table = kp.parse_resolve([f"{NAME}-fe-service.doris.svc:9030=127.0.0.1:1"])
    st = kp.cluster_status(FakeKube({}, namespace="doris"), dc, table, True)
    assert st["members"]["error"].startswith(f"FE {NAME}-fe-service.doris.svc:9030 not reachable")
    text = kp.render_status(st)
    assert "DorisCluster doris/doriscluster-sample: Unknown" in text and "fe         0/3" in text
    assert "(showing Kubernetes state only)" in text


def test_error_url_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = kp.parser().parse_args(["error-url", DOC_URL, "--via", "nodeport", "-o", "json"])
    assert kp.cmd_error_url(args, fake()) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["via"] == "nodeport" and data["url"].startswith("http://10.16.10.7:32713/") and data["notes"]
