"""The bundled Prometheus config and the alert rules, checked by the real promtool (built from
github.com/prometheus/prometheus by hack/prometheus.py): ``check config``, ``check rules``, and
``test rules`` with synthetic series for every alert, which must fire when it should and stay silent
when not."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import prometheus
from doris_operator.api.doriscluster import DorisCluster
from doris_operator.api.dorismonitor import DorisMonitor
from doris_operator.builders import alerts as alert_defs
from doris_operator.builders import monitor as mb

pytestmark = pytest.mark.prometheus

NS, CLUSTER = "ns", "demo"
L = f'namespace="{NS}", doris_cluster="{CLUSTER}"'


def monitor(mode: str = "bundled") -> DorisMonitor:
    return DorisMonitor.model_validate(
        {
            "metadata": {"name": "mon", "namespace": NS, "uid": "u-1"},
            "spec": {"cluster": CLUSTER, "mode": mode},
        }
    )


def cluster() -> DorisCluster:
    """4 FEs, 3 of them followers (demo-fe-3 is an observer): quorum 2."""
    return DorisCluster.model_validate(
        {
            "metadata": {"name": CLUSTER, "namespace": NS},
            "spec": {
                "feSpec": {"replicas": 4, "electionNumber": 3, "image": "apache/doris:fe-2.1.8"},
                "beSpec": {"replicas": 3, "image": "apache/doris:be-2.1.8"},
            },
        }
    )


@pytest.fixture(scope="module")
def promtool() -> Path:
    return prometheus.ensure_prometheus().promtool


def run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def write_bundled(tmp: Path) -> None:
    cm = next(o for o in mb.build(monitor(), cluster()) if o["metadata"]["name"] == "mon-prometheus-config")
    for file, text in cm["data"].items():
        (tmp / file).write_text(text)


def test_check_config_on_the_bundled_prometheus_config(promtool: Path, tmp_path: Path) -> None:
    write_bundled(tmp_path)
    proc = run(promtool, "check", "config", mb.CONFIG_FILE, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr
    assert "1 rule files found" in proc.stdout + proc.stderr


def test_check_config_fails_on_a_broken_config(promtool: Path, tmp_path: Path) -> None:
    """The check above can fail: promtool rejects a scrape config it does not know."""
    write_bundled(tmp_path)
    config = yaml.safe_load((tmp_path / mb.CONFIG_FILE).read_text())
    config["scrape_configs"][0]["kubernetes_sd_configs"][0]["role"] = "nosuchrole"
    (tmp_path / mb.CONFIG_FILE).write_text(yaml.safe_dump(config))
    assert run(promtool, "check", "config", mb.CONFIG_FILE, cwd=tmp_path).returncode != 0


@pytest.mark.parametrize("mode", ["bundled", "prometheusOperator"])
def test_check_rules(promtool: Path, tmp_path: Path, mode: str) -> None:
    if mode == "bundled":
        write_bundled(tmp_path)
    else:
        rule = next(o for o in mb.build(monitor(mode), cluster()) if o["kind"] == "PrometheusRule")
        (tmp_path / mb.RULES_FILE).write_text(yaml.safe_dump(rule["spec"]))
    proc = run(promtool, "check", "rules", mb.RULES_FILE, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(alert_defs.alerts(monitor(), cluster()))} rules found" in proc.stdout


# -- promtool test rules ------------------------------------------------------------------------------


def render(template: str, labels: dict[str, str], value: float) -> str:
    """The subset of Prometheus's alert templating the rules use."""

    def one(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if expr == "$value":
            return format(value, "g")
        if expr == "$value | humanizePercentage":
            return f"{value * 100:.4g}%"
        lm = re.fullmatch(r"\$labels\.(\w+)( \| toUpper)?", expr)
        assert lm, f"template {expr!r} unknown to this test"
        out = labels.get(lm.group(1), "")
        return out.upper() if lm.group(2) else out

    return re.sub(r"\{\{(.*?)\}\}", one, template)


FE0 = f'{L}, component="fe", pod="demo-fe-0"'

# alert -> (input series when it must fire, when it must stay silent, eval time, expected labels, $value)
CASES: dict[str, dict[str, Any]] = {
    "DorisFEDown": {
        "fire": [(f"up{{{FE0}}}", "0x70"), (f'up{{{L}, component="fe", pod="demo-fe-1"}}', "1x70")],
        "silent": [(f"up{{{FE0}}}", "1x70"), (f'up{{{L}, component="fe", pod="demo-fe-1"}}', "1x70")],
        "at": "10m",
        "labels": {"namespace": NS, "doris_cluster": CLUSTER, "component": "fe", "pod": "demo-fe-0"},
        "value": 0,
    },
    "DorisBEDown": {
        "fire": [(f'up{{{L}, component="be", pod="demo-be-1"}}', "1x3 0x70")],
        "silent": [(f'up{{{L}, component="be", pod="demo-be-1"}}', "1x3 0x1 1x70")],
        "at": "10m",
        "labels": {"namespace": NS, "doris_cluster": CLUSTER, "component": "be", "pod": "demo-be-1"},
        "value": 0,
    },
    "DorisFENoMaster": {
        # only the master writes the edit log; flat counters mean no master
        "fire": [(f'doris_fe_edit_log{{{FE0}, type="write"}}', "100x70")],
        "silent": [(f'doris_fe_edit_log{{{FE0}, type="write"}}', "100+6x70")],
        "at": "20m",
        "labels": {"namespace": NS, "doris_cluster": CLUSTER},
        "value": 0,
    },
    "DorisFEFollowersBelowQuorum": {
        # demo-fe-3 is an observer: it being up does not make a quorum
        "fire": [
            (f"up{{{FE0}}}", "1x70"),
            (f'up{{{L}, component="fe", pod="demo-fe-1"}}', "0x70"),
            (f'up{{{L}, component="fe", pod="demo-fe-2"}}', "0x70"),
            (f'up{{{L}, component="fe", pod="demo-fe-3"}}', "1x70"),
        ],
        "silent": [
            (f"up{{{FE0}}}", "1x70"),
            (f'up{{{L}, component="fe", pod="demo-fe-1"}}', "1x70"),
            (f'up{{{L}, component="fe", pod="demo-fe-2"}}', "0x70"),
            (f'up{{{L}, component="fe", pod="demo-fe-3"}}', "0x70"),
        ],
        "at": "10m",
        "labels": {"namespace": NS, "doris_cluster": CLUSTER},
        "value": 1,
    },
    "DorisDecommissionStuck": {
        "fire": [
            (
                f'doris_operator_decommission_tablets{{doris_namespace="{NS}", doris_cluster="{CLUSTER}", '
                'component="be", be_pod="demo-be-2"}',
                "100x70",
            ),
        ],
        "silent": [
            (
                f'doris_operator_decommission_tablets{{doris_namespace="{NS}", doris_cluster="{CLUSTER}", '
                'component="be", be_pod="demo-be-2"}',
                "1000-20x49",
            ),
        ],
        "at": "45m",
        "labels": {"doris_namespace": NS, "doris_cluster": CLUSTER, "component": "be", "be_pod": "demo-be-2"},
        "value": 100,
    },
    "DorisUnhealthyTablets": {
        "fire": [(f'doris_fe_tablet_status_count{{{FE0}, type="unhealthy"}}', "0+10x70")],
        "silent": [(f'doris_fe_tablet_status_count{{{FE0}, type="unhealthy"}}', "50x70")],
        "at": "40m",
        "labels": {"namespace": NS, "doris_cluster": CLUSTER},
        "value": 100,
    },
    "DorisBEDiskUsageHigh": {
        "fire": [
            (
                f'doris_be_disks_total_capacity{{{L}, component="be", pod="demo-be-0", path="/data"}}',
                "100x70",
            ),
            (f'doris_be_disks_avail_capacity{{{L}, component="be", pod="demo-be-0", path="/data"}}', "5x70"),
        ],
        "silent": [
            (
                f'doris_be_disks_total_capacity{{{L}, component="be", pod="demo-be-0", path="/data"}}',
                "100x70",
            ),
            (f'doris_be_disks_avail_capacity{{{L}, component="be", pod="demo-be-0", path="/data"}}', "50x70"),
        ],
        "at": "30m",
        "labels": {
            "namespace": NS,
            "doris_cluster": CLUSTER,
            "component": "be",
            "pod": "demo-be-0",
            "path": "/data",
        },
        "value": 0.95,
    },
    "DorisBECompactionScoreHigh": {
        "fire": [
            (
                f'doris_be_tablet_cumulative_max_compaction_score{{{L}, component="be", pod="demo-be-0"}}',
                "150x70",
            ),
            (f'doris_be_tablet_base_max_compaction_score{{{L}, component="be", pod="demo-be-0"}}', "10x70"),
        ],
        "silent": [
            (
                f'doris_be_tablet_cumulative_max_compaction_score{{{L}, component="be", pod="demo-be-0"}}',
                "50x70",
            ),
            (f'doris_be_tablet_base_max_compaction_score{{{L}, component="be", pod="demo-be-0"}}', "10x70"),
        ],
        "at": "30m",
        "labels": {"namespace": NS, "doris_cluster": CLUSTER, "pod": "demo-be-0"},
        "value": 150,
    },
    "DorisQueryErrorRateHigh": {
        "fire": [
            (f"doris_fe_query_total{{{FE0}}}", "0+100x70"),
            (f"doris_fe_query_err{{{FE0}}}", "0+10x70"),
        ],
        "silent": [
            (f"doris_fe_query_total{{{FE0}}}", "0+100x70"),
            (f"doris_fe_query_err{{{FE0}}}", "0+1x70"),
        ],
        "at": "30m",
        "labels": {"namespace": NS, "doris_cluster": CLUSTER},
        "value": 0.1,
    },
    "DorisLoadFailures": {
        "fire": [
            (f'doris_fe_txn_counter{{{FE0}, type="begin"}}', "0+10x70"),
            (f'doris_fe_txn_counter{{{FE0}, type="failed"}}', "0+5x70"),
        ],
        "silent": [
            (f'doris_fe_txn_counter{{{FE0}, type="begin"}}', "0+10x70"),
            (f'doris_fe_txn_counter{{{FE0}, type="failed"}}', "0+0x70"),
        ],
        "at": "30m",
        "labels": {"namespace": NS, "doris_cluster": CLUSTER},
        "value": 0.5,
    },
    "DorisOperatorReconcileErrors": {
        "fire": [('doris_operator_reconciles_total{result="error"}', "0+1x70")],
        "silent": [
            ('doris_operator_reconciles_total{result="error"}', "3x70"),
            ('doris_operator_reconciles_total{result="unchanged"}', "0+50x70"),
        ],
        "at": "40m",
        "labels": {},
        "value": 1 / 60,
    },
}


def test_every_alert_has_a_case() -> None:
    assert {a.name for a in alert_defs.alerts(monitor(), cluster())} == set(CASES)


def unit_tests() -> dict[str, Any]:
    defs = {a.name: a for a in alert_defs.alerts(monitor(), cluster())}
    tests = []
    for name, case in CASES.items():
        alert = defs[name]
        labels = {**case["labels"], "severity": alert.severity}
        expected = {
            "exp_labels": labels,
            "exp_annotations": {
                "summary": render(alert.summary, labels, case["value"]),
                "description": render(alert.description, labels, case["value"]),
                "runbook_url": alert.runbook,
            },
        }
        for kind in ("fire", "silent"):
            tests.append(
                {
                    "name": f"{name} {kind}",
                    "interval": "1m",
                    "input_series": [{"series": s, "values": v} for s, v in case[kind]],
                    "alert_rule_test": [
                        {
                            "eval_time": case["at"],
                            "alertname": name,
                            "exp_alerts": [expected] if kind == "fire" else [],
                        }
                    ],
                }
            )
    return {"rule_files": [mb.RULES_FILE], "evaluation_interval": "1m", "tests": tests}


def test_every_alert_fires_when_it_should_and_stays_silent_when_not(promtool: Path, tmp_path: Path) -> None:
    write_bundled(tmp_path)
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(unit_tests(), sort_keys=False))
    proc = run(promtool, "test", "rules", "tests.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_promtool_test_rules_can_fail(promtool: Path, tmp_path: Path) -> None:
    """Swap the expectations: every case must now fail (so the test above checks something)."""
    write_bundled(tmp_path)
    swapped = unit_tests()
    for test in swapped["tests"]:
        for t in test["alert_rule_test"]:
            t["exp_alerts"] = [] if t["exp_alerts"] else [{"exp_labels": {"severity": "none"}}]
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(swapped, sort_keys=False))
    proc = run(promtool, "test", "rules", "tests.yml", cwd=tmp_path)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    failed = {name for name in CASES if f"{name} fire" in out}
    assert failed == set(CASES), f"cases that did not fail when swapped: {set(CASES) - failed}\n{out[-3000:]}"
