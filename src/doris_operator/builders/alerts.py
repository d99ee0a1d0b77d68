"""The alerts of a DorisMonitor, as typed definitions rendered into a Prometheus rule group.  No I/O.

Every alert has the ``expr`` Prometheus evaluates and a ``signal``: the same query without the
comparison, which must return data whenever the cluster is scraped (tests/test_monitor_prometheus.py
asks a real Prometheus for each).  Metric names: :mod:`.doris_metrics`.

Target labels (set by the PodMonitor relabelings and by the bundled Prometheus's kubernetes_sd
relabelling alike): ``namespace``, ``pod``, ``doris_cluster`` and ``component`` (fe, be, cn).  The
operator's own metrics name a cluster with ``doris_namespace`` and ``doris_cluster``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..api.doriscluster import DorisCluster
from ..api.dorismonitor import DorisMonitor
from .pod import election_number

RUNBOOK_BASE = "docs/monitoring.md#"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    signal: str
    for_: str
    severity: str
    summary: str
    description: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def runbook(self) -> str:
        return f"{RUNBOOK_BASE}{self.name.lower()}"

    def rule(self, extra_labels: dict[str, str] | None = None) -> dict[str, object]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **self.labels, **(extra_labels or {})},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": self.runbook,
            },
        }


def _sel(dm: DorisMonitor, *matchers: str) -> str:
    return (
        "{"
        + ", ".join([f'namespace="{dm.namespace}"', f'doris_cluster="{dm.spec.cluster}"', *matchers])
        + "}"
    )


def _op_sel(dm: DorisMonitor) -> str:
    return f'{{doris_namespace="{dm.namespace}", doris_cluster="{dm.spec.cluster}"}}'


BY_CLUSTER = "by (namespace, doris_cluster)"


def follower_pods(dm: DorisMonitor, dc: DorisCluster | None) -> tuple[list[str], int]:
    """The FE pods that are followers (ordinal < electionNumber, as the FE image's entrypoint decides)
    and the quorum among them."""
    spec = dc.spec.fe_spec if dc is not None else None
    replicas = (spec.replicas if spec is not None and spec.replicas is not None else 1) if dc else 3
    election = election_number(spec) if spec is not None else 3
    followers = max(1, min(election, replicas))
    pods = [f"{dm.spec.cluster}-fe-{i}" for i in range(followers)]
    return pods, followers // 2 + 1


def alerts(dm: DorisMonitor, dc: DorisCluster | None) -> list[Alert]:
    a = dm.spec.alerts
    pods, quorum = follower_pods(dm, dc)
    followers = _sel(dm, 'component="fe"', f'pod=~"{"|".join(pods)}"')
    fe = _sel(dm, 'component="fe"')
    backends = _sel(dm, 'component=~"be|cn"')
    writes = _sel(dm, 'type="write"')
    write_rate = f"sum {BY_CLUSTER} (rate(doris_fe_edit_log{writes}[5m]))"
    disk = f"1 - doris_be_disks_avail_capacity{_sel(dm)} / doris_be_disks_total_capacity{_sel(dm)}"
    by_pod = "by (namespace, doris_cluster, pod)"
    cumulative = f"max {by_pod} (doris_be_tablet_cumulative_max_compaction_score{_sel(dm)})"
    base = f"max {by_pod} (doris_be_tablet_base_max_compaction_score{_sel(dm)})"
    errors = (
        f"sum {BY_CLUSTER} (rate(doris_fe_query_err{_sel(dm)}[5m])) / "
        f"sum {BY_CLUSTER} (rate(doris_fe_query_total{_sel(dm)}[5m]))"
    )
    failed = _sel(dm, 'type="failed"')
    begun = _sel(dm, 'type="begin"')
    loads = (
        f"sum {BY_CLUSTER} (rate(doris_fe_txn_counter{failed}[15m])) / "
        f"sum {BY_CLUSTER} (rate(doris_fe_txn_counter{begun}[15m]))"
    )
    unhealthy_sel = _sel(dm, 'type="unhealthy"')
    unhealthy = f"sum {BY_CLUSTER} (increase(doris_fe_tablet_status_count{unhealthy_sel}[10m]))"
    draining = f"doris_operator_decommission_tablets{_op_sel(dm)}"
    reconcile_errors = 'sum(rate(doris_operator_reconciles_total{result="error"}[10m]))'
    cluster = f"{dm.namespace}/{dm.spec.cluster}"
    out = [
        Alert(
            "DorisFEDown",
            f"up{fe} == 0",
            f"up{fe}",
            "2m",
            "critical",
            "Doris FE {{ $labels.pod }} is down",
            f"FE {{{{ $labels.pod }}}} of {cluster} has not answered /metrics for 2 minutes.",
        ),
        Alert(
            "DorisBEDown",
            f"up{backends} == 0",
            f"up{backends}",
            "2m",
            "critical",
            "Doris {{ $labels.component | toUpper }} {{ $labels.pod }} is down",
            "{{ $labels.component | toUpper }} {{ $labels.pod }} of "
            f"{cluster} has not answered /metrics for 2 minutes.",
        ),
        Alert(
            "DorisFENoMaster",
            f"{write_rate} == 0",
            write_rate,
            "3m",
            "critical",
            f"Doris cluster {cluster} has no FE master",
            "No FE wrote to the edit log for 5 minutes: only the master writes it (at least every 10 "
            "seconds), so no FE is master and DDL, loads and metadata changes fail.",
        ),
        Alert(
            "DorisFEFollowersBelowQuorum",
            f"sum {BY_CLUSTER} (up{followers}) < {quorum}",
            f"sum {BY_CLUSTER} (up{followers})",
            "2m",
            "critical",
            f"Doris cluster {cluster}: fewer than {quorum} of {len(pods)} FE followers are up",
            f"Only {{{{ $value }}}} of the {len(pods)} FE followers ({', '.join(pods)}) answer; electing a "
            f"master needs {quorum}.",
        ),
        Alert(
            "DorisDecommissionStuck",
            f"({draining} > 0) and (delta({draining}[10m]) >= 0)",
            draining,
            f"{a.decommission_stuck_minutes}m",
            "warning",
            "Doris BE {{ $labels.be_pod }} decommission is stuck",
            f"BE {{{{ $labels.be_pod }}}} of {cluster} still holds {{{{ $value }}}} tablets and moved "
            f"none for {a.decommission_stuck_minutes} minutes.",
        ),
        Alert(
            "DorisUnhealthyTablets",
            f"{unhealthy} > 0",
            unhealthy,
            "15m",
            "warning",
            f"Doris cluster {cluster} has unhealthy tablets",
            "The master FE's tablet checker keeps finding unhealthy tablets (missing or bad replicas) for "
            "15 minutes.",
        ),
        Alert(
            "DorisBEDiskUsageHigh",
            f"{disk} > {a.disk_usage_ratio}",
            disk,
            "10m",
            "warning",
            "Doris BE {{ $labels.pod }} disk {{ $labels.path }} is {{ $value | humanizePercentage }} full",
            f"A data directory of {cluster} is fuller than {a.disk_usage_ratio:.0%}.",
        ),
        Alert(
            "DorisBECompactionScoreHigh",
            f"{cumulative} > {a.compaction_score} or {base} > {a.compaction_score}",
            f"{cumulative} or {base}",
            "15m",
            "warning",
            "Doris BE {{ $labels.pod }} compaction score is {{ $value }}",
            f"Compaction is falling behind on {cluster} (score over {a.compaction_score}); loads may be "
            "rejected with too many versions.",
        ),
        Alert(
            "DorisQueryErrorRateHigh",
            f"{errors} > {a.query_error_ratio}",
            errors,
            "10m",
            "warning",
            f"Doris cluster {cluster}: {{{{ $value | humanizePercentage }}}} of queries fail",
            f"More than {a.query_error_ratio:.0%} of the queries failed over 5 minutes.",
        ),
        Alert(
            "DorisLoadFailures",
            f"{loads} > {a.load_failure_ratio}",
            loads,
            "5m",
            "warning",
            f"Doris cluster {cluster}: {{{{ $value | humanizePercentage }}}} of load transactions fail",
            f"More than {a.load_failure_ratio:.0%} of the load transactions failed over 15 minutes.",
        ),
        Alert(
            "DorisOperatorReconcileErrors",
            f"{reconcile_errors} > 0",
            reconcile_errors,
            "15m",
            "warning",
            "doris-operator reconciles keep failing",
            "The operator's reconciles have been failing for 15 minutes (see its log and the Events of the "
            "DorisClusters).",
        ),
    ]
    return out


def rule_groups(dm: DorisMonitor, dc: DorisCluster | None) -> list[dict[str, object]]:
    """The ``groups`` of a Prometheus rule file (and of a PrometheusRule's spec)."""
    if not dm.spec.alerts.enabled:
        return []
    extra = dict(dm.spec.alerts.extra_labels or {})
    return [
        {
            "name": f"doris.{dm.namespace}.{dm.spec.cluster}",
            "rules": [a.rule(extra) for a in alerts(dm, dc)],
        }
    ]
