"""Pure parts of the reconciler: the work queue, the applied-object memory, status computation."""

from __future__ import annotations

import asyncio
import itertools

from doris_operator.api.validation import parse_cluster
from doris_operator.reconcile.observed import APPLIED_HASH
from doris_operator.reconcile.pipeline import AppliedMemory, _keep_claim_templates
from doris_operator.reconcile.queue import WorkQueue
from doris_operator.reconcile.status import Findings, cluster_status, component_status, without_times


async def test_queue_never_hands_out_a_key_twice_and_requeues_dirty_keys() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("a")  # collapses
    q.add("b")
    assert len(q) == 2
    first = await q.get()
    q.add(first)  # added while being worked on: not handed out again yet
    second = await q.get()
    assert {first, second} == {"a", "b"} and len(q) == 0
    q.done(first)  # now it comes back, once
    assert await asyncio.wait_for(q.get(), 1) == first
    q.done(first)
    q.done(second)
    assert len(q) == 0


async def test_queue_add_after() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0.05)
    q.add_after("a", 10)  # a later delayed add doesn't postpone the earlier one
    assert await asyncio.wait_for(q.get(), 1) == "a"


def _obj(uid: str, generation: int, digest: str) -> dict[str, object]:
    return {"metadata": {"uid": uid, "generation": generation, "annotations": {APPLIED_HASH: digest}}}


def test_applied_memory_detects_drift_and_restart() -> None:
    memory = AppliedMemory()
    stored = _obj("u1", 2, "h")
    assert not memory.unchanged(stored, "h")  # unknown after a restart: apply once
    memory.remember(stored)
    assert memory.unchanged(_obj("u1", 2, "h"), "h")
    assert not memory.unchanged(_obj("u1", 3, "h"), "h")  # somebody else changed the spec
    assert not memory.unchanged(_obj("u1", 2, "h"), "other")  # the desired state changed
    assert not memory.unchanged(None, "h")


def test_claim_templates_are_kept_and_differences_named() -> None:
    stored = {
        "spec": {
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data"},
                    "spec": {"resources": {"requests": {"storage": "10Gi"}}, "volumeMode": "Filesystem"},
                    "status": {"phase": "Pending"},
                }
            ]
        }
    }
    wanted = {
        "spec": {
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "20Gi"}}}},
                {"metadata": {"name": "logs"}, "spec": {}},
            ]
        }
    }
    obj, differ = _keep_claim_templates(wanted, stored)
    assert differ == ["data", "logs"]
    assert obj["spec"]["volumeClaimTemplates"] == [
        {k: v for k, v in stored["spec"]["volumeClaimTemplates"][0].items() if k != "status"}
    ]
    assert wanted["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"


DC = parse_cluster(
    {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisCluster",
        "metadata": {"name": "dc", "namespace": "ns", "generation": 4},
        "spec": {"feSpec": {"image": "selectdb/doris.fe-ubuntu:2.1.8", "replicas": 3}},
    }
)


def _sts(
    ready: int, updated: int, replicas: int = 3, current: str = "r1", update: str = "r1"
) -> dict[str, object]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "dc-fe", "generation": 2, "labels": {}, "annotations": {}},
        "spec": {},
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": update,
        },
    }


def _pod(name: str, ready: bool, reason: str | None = None) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": "fe"}},
        "ready": ready,
        "phase": "Running",
        "reason": reason,
    }


def test_component_ready_and_conditions() -> None:
    children = {("StatefulSet", "dc-fe"): _sts(3, 3)}
    pods = [_pod(f"dc-fe-{i}", True) for i in range(3)]
    st = component_status(DC, "fe", 3, children, pods, Findings(), None, "T0")
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds == {
        "Ready": ("True", "AllReplicasReady"),
        "Progressing": ("False", "Stable"),
        "Degraded": ("False", "AsExpected"),
    }
    assert (st["ready"], st["componentCondition"]["phase"], st["observedGeneration"]) == (
        "3/3",
        "available",
        4,
    )
    assert st["runningInstances"] == ["dc-fe-0", "dc-fe-1", "dc-fe-2"]


def test_rolling_update_and_failed_pods() -> None:
    children = {("StatefulSet", "dc-fe"): _sts(2, 1, current="r1", update="r2")}
    pods = [_pod("dc-fe-0", True), _pod("dc-fe-1", True), _pod("dc-fe-2", False, "CrashLoopBackOff")]
    st = component_status(DC, "fe", 3, children, pods, Findings(), None, "T0")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Progressing"]["reason"] == "RollingUpdate"
    assert (
        conds["Degraded"]["status"] == "True" and "dc-fe-2: CrashLoopBackOff" in conds["Degraded"]["message"]
    )
    assert st["failedInstances"] == ["dc-fe-2"] and st["componentCondition"]["phase"] == "haveMemberFailed"


