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


class Kube(Metrics):
    """What :class:`AutoscalerLoop` writes through, recorded."""

    def __init__(self, usage: float) -> None:
        super().__init__()
        self.usage = usage
        self.pods = [("ns", f"c-be-{i}") for i in range(5)]
        self.replicas: list[dict[str, int]] = []

    async def pod_metrics(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        items = await super().pod_metrics(namespace, selector)
        return [{**i, "containers": [{"usage": {"cpu": f"{int(self.usage * 1000)}m"}}]} for i in items]

    async def patch_autoscaler_status(self, name: str, namespace: str, status: dict[str, Any]) -> None:
        pass

    async def apply_cluster_replicas(
        self, name: str, ns: str, replicas: dict[str, int], manager: str
    ) -> None:
        self.replicas.append(replicas)

    async def event(self, body: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        pass


def test_the_data_floor_is_read_again_before_the_bes_go_down() -> None:
    """A decision that keeps the BEs reuses the FE's SHOW BACKENDS for FLOOR_MAX_AGE; one that lowers
    them, or that the floor holds up, asks the FE again first, and a floor grown meanwhile stops it."""
    from doris_operator.doris.client import Backend
    from doris_operator.reconcile.autoscaler import FLOOR_MAX_AGE, AutoscalerLoop

    gib = 2**30
    held = {"used": 10 * gib}
    reads: list[float] = []
    clock = [0.0]

    async def backends(dc: Any) -> list[Backend]:
        reads.append(clock[0])
        return [
            Backend(
                backend_id=i,
                host=f"h{i}",
                heartbeat_port=9050,
                alive=True,
                system_decommissioned=False,
                tablet_num=1,
                data_used_capacity=held["used"] // 5,
                total_capacity=100 * gib,
                node_role="mix",
            )
            for i in range(5)
        ]

    cluster = {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisCluster",
        "metadata": {"name": "c", "namespace": "ns"},
        "spec": {
            "feSpec": {"replicas": 1, "image": "fe"},
            "beSpec": {"replicas": 5, "image": "be", "requests": {"cpu": "1"}},
        },
        "status": {"phase": "Ready", "beStatus": {"replicas": 5}},
    }
    pods = [
        {"metadata": {"name": f"c-be-{i}", "labels": {"app.kubernetes.io/component": "be"}}, "ready": True}
        for i in range(5)
    ]

    def body() -> dict[str, Any]:
        return {
            "metadata": {"name": "a", "namespace": "ns", "generation": 1},
            "spec": {
                "cluster": "c",
                "be": {"minReplicas": 1, "maxReplicas": 8},
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
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
        }

    async def main() -> None:
        kube = Kube(usage=0.5)  # at the target: no change
        loop = AutoscalerLoop(kube, lambda: None, backends)
        loop.floors.clock = lambda: clock[0]
        for t in (0.0, 15.0, 30.0, 45.0):
            clock[0] = t
            await loop.evaluate(body(), cluster, pods)
        assert reads == [0.0] and kube.replicas == []  # kept while nothing goes down
        clock[0] = FLOOR_MAX_AGE
        await loop.evaluate(body(), cluster, pods)
        assert reads == [0.0, FLOOR_MAX_AGE]  # and read again once it is FLOOR_MAX_AGE old

        kube.usage = 0.1  # 5 BEs at 10%: the metrics propose 1, the 10 GiB held needs 1
        held["used"] = 240 * gib  # but the BEs took data since the kept read: 3 BEs hold it
        clock[0] = FLOOR_MAX_AGE + 15
        await loop.evaluate(body(), cluster, pods)
        assert reads == [0.0, FLOOR_MAX_AGE, FLOOR_MAX_AGE + 15]  # asked again before going down
        assert kube.replicas == [{"beSpec": 3}]  # to the floor of now, not the kept one's 1

        clock[0] = FLOOR_MAX_AGE + 30  # the floor holds it up (DataFloor): the FE is asked each time
        cluster["spec"]["beSpec"]["replicas"] = 3  # type: ignore[index]
        await loop.evaluate(body(), cluster, pods[:3])
        assert reads[-1] == FLOOR_MAX_AGE + 30 and len(reads) == 4
        assert kube.replicas == [{"beSpec": 3}]

    asyncio.run(main())


async def test_a_wake_evaluates_only_its_clusters_autoscalers_and_a_status_change_wakes_none() -> None:
    """With 200 autoscalers, each one's status write woke a pass of all of them while converging."""
    from doris_operator.handlers import Wiring
    from doris_operator.reconcile.autoscaler import AutoscalerLoop

    def dca(ns: str, name: str, generation: int, status: Any = None) -> dict[str, Any]:
        meta = {"name": name, "namespace": ns, "generation": generation}
        return {"metadata": meta, "spec": {"cluster": "c"}, "status": status}

    indexes = {
        "dc_cluster_autoscalers": {("a", "c"): [dca("a", "x", 1)], ("b", "c"): [dca("b", "y", 1)]},
        "dc_clusters": {},
        "dc_pods": {},
    }

    async def backends(dc: Any) -> list[Any]:
        return []

    loop = AutoscalerLoop(Metrics(), lambda: indexes, backends, interval=3600)
    evaluated: list[str] = []

    async def evaluate(body: Any, *args: Any) -> None:
        evaluated.append(body["metadata"]["namespace"])

    loop.evaluate = evaluate  # type: ignore[method-assign,assignment]
    wiring = Wiring(None, None, loop, None)  # type: ignore[arg-type]
    runner = asyncio.create_task(loop.run())
    for _ in range(100):
        if len(evaluated) == 2:
            break
        await asyncio.sleep(0.01)
    assert sorted(evaluated) == ["a", "b"]  # the first pass: every one
    await wiring.autoscaler_event("ADDED", dca("a", "x", 1))
    await asyncio.sleep(0.05)
    assert sorted(evaluated) == ["a", "a", "b"]  # only the woken cluster's
    await wiring.autoscaler_event("MODIFIED", dca("a", "x", 1, {"observedGeneration": 1}))
    await asyncio.sleep(0.05)
    assert len(evaluated) == 3  # its status written: the index has it, no evaluation
    await wiring.autoscaler_event("MODIFIED", dca("b", "y", 2))  # its spec edited
    await asyncio.sleep(0.05)
    assert evaluated[-1] == "b" and len(evaluated) == 4
    loop.wake(("", ""))
    await asyncio.sleep(0.05)
    assert len(evaluated) == 6
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
