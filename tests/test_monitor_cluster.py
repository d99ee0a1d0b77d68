"""DorisMonitor on the real control plane: the real Prometheus Operator CRDs (from the
github.com/prometheus-operator/prometheus-operator module, hack/prometheus.py) accept our PodMonitors
and PrometheusRule; the DorisMonitor CRD validates; the reconcile (observe -> plan -> act against the
apiserver) makes each mode's objects, prunes the other mode's on a switch, and deleting the DorisMonitor
leaves nothing behind (owner references, the kube-controller-manager's garbage collector)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

import prometheus
from doris_operator.api.dorismonitor import DorisMonitor
from doris_operator.builders import monitor as mb
from doris_operator.k8s import FIELD_MANAGER, Kube
from doris_operator.reconcile import monitor as rm
from harness import ROOT, Kubectl, Operator, eventually, sample

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

DMON_CRD = ROOT / "config" / "crd" / "doris.selectdb.com_dorismonitors.yaml"


@pytest.fixture(scope="module")
def monitoring_crds(kubectl: Kubectl) -> Kubectl:
    for path in prometheus.crd_files():
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    kubectl("apply", "-f", str(DMON_CRD))
    for name in (
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "dorismonitors.doris.selectdb.com",
    ):
        eventually(
            lambda name=name: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (kubectl.json("crd", name).get("status") or {}).get("conditions") or []
            ),
            60,
            what=f"CRD {name} established",
        )
    eventually(lambda: "podmonitors" in kubectl("api-resources", "--api-group=monitoring.coreos.com"), 30)
    # the apiserver answers 429 "storage is (re)initializing" for a new resource's first moments
    eventually(
        lambda: (
            kubectl.cluster.kubectl(
                "get", "podmonitors,prometheusrules,dorismonitors", "-A", check=False
            ).returncode
            == 0
        ),
        60,
        what="the new resources are served",
    )
    return kubectl


def dmon(namespace: str, mode: str = "prometheusOperator", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisMonitor",
        "metadata": {"name": "mon", "namespace": namespace},
        "spec": {"cluster": "doriscluster-sample", "mode": mode, **spec},
    }


def test_our_podmonitors_and_rules_are_accepted_by_the_prometheus_operator_schema(
    monitoring_crds: Kubectl, clean_namespaces: None
) -> None:
    k = monitoring_crds
    ns = k.new_namespace("mon")
    model = DorisMonitor.model_validate(
        {**dmon(ns), "metadata": {"name": "mon", "namespace": ns, "uid": "x"}}
    )
    objs = [o for o in mb.build(model, None) if o["kind"] in ("PodMonitor", "PrometheusRule")]
    assert {o["kind"] for o in objs} == {"PodMonitor", "PrometheusRule"}
    for obj in objs:
        obj = copy.deepcopy(obj)
        obj["metadata"].pop("ownerReferences")  # no such owner on this apiserver
        out = k(
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-n",
            ns,
            "-f",
            "-",
            input=json.dumps(obj),
        )
        assert "serverside-applied" in out, out
    stored = k.json("podmonitor", "mon-fe", "-n", ns)
    assert stored["spec"]["podMetricsEndpoints"][0]["port"] == "http-port"
    rule = k.json("prometheusrule", "mon-rules", "-n", ns)
    assert len(rule["spec"]["groups"][0]["rules"]) == 11


def test_the_schema_check_above_can_fail(monitoring_crds: Kubectl, clean_namespaces: None) -> None:
    k = monitoring_crds
    ns = k.new_namespace("mon")
    model = DorisMonitor.model_validate(
        {**dmon(ns), "metadata": {"name": "mon", "namespace": ns, "uid": "x"}}
    )
    bad = copy.deepcopy(next(o for o in mb.build(model, None) if o["kind"] == "PodMonitor"))
    bad["metadata"].pop("ownerReferences")
    bad["spec"]["podMetricsEndpoints"][0]["scheme"] = "gopher"
    proc = k.cluster.kubectl(
        "apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(bad), check=False
    )
    assert proc.returncode != 0
    assert "scheme" in proc.stderr


def test_dorismonitor_crd_validates(monitoring_crds: Kubectl, clean_namespaces: None) -> None:
    k = monitoring_crds
    ns = k.new_namespace("mon")
    for path in sorted((ROOT / "examples").glob("dorismonitor-*.yaml")):
        out = k("apply", "--dry-run=server", "-n", ns, "-f", str(path))
        assert "created (server dry run)" in out
    mixed = dmon(ns, "prometheusOperator", bundled={})
    proc = k.cluster.kubectl(
        "apply", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump(mixed), check=False
    )
    assert proc.returncode != 0
    assert "spec.bundled is for mode bundled" in proc.stderr
    proc = k.cluster.kubectl(
        "apply", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump(dmon(ns, "loki")), check=False
    )
    assert proc.returncode != 0
    assert 'spec.mode: Unsupported value: "loki"' in proc.stderr


def client_for(kube_cluster: Any) -> AsyncClient:
    return AsyncClient(KubeConfig.from_file(str(kube_cluster.kubeconfig)), field_manager=FIELD_MANAGER)


def owned(k: Kubectl, ns: str) -> set[tuple[str, str]]:
    """Everything in the namespace carrying the monitor's label, of every kind it may own."""
    kinds = (
        "podmonitors,prometheusrules,configmaps,secrets,serviceaccounts,roles,rolebindings,"
        "statefulsets,deployments,services"
    )
    items = k.json(kinds, "-n", ns, "-l", f"{mb.LABEL_MONITOR}=mon")["items"]
    return {(i["kind"], i["metadata"]["name"]) for i in items}


