"""The DorisClusterAutoscaler's pure plan: from a snapshot to the replicas to write and the status."""

from __future__ import annotations

from typing import Any

from doris_operator.api.dorisclusterautoscaler import ComponentRange, DorisClusterAutoscaler
from doris_operator.reconcile.autoscaler import ComponentSnapshot, MetricReading, Snapshot, data_floor, plan
from doris_operator.reconcile.hpa_algorithm import PodSample

NOW = 1_800_000_000.0


def autoscaler(status: dict[str, Any] | None = None) -> DorisClusterAutoscaler:
    return DorisClusterAutoscaler.model_validate(
        {
            "metadata": {"name": "a", "namespace": "ns", "generation": 2},
            "spec": {
                "cluster": "c",
                "be": {"minReplicas": 3, "maxReplicas": 6},
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
            },
            "status": status,
        }
    )


def snapshot(usage: list[float | None], *, busy: str | None = None, conflict: str | None = None) -> Snapshot:
    dca = autoscaler()
    reading = MetricReading(dca.spec.metrics[0], pods=[PodSample(u, 2.0) for u in usage])
    comp = ComponentSnapshot(
        "be", ComponentRange(min_replicas=3, max_replicas=6), len(usage), [reading], 0, busy, {}, conflict
    )
    return Snapshot(dca, {"metadata": {"name": "c"}}, [comp], NOW)


def condition(status: dict[str, Any], ctype: str) -> tuple[str, str]:
    c = next(c for c in status["conditions"] if c["type"] == ctype)
    return c["status"], c["reason"]


def test_load_scales_up_with_a_decision_and_an_event() -> None:
    result = plan(snapshot([1.8, 1.8, 1.8]))
    assert result.replicas == {"beSpec": 6}
    be = result.status["be"]
    assert (be["lastDecision"]["from"], be["lastDecision"]["to"], be["lastDecision"]["reason"]) == (
        3,
        6,
        "ScaleUp",
    )
    assert be["currentMetrics"] == [{"name": "cpu", "target": "50%", "current": "90%", "proposedReplicas": 6}]
    assert condition(be, "ScalingActive") == ("True", "ValidMetricFound")
    assert [e[1] for e in result.events] == ["ScaledUp"]
    assert be["scaleEvents"] == [{"time": "2027-01-15T08:00:00Z", "delta": 3}]


def test_a_busy_cluster_is_not_scaled() -> None:
    result = plan(snapshot([1.8, 1.8, 1.8], busy="BEs are being decommissioned: x"))
    assert result.replicas == {}
    assert condition(result.status["be"], "AbleToScale") == ("False", "ClusterBusy")


def test_no_metric_no_decision() -> None:
    result = plan(snapshot([None, None, None]))
    assert result.replicas == {}
    assert condition(result.status["be"], "ScalingActive") == ("False", "FailedGetMetrics")
    assert condition(result.status, "Ready")[0] == "False"


def test_a_second_autoscaler_of_the_component_scales_nothing() -> None:
    result = plan(snapshot([1.8, 1.8, 1.8], conflict="DorisClusterAutoscaler b also scales be"))
    assert result.replicas == {}
    assert condition(result.status["be"], "ScalingActive") == ("False", "AmbiguousAutoscaler")


def test_a_missing_cluster_is_degraded_once() -> None:
    snap = Snapshot(autoscaler(), None, [], NOW)
    result = plan(snap)
    assert condition(result.status, "Degraded") == ("True", "ClusterNotFound")
    assert [e[1] for e in result.events] == ["ClusterNotFound"]
    again = Snapshot(autoscaler(result.status), None, [], NOW + 15)
    assert plan(again).events == []  # not every 15 s


def test_the_data_floor_counts_what_the_bes_hold() -> None:
    from doris_operator.doris.client import Backend

    def be(used: int, total: int, role: str = "mix") -> Backend:
        return Backend(
            backend_id=1, host="h", heartbeat_port=9050, alive=True, system_decommissioned=False,
            tablet_num=1, data_used_capacity=used, total_capacity=total, node_role=role,
        )  # fmt: skip

    gib = 2**30
    assert data_floor([be(40 * gib, 100 * gib)] * 3) == 2  # 120 GiB at most 80% of 100 GiB each
    assert data_floor([be(0, 100 * gib)] * 3) == 1
    assert data_floor([be(90 * gib, 100 * gib, "computation")]) == 0