def test_transition_times_move_only_on_change() -> None:
    children = {("StatefulSet", "dc-fe"): _sts(3, 3)}
    pods = [_pod(f"dc-fe-{i}", True) for i in range(3)]
    first = component_status(DC, "fe", 3, children, pods, Findings(), None, "T0")
    again = component_status(DC, "fe", 3, children, pods, Findings(), first, "T1")
    assert [c["lastTransitionTime"] for c in again["conditions"]] == ["T0", "T0", "T0"]
    assert without_times(first) == without_times(again)
    worse = component_status(
        DC, "fe", 3, {("StatefulSet", "dc-fe"): _sts(2, 3)}, pods, Findings(), first, "T2"
    )
    assert next(c for c in worse["conditions"] if c["type"] == "Ready")["lastTransitionTime"] == "T2"


def test_cluster_phase() -> None:
    findings = Findings()
    fe = component_status(DC, "fe", 3, {("StatefulSet", "dc-fe"): _sts(3, 3)}, [], findings, None, "T")
    assert cluster_status(DC, {"fe": fe}, findings, None, "T")["phase"] == "Ready"
    findings.degrade("", "InvalidSpec", "x")
    st = cluster_status(DC, {"fe": fe}, findings, None, "T")
    assert st["phase"] == "Degraded" and st["beStatus"] is None  # None: removed from the stored status


async def test_queue_serves_event_wakeups_before_resyncs() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("r1", "r2", "r3"):
        q.add(key, urgent=False)
    q.add("e1")
    q.add("r2")  # an event for a key waiting on the resync line promotes it
    assert [await q.get() for _ in range(2)] == ["e1", "r2"]
    assert [await q.get() for _ in range(2)] == ["r1", "r3"]  # r2's old place is skipped
    assert len(q) == 0
    for key in ("e1", "r2", "r1", "r3"):
        q.done(key)


async def test_queue_get_waits_for_an_add() -> None:
    q: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    q.add("a", urgent=False)
    assert await asyncio.wait_for(waiter, 1) == "a"


async def test_queue_works_on_at_most_its_resync_slots_of_resync_keys() -> None:
    q: WorkQueue[str] = WorkQueue(resync_slots=2)
    for key in ("r1", "r2", "r3", "r4"):
        q.add(key, urgent=False)
    assert [await q.get() for _ in range(2)] == ["r1", "r2"]
    third = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not third.done()  # both slots taken: a third resync waits
    q.add("e1")  # an event is handed out at once
    assert await asyncio.wait_for(third, 1) == "e1"
    fourth = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not fourth.done()
    q.done("e1")  # an event's key frees no resync slot
    await asyncio.sleep(0.01)
    assert not fourth.done()
    q.done("r1")
    assert await asyncio.wait_for(fourth, 1) == "r3"
    q.add("r2")  # a resync key woken by an event while worked on comes back as urgent
    q.done("r2")
    assert await asyncio.wait_for(q.get(), 1) == "r2"  # though r3 holds one slot and r4 waits
    assert len(q) == 1


async def test_a_resync_round_is_spread_over_the_period() -> None:
    from doris_operator.reconcile.controller import RESYNC_BUCKETS, Controller, resync_bucket

    keys = [("ns", f"dc-{i}") for i in range(200)]
    controller = Controller(None, resync=0.5)  # type: ignore[arg-type]
    controller.indexes = {"dc_clusters": {key: [{}] for key in keys}}
    seen: list[tuple[float, tuple[str, str]]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    controller.enqueue = lambda key, urgent=True: seen.append((loop.time() - start, key))  # type: ignore[method-assign]
    task = asyncio.create_task(controller._resync())
    await asyncio.sleep(0.55)
    task.cancel()
    assert sorted(key for _, key in seen) == sorted(keys)  # each once in one period
    # in ten rounds, not one: a round's enqueues come together, rounds a sleep apart (a round's times
    # were once rounded to 10 ms, which split one round straddling a boundary into two under load)
    times = sorted(t for t, _ in seen)
    rounds = 1 + sum(1 for a, b in itertools.pairwise(times) if b - a > 0.5 / RESYNC_BUCKETS / 2)
    assert rounds == RESYNC_BUCKETS
    assert len({resync_bucket(key) for key in keys}) == RESYNC_BUCKETS
    assert max(sum(1 for _, k in seen if resync_bucket(k) == b) for b in range(RESYNC_BUCKETS)) < 40
