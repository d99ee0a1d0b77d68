"""DorisMonitor's pure parts: builders (objects, rules, dashboards), the reconcile's plan and status,
and the operator metric the decommission alert watches.  No cluster, no I/O."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from doris_operator import metrics as om
from doris_operator.api.doriscluster import DorisCluster
from doris_operator.api.dorismonitor import DorisMonitor
from doris_operator.builders import alerts as alert_defs
from doris_operator.builders import dashboards as dash
from doris_operator.builders import doris_metrics
from doris_operator.builders import monitor as mb
from doris_operator.reconcile import monitor as rm

ROOT = Path(__file__).resolve().parents[1]
NS = "doris"


def monitor(mode: str = "prometheusOperator", uid: str = "uid-1", **spec: Any) -> DorisMonitor:
    return DorisMonitor.model_validate(
        {
            "metadata": {"name": "mon", "namespace": NS, "uid": uid},
            "spec": {"cluster": "demo", "mode": mode, **spec},
        }
    )


def cluster(fe: int = 3, election: int | None = None) -> DorisCluster:
    fe_spec: dict[str, Any] = {"replicas": fe, "image": "apache/doris:fe-2.1.8"}
    if election is not None:
        fe_spec["electionNumber"] = election
    return DorisCluster.model_validate(
        {"metadata": {"name": "demo", "namespace": NS}, "spec": {"feSpec": fe_spec}}
    )


PROMQL_WORDS = {"sum", "max", "min", "by", "rate", "increase", "delta", "ignoring", "or", "and", "unless",
                "histogram_quantile", "count_over_time", "le", "on"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (identifiers before a label matcher or a range)."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    names = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr))
    names |= set(re.findall(r"\(([a-zA-Z_:][a-zA-Z0-9_:]*)\[", expr))
    names |= {n for n in re.findall(r"\(([a-zA-Z_:][a-zA-Z0-9_:]*)\)", expr)}
    return {n for n in names if n not in PROMQL_WORDS}


def every_expr() -> list[tuple[str, str]]:
    dm = monitor()
    out = [(f"alert {a.name}", a.expr) for a in alert_defs.alerts(dm, cluster())]
    out += [(f"alert {a.name} signal", a.signal) for a in alert_defs.alerts(dm, cluster())]
    for file, model in dash.dashboards(dm).items():
        out += [(f"{file} {title}", expr) for title, expr in dash.queries(model)]
    return out


def test_every_metric_name_comes_from_the_catalogue() -> None:
    unknown = {
        (where, name)
        for where, expr in every_expr()
        for name in metric_names(expr)
        if name not in doris_metrics.KNOWN
    }
    assert not unknown, unknown
    used = {name for _, expr in every_expr() for name in metric_names(expr)}
    assert used >= {"doris_fe_query_err", "doris_be_tablet_cumulative_max_compaction_score", "jvm_gc", "up"}


def test_the_name_check_can_fail() -> None:
    assert metric_names('sum(rate(doris_fe_made_up{a="b"}[5m]))') == {"doris_fe_made_up"}


def test_every_alert_has_a_runbook_line() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    for a in alert_defs.alerts(monitor(), cluster()):
        anchor = a.runbook.split("#", 1)[1]
        assert f"\n### {anchor}\n{a.name}:" in doc, a.name
        assert f"| {a.name} |" in doc, a.name


def test_followers_and_quorum_come_from_the_cluster() -> None:
    assert alert_defs.follower_pods(monitor(), cluster(5, 3)) == (["demo-fe-0", "demo-fe-1", "demo-fe-2"], 2)
    assert alert_defs.follower_pods(monitor(), cluster(5, 5))[1] == 3
    assert alert_defs.follower_pods(monitor(), cluster(1)) == (["demo-fe-0"], 1)
    rule = next(
        a for a in alert_defs.alerts(monitor(), cluster(4, 3)) if a.name == "DorisFEFollowersBelowQuorum"
    )
    assert 'pod=~"demo-fe-0|demo-fe-1|demo-fe-2"' in rule.expr and rule.expr.endswith("< 2")


@pytest.mark.parametrize("mode", ["prometheusOperator", "bundled"])
def test_every_object_is_owned_and_labelled(mode: str) -> None:
    dm = monitor(mode)
    objs = mb.build(dm, cluster())
    assert objs
    for obj in objs:
        meta = obj["metadata"]
        assert meta["namespace"] == NS
        assert meta["labels"][mb.LABEL_MONITOR] == "mon"
        assert meta["labels"][mb.LABEL_PART]
        assert meta["ownerReferences"] == [
            {"apiVersion": "doris.selectdb.com/v1", "kind": "DorisMonitor", "name": "mon", "uid": "uid-1",
             "controller": True, "blockOwnerDeletion": True}
        ]  # fmt: skip
        # never carry the labels the DorisCluster's indexes and pruning select on
        assert "app.doris.ownerreference/name" not in meta["labels"]
        assert "app.doris.cluster" not in json.dumps(
            obj.get("spec", {}).get("template", {}).get("metadata", {})
        )


def test_prometheus_operator_mode_objects() -> None:
    dm = monitor(
        prometheusOperator={
            "labels": {"release": "kps"},
            "dashboardLabel": "grafana_dash",
            "dashboardLabelValue": "yes",
        }
    )
    objs = {(o["kind"], o["metadata"]["name"]): o for o in mb.build(dm, cluster())}
    assert set(objs) == {
        ("PodMonitor", "mon-fe"), ("PodMonitor", "mon-be"), ("PodMonitor", "mon-operator"),
        ("PrometheusRule", "mon-rules"), ("ConfigMap", "mon-dashboards"),
    }  # fmt: skip
    fe = objs[("PodMonitor", "mon-fe")]
    assert fe["metadata"]["labels"]["release"] == "kps"
    assert fe["spec"]["namespaceSelector"] == {"matchNames": [NS]}
    assert fe["spec"]["selector"]["matchLabels"] == {"app.doris.cluster": "demo"}
    assert fe["spec"]["podMetricsEndpoints"][0]["port"] == "http-port"
    be = objs[("PodMonitor", "mon-be")]
    assert be["spec"]["selector"]["matchExpressions"][0]["values"] == ["be", "cn"]
    assert be["spec"]["podMetricsEndpoints"][0]["port"] == "webserver-port"
    op = objs[("PodMonitor", "mon-operator")]
    assert op["spec"]["namespaceSelector"] == {"matchNames": ["doris-operator"]}
    assert objs[("PrometheusRule", "mon-rules")]["metadata"]["labels"]["release"] == "kps"
    cm = objs[("ConfigMap", "mon-dashboards")]
    assert cm["metadata"]["labels"]["grafana_dash"] == "yes"
    assert sorted(cm["data"]) == [
        f"doris-{s}.json" for s in sorted(["be", "fe", "loads", "operator", "overview"])
    ]


def test_turning_parts_off() -> None:
    kinds = {o["kind"] for o in mb.build(monitor(dashboards=False, alerts={"enabled": False}), None)}
    assert kinds == {"PodMonitor"}
    no_op = mb.build(monitor(operator={"enabled": False}), None)
    assert "mon-operator" not in {o["metadata"]["name"] for o in no_op}


def test_bundled_prometheus_scrapes_only_this_cluster() -> None:
    dm = monitor("bundled")
    cm = next(o for o in mb.build(dm, cluster()) if o["metadata"]["name"] == "mon-prometheus-config")
    config = yaml.safe_load(cm["data"][mb.CONFIG_FILE])
    assert config["rule_files"] == [mb.RULES_FILE]
    rules = yaml.safe_load(cm["data"][mb.RULES_FILE])
    assert [r["alert"] for r in rules["groups"][0]["rules"]] == [
        a.name for a in alert_defs.alerts(dm, cluster())
    ]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"doris-fe", "doris-be", "doris-operator"}
    for name, port in (("doris-fe", "http-port"), ("doris-be", "webserver-port")):
        sd = jobs[name]["kubernetes_sd_configs"][0]
        assert sd["role"] == "pod" and sd["namespaces"] == {"names": [NS]}
        keep = {
            tuple(r["source_labels"]): r["regex"]
            for r in jobs[name]["relabel_configs"]
            if r.get("action") == "keep"
        }
        assert keep[("__meta_kubernetes_pod_label_app_doris_cluster",)] == "demo"
        assert keep[("__meta_kubernetes_pod_container_port_name",)] == port
        targets = {r["target_label"] for r in jobs[name]["relabel_configs"] if "target_label" in r}
        assert targets == {"namespace", "pod", "doris_cluster", "component"}
    assert jobs["doris-operator"]["static_configs"] == [
        {"targets": ["doris-operator-metrics.doris-operator.svc:8080"]}
    ]
    role = next(o for o in mb.build(dm, cluster()) if o["kind"] == "Role")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]


def test_grafana_reads_the_password_from_a_mounted_file() -> None:
    dm = monitor("bundled", bundled={"grafana": {"adminSecret": {"name": "my-grafana", "key": "pw"}}})
    objs = mb.build(dm, cluster())
    assert not [o for o in objs if o["kind"] == "Secret"], "the user's Secret is never made or applied"
    deploy = next(o for o in objs if o["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    env = pod["containers"][0]["env"]
    assert {"name": "GF_SECURITY_ADMIN_PASSWORD__FILE", "value": "/etc/grafana-admin/pw"} in env
    assert not any("valueFrom" in e for e in env)
    assert {
        "name": "admin",
        "secret": {"secretName": "my-grafana", "items": [{"key": "pw", "path": "pw"}]},
    } in pod["volumes"]
    provisioning = next(o for o in objs if o["metadata"]["name"] == "mon-grafana-provisioning")
    ds = yaml.safe_load(provisioning["data"]["datasources.yaml"])["datasources"][0]
    assert ds["url"] == f"http://mon-prometheus.{NS}.svc:9090" and ds["isDefault"] is True
    generated = mb.generated_admin_secret(monitor("bundled"), "s3cret")
    assert generated["metadata"]["name"] == "mon-grafana-admin" and generated["stringData"] == {
        "password": "s3cret"
    }


def test_service_types() -> None:
    dm = monitor("bundled", bundled={"grafana": {"service": {"type": "NodePort", "nodePort": 30300}}})
    svc = next(
        o for o in mb.build(dm, None) if o["kind"] == "Service" and o["metadata"]["name"] == "mon-grafana"
    )
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30300


def test_dashboards_are_built_by_the_sdk() -> None:
    models = dash.dashboards(monitor())
    assert len(models) == 5
    uids = [m["uid"] for m in models.values()]
    assert len(set(uids)) == 5
    for model in models.values():
        assert model["templating"]["list"][0]["type"] == "datasource"
        for panel in model["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            assert all(
                'doris_cluster="demo"' in t["expr"] or "doris_operator_" in t["expr"]
                for t in panel["targets"]
            )


# -- plan and status (pure) ------------------------------------------------------------------------------


def observed(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): rm.trim_monitor_child(o) for o in objs}


def test_switching_mode_prunes_what_the_other_mode_made() -> None:
    before = mb.build(monitor("prometheusOperator"), None)
    foreign = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "someone-elses", "labels": {mb.LABEL_MONITOR: "mon"},
                     "ownerReferences": [{"kind": "DorisMonitor", "uid": "another-monitor"}]},
    }  # fmt: skip
    snap = rm.Snapshot({}, {"metadata": {"name": "demo"}}, observed([*before, foreign]), admin_secret=False)
    p = rm.plan(monitor("bundled"), snap)
    deleted = {(a.kind, a.name) for a in p.actions if a.verb == "delete"}
    assert deleted == {("PodMonitor", "mon-fe"), ("PodMonitor", "mon-be"), ("PodMonitor", "mon-operator"),
                       ("PrometheusRule", "mon-rules")}  # fmt: skip
    assert ("Secret", "mon-grafana-admin") in {
        (a.kind, a.name) for a in p.actions if a.verb == "create-secret"
    }
    # the generated Secret, once there (read by name), is never re-applied, nor deleted by a switch back
    again = rm.plan(
        monitor("bundled"), rm.Snapshot({}, snap.cluster, observed(mb.build(monitor("bundled"), None)))
    )
    assert not [a for a in again.actions if a.kind == "Secret"]
    secret = mb.generated_admin_secret(monitor("bundled"), "x")
    back = rm.plan(
        monitor("prometheusOperator"),
        rm.Snapshot({}, snap.cluster, observed([*mb.build(monitor("bundled"), None), secret])),
    )
    assert [a.kind for a in back.actions if a.verb == "delete" and a.kind == "Secret"] == []
    assert ("StatefulSet", "mon-prometheus") in {(a.kind, a.name) for a in back.actions if a.verb == "delete"}


def test_missing_prometheus_operator_crds_degrade_the_status() -> None:
    dm = monitor()
    snap = rm.Snapshot({}, {"metadata": {"name": "demo"}}, {}, {"PodMonitor", "PrometheusRule"})
    p = rm.plan(dm, snap)
    assert {a.kind for a in p.actions} == {"ConfigMap"}
    st = rm.status(dm, snap, p, {})
    assert st["phase"] == "Degraded"
    assert st["parts"]["scrape"]["reason"] == "PrometheusOperatorMissing"
    assert st["parts"]["dashboards"]["ready"] is True
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "install the Prometheus Operator's CRDs" in degraded["message"]


def test_status_in_bundled_mode_waits_for_the_pods_and_gives_urls() -> None:
    dm = monitor("bundled", bundled={"grafana": {"service": {"type": "NodePort"}}})
    objs = mb.build(dm, None)
    children = observed(objs)
    children[("StatefulSet", "mon-prometheus")]["status"] = {"readyReplicas": 1}
    children[("Service", "mon-grafana")]["spec"] = {"ports": [{"port": 3000, "nodePort": 31000}]}
    snap = rm.Snapshot({}, {"metadata": {"name": "demo"}}, children)
    st = rm.status(dm, snap, rm.plan(dm, snap), {})
    assert st["parts"]["prometheus"]["ready"] is True
    assert st["parts"]["grafana"] == {
        **st["parts"]["grafana"],
        "ready": False,
        "reason": "Starting",
        "nodePort": 31000,
    }
    assert st["phase"] == "Progressing"
    assert st["grafanaURL"] == f"http://mon-grafana.{NS}.svc:3000"
    children[("Deployment", "mon-grafana")]["status"] = {"availableReplicas": 1}
    st = rm.status(dm, snap, rm.plan(dm, snap), {})
    assert st["phase"] == "Ready"
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "Ready": "True",
        "Progressing": "False",
        "Degraded": "False",
    }
    missing = rm.Snapshot({}, None, children)
    assert rm.status(dm, missing, rm.plan(dm, missing), {})["conditions"][2]["reason"] == "ClusterNotFound"


def test_decommission_gauge_follows_the_draining_pods() -> None:
    om.export_draining("ns1", "c1", {"be": {"c1-be-3": 40, "c1-be-4": 12}})
    text = generate_latest(om.REGISTRY).decode()
    assert (
        'doris_operator_decommission_tablets{be_pod="c1-be-3",component="be",doris_cluster="c1",'
        'doris_namespace="ns1"} 40.0' in text
    )
    om.export_draining("ns1", "c1", {"be": {"c1-be-4": 2}})
    text = generate_latest(om.REGISTRY).decode()
    assert "c1-be-3" not in text and 'be_pod="c1-be-4"' in text
    om.export_draining("ns1", "c1", {})
    assert "c1-be-4" not in generate_latest(om.REGISTRY).decode()
    assert 'doris_operator_reconciles_total{result="error"} ' in generate_latest(om.REGISTRY).decode()


@pytest.mark.parametrize(
    ("namespace", "cluster"),
    [("ns", "demo"), ("doris-production-eu-west-1", "doriscluster-sample-with-a-long-name"), ("a", "b")],
)
def test_the_dashboard_texts_are_those_of_building_the_dashboards(namespace: str, cluster: str) -> None:
    """texts() puts the names into one build's JSON; it must be byte for byte what building says."""
    dm = DorisMonitor.model_validate(
        {"metadata": {"name": "m", "namespace": namespace}, "spec": {"cluster": cluster}}
    )
    built = {f: json.dumps(m, sort_keys=True, separators=(",", ":")) for f, m in dash.dashboards(dm).items()}
    assert dash.texts(dm) == built
    assert all(namespace in text and "token7q3x" not in text for text in built.values())