async def reconcile(k: Kubectl, ns: str, ctx: rm.MonitorContext) -> dict[str, Any]:
    body = k.json("dorismonitor", "mon", "-n", ns)
    result = await rm.reconcile(body, ctx)
    assert result.writes >= 0
    return dict(k.json("dorismonitor", "mon", "-n", ns))


async def test_mode_switches_and_delete_leave_nothing_behind(
    monitoring_crds: Kubectl, kube_cluster: Any, clean_namespaces: None
) -> None:
    client = client_for(kube_cluster)
    try:
        await _mode_switches(monitoring_crds, Kube(client))
    finally:
        await client.close()


async def _mode_switches(k: Kubectl, kube: Kube) -> None:
    ns = k.new_namespace("mon")
    k.apply(sample(), ns)
    k.apply(dmon(ns), ns)
    ctx = rm.MonitorContext(kube)
    listed: list[str] = []
    list_labelled = kube.list_labelled

    async def recording(kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        listed.append(kind)
        return await list_labelled(kind, namespace, labels)

    kube.list_labelled = recording  # type: ignore[method-assign]

    def kinds_listed() -> list[str]:
        out = list(listed)
        listed.clear()
        return out

    stored = await reconcile(k, ns, ctx)
    assert kinds_listed() == list(rm.OWNED_KINDS)  # the first reconcile of a generation: every kind
    operator_mode = {
        ("PodMonitor", "mon-fe"),
        ("PodMonitor", "mon-be"),
        ("PodMonitor", "mon-operator"),
        ("PrometheusRule", "mon-rules"),
        ("ConfigMap", "mon-dashboards"),
    }
    assert owned(k, ns) == operator_mode
    assert stored["status"]["phase"] == "Ready", stored["status"]
    assert set(stored["status"]["parts"]) == {"scrape", "rules", "dashboards"}
    dashboards = k.json("configmap", "mon-dashboards", "-n", ns)
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert len(dashboards["data"]) == 5
    # a second reconcile of an unchanged monitor writes nothing, and lists only the kinds it makes
    assert (await rm.reconcile(k.json("dorismonitor", "mon", "-n", ns), ctx)).writes == 0
    assert kinds_listed() == ["PodMonitor", "PrometheusRule", "ConfigMap"]

    k.patch(ns, json.dumps({"spec": {"mode": "bundled"}}), target="dmon/mon")
    stored = await reconcile(k, ns, ctx)
    bundled = owned(k, ns)
    assert not bundled & operator_mode - {("ConfigMap", "mon-dashboards")}, bundled
    assert {
        ("StatefulSet", "mon-prometheus"),
        ("Service", "mon-prometheus"),
        ("ConfigMap", "mon-prometheus-config"),
        ("ServiceAccount", "mon-prometheus"),
        ("Role", "mon-prometheus"),
        ("RoleBinding", "mon-prometheus"),
        ("Deployment", "mon-grafana"),
        ("Service", "mon-grafana"),
        ("ConfigMap", "mon-grafana-provisioning"),
        ("ConfigMap", "mon-dashboards"),
        ("Secret", "mon-grafana-admin"),
    } == bundled
    status = stored["status"]
    assert status["prometheusURL"] == f"http://mon-prometheus.{ns}.svc:9090"
    assert status["grafanaURL"] == f"http://mon-grafana.{ns}.svc:3000"
    assert status["parts"]["prometheus"]["ready"] is False  # no pod is ready yet: Progressing
    assert status["phase"] == "Progressing"
    # the Grafana password: a mounted Secret file, never an env value
    secret = k.json("secret", "mon-grafana-admin", "-n", ns)
    password = secret["data"]["password"]
    grafana = k.json("deployment", "mon-grafana", "-n", ns)["spec"]["template"]["spec"]
    env = grafana["containers"][0]["env"]
    assert {"name": "GF_SECURITY_ADMIN_PASSWORD__FILE", "value": "/etc/grafana-admin/password"} in env
    assert not any("valueFrom" in e for e in env)
    assert password not in json.dumps(grafana)
    # the password is chosen once: the Secret is read by name (Secrets are never listed)
    kinds_listed()
    await reconcile(k, ns, ctx)  # the switch deleted objects: this one scans every kind again
    assert kinds_listed() == list(rm.OWNED_KINDS)
    assert "Secret" not in rm.OWNED_KINDS
    await reconcile(k, ns, ctx)
    assert k.json("secret", "mon-grafana-admin", "-n", ns)["data"]["password"] == password

    k.patch(ns, json.dumps({"spec": {"mode": "prometheusOperator"}}), target="dmon/mon")
    await reconcile(k, ns, ctx)
    # the generated Grafana Secret stays with its DorisMonitor (no Secret is ever deleted by the operator)
    assert owned(k, ns) == operator_mode | {("Secret", "mon-grafana-admin")}
    k.patch(ns, json.dumps({"spec": {"mode": "bundled"}}), target="dmon/mon")
    await reconcile(k, ns, ctx)
    assert k.json("secret", "mon-grafana-admin", "-n", ns)["data"]["password"] == password  # kept
    k.patch(ns, json.dumps({"spec": {"mode": "prometheusOperator"}}), target="dmon/mon")
    await reconcile(k, ns, ctx)

    events = k.json("events", "-n", ns, "--field-selector", "involvedObject.kind=DorisMonitor")["items"]
    reasons = {(e["reason"], e["message"]) for e in events}
    created = [m for r, m in reasons if r == "Created"]
    assert any(m.startswith("created ") and "PodMonitor mon-fe" in m for m in created), created
    assert ("Deleted", "deleted StatefulSet mon-prometheus: no longer wanted") in reasons
    assert not any(password in e["message"] for e in events)

    k("delete", "dorismonitor", "mon", "-n", ns)
    eventually(lambda: not owned(k, ns), 90, what="the garbage collector deletes the DorisMonitor's objects")


def test_the_operator_process_reconciles_a_dorismonitor(
    monitoring_crds: Kubectl, kube_cluster: Any, tmp_path: Path, clean_namespaces: None
) -> None:
    """`doris-operator run` end to end: the informers' DorisMonitor index and events feed the monitor's work
    loop; a spec edit is applied; deleting the DorisMonitor leaves nothing."""
    k = monitoring_crds
    ns = k.new_namespace("mon")
    op = Operator(kube_cluster, tmp_path, "--resync", "600", "-n", ns).start()
    try:
        k.apply(sample(), ns)
        k.apply(dmon(ns), ns)

        def phase() -> str | None:
            return (k.json("dorismonitor", "mon", "-n", ns).get("status") or {}).get("phase")

        eventually(lambda: phase() == "Ready", 90, what=f"the DorisMonitor Ready\n{op.log_tail()}")
        assert ("PodMonitor", "mon-fe") in owned(k, ns)
        # the children come from the watches: none is listed, and one deleted by hand is made again
        # at once (the resync is 10 minutes away), with one live read of it (the cache missed it)
        requests = op.metrics()
        assert not [key for key in requests if key.startswith("doris_operator_api_requests_total{") and
                    'verb="list"' in key], requests  # fmt: skip
        gets = 'doris_operator_api_requests_total{kind="PodMonitor",verb="get"}'
        before = requests.get(gets, 0.0)
        k("delete", "podmonitor", "mon-fe", "-n", ns)
        eventually(lambda: ("PodMonitor", "mon-fe") in owned(k, ns), 30, what="the deleted PodMonitor back")
        assert op.metrics().get(gets, 0.0) > before
        k.patch(ns, json.dumps({"spec": {"alerts": {"diskUsageRatio": 0.7}}}), target="dmon/mon")
        eventually(
            lambda: "> 0.7" in json.dumps(k.json("prometheusrule", "mon-rules", "-n", ns)["spec"]),
            60,
            what="the new threshold applied",
        )
        assert op.metrics().get('doris_operator_monitors{phase="Ready"}') == 1.0
        k("delete", "dorismonitor", "mon", "-n", ns)
        eventually(lambda: not owned(k, ns), 90, what="nothing left of the DorisMonitor")
    finally:
        op.stop()
