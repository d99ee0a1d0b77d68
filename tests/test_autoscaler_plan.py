"""The DorisClusterAutoscaler's pure plan: from a snapshot to the replicas to write and the status."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from doris_operator.api.dorisclusterautoscaler import ComponentRange, DorisClusterAutoscaler
from doris_operator.reconcile.autoscaler import (
    POD_SELECTOR,
    ComponentSnapshot,
    MetricReading,
    PodUsage,
    Snapshot,
    data_floor,
    plan,
)
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


class Metrics:
    """A metrics API that answers each list with the pods of its scope, or fails."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str | None] = []
        self.fail = fail
        self.pods = [("a", "be-0"), ("a", "be-1"), ("b", "be-0")]

    async def pod_metrics(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        assert selector == POD_SELECTOR
        self.calls.append(namespace)
        if self.fail:
            raise OSError("metrics-server is down")
        return [{"metadata": {"namespace": ns, "name": n}} for ns, n in self.pods if namespace in (None, ns)]


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


def test_a_pass_lists_every_pods_metrics_once() -> None:
    async def main() -> None:
        metrics = Metrics()
        usage = PodUsage(metrics, {"a", "b"})
        assert _names(await usage("a", {})) == ["be-0", "be-1"]
        assert _names(await usage("b", {})) == ["be-0"]
        assert _names(await usage("a", {})) == ["be-0", "be-1"]
        assert metrics.calls == [None]  # one list of every namespace for the pass

        one = Metrics()
        usage = PodUsage(one, {"b"})
        assert _names(await usage("b", {})) == ["be-0"]
        assert one.calls == ["b"]  # a single namespace: its own list, not every pod's

        watched = Metrics()
        usage = PodUsage(watched, {"a", "b"}, ["a", "b"])
        await usage("a", {})
        await usage("b", {})
        await usage("b", {})
        assert watched.calls == ["a", "b"]  # --namespace: per-namespace Roles, per-namespace lists

        down = Metrics(fail=True)
        usage = PodUsage(down, {"a", "b"})
        for ns in ("a", "b"):
            with pytest.raises(OSError, match="down"):
                await usage(ns, {})
        assert down.calls == [None]  # the failure holds for the pass: not asked again

    asyncio.run(main())
