"""Waits follow what is awaited (reconcile/waits.py, pure): a drain is polled from its progress, other
Doris-side state soon and then backing off, Kubernetes objects through their watch events with only a
long fallback, failures at a fixed retry, and a converged cluster not at all."""

from __future__ import annotations

from typing import Any

import pytest

from doris_operator.doris.client import TabletHealth
from doris_operator.doris.rolling import ComponentState, PodState, plan_rollout
from doris_operator.reconcile import waits
from doris_operator.reconcile.status import Findings
from doris_operator.reconcile.waits import Wait, WaitMemory, decide, doris_poll, drain_poll, gates_pending


def pod(
    name: str, *, containers: bool = True, alive: str | None = None, gated: bool = True
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "gated": gated,
        "containersReady": containers,
        "memberAlive": alive,
        "ready": containers and alive == "True",
    }


def draining(tablets: int) -> Findings:
    f = Findings()
    f.draining["be"] = {"dc-be-4": tablets}
    f.waiting["be"] = ("Decommissioning", f"moving tablets off dc-be-4: {tablets} tablets")
    return f


def test_converged_is_not_requeued_and_forgets() -> None:
    wait, memory = decide(
        "Ready", True, Findings(), [pod("dc-be-0", alive="True")], WaitMemory(5.0, 60, 3.0), 9
    )
    assert wait is None and memory == WaitMemory()


def test_a_drain_is_polled_from_its_progress_and_soon_near_its_end() -> None:
    """60 tablets at 6 per second: the first look soon, then about half the time left, never more
    than the longest poll, and one second apart near the end: Doris's drop is seen within about 1 s."""
    memory = WaitMemory()
    looks: list[tuple[float, float]] = []
    now = 0.0
    while True:
        left = max(0, round(60 - 6 * now))
        if left == 0:
            break
        wait, memory = decide("Progressing", True, draining(left), [], memory, now)
        assert wait is not None and wait.on == "drain" and wait.reason == "Decommissioning"
        looks.append((now, wait.requeue_after))
        now += wait.requeue_after
    assert looks[0] == (0.0, waits.DRAIN_POLL_MIN)  # no rate known yet
    assert all(waits.DRAIN_POLL_MIN <= after <= waits.DRAIN_POLL_MAX for _, after in looks)
    assert looks[1][1] > 2 * waits.DRAIN_POLL_MIN  # a known rate and a long way to go: not every second
    assert len(looks) <= 8, looks  # a handful of looks for a 10 s drain, not one a second
    assert now - 10.0 <= waits.DRAIN_POLL_MIN + 1e-9, looks  # the drop (at 10 s) is seen within 1 s


def test_a_stalled_drain_backs_off_to_the_longest_poll() -> None:
    memory = WaitMemory()
    for now in (0.0, 1.0, 5.0, 20.0, 60.0):
        wait, memory = decide("Progressing", True, draining(60), [], memory, now)
        assert wait is not None
    assert wait.requeue_after == waits.DRAIN_POLL_MAX
    assert drain_poll(60, 0.0, 60, 0.0) == waits.DRAIN_POLL_MIN


def test_drain_poll_bounds() -> None:
    assert drain_poll(1000, 0.0, 1010, 10.0) == waits.DRAIN_POLL_MAX  # 1 tablet/s, 1000 left
    assert drain_poll(3, 0.0, 60, 9.5) == waits.DRAIN_POLL_MIN
    assert drain_poll(30, 0.0, 60, 5.0) == pytest.approx(2.5)  # 6/s, 5 s left: half of it
    assert drain_poll(0, 0.0, 60, 10.0) == waits.DRAIN_POLL_MIN


def test_a_new_drain_restarts_the_rate() -> None:
    _, memory = decide("Progressing", True, draining(10), [], WaitMemory(), 0.0)
    _, memory = decide("Progressing", True, draining(100), [], memory, 50.0)  # another BE leaves
    assert memory.drain_since == 50.0 and memory.drain_tablets == 100
    _, memory = decide("Ready", True, Findings(), [], memory, 60.0)
    assert memory.drain_since is None


def test_doris_state_is_polled_soon_then_backs_off() -> None:
    f = Findings()
    f.polling["be"] = "WaitingForTablets"
    f.waiting["be"] = ("WaitingForTablets", "BE rolling update: waiting for the tablets to be healthy again")
    wait, memory = decide("Progressing", True, f, [], WaitMemory(), 100.0)
    assert wait == Wait("doris", "WaitingForTablets", waits.DORIS_POLL_MIN)
    wait, memory = decide("Progressing", True, f, [], memory, 140.0)
    assert wait is not None and wait.requeue_after == pytest.approx(10.0)
    wait, memory = decide("Progressing", True, f, [], memory, 1000.0)
    assert wait is not None and wait.requeue_after == waits.DORIS_POLL_MAX
    assert doris_poll(0) == waits.DORIS_POLL_MIN


def test_a_readiness_gate_waiting_on_doris_is_polled() -> None:
    pods = [pod("dc-be-0", alive="True"), pod("dc-be-1", alive="False"), pod("dc-be-2", containers=False)]
    assert gates_pending(pods) == ["dc-be-1"]
    wait, _ = decide("Progressing", True, Findings(), pods, WaitMemory(), 0.0)
    assert wait == Wait("doris", "MemberNotAlive", waits.DORIS_POLL_MIN)
    terminating = pod("dc-be-1", alive="False")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert gates_pending([terminating, pod("dc-be-3", gated=False)]) == []


def test_kubernetes_waits_rely_on_watch_events() -> None:
    f = Findings()
    f.waiting["be"] = ("WaitingForFE", "waiting for an FE to answer before creating it")
    starting = [pod("dc-fe-0", containers=False)]
    wait, _ = decide("Progressing", True, f, starting, WaitMemory(), 0.0)
    assert wait == Wait("kubernetes", "WaitingForFE", waits.KUBERNETES_FALLBACK)
    assert waits.KUBERNETES_FALLBACK >= 60  # longer than the resync: only a lost event needs it
    wait, _ = decide("Progressing", True, Findings(), [], WaitMemory(), 0.0)
    assert wait is not None and wait.on == "kubernetes"


def test_failures_are_retried_and_the_soonest_wait_wins() -> None:
    wait, _ = decide("Degraded", False, Findings(), [], WaitMemory(), 0.0)
    assert wait == Wait("retry", "StepFailed", waits.FAILED_REQUEUE)
    f = draining(60)
    f.degrade("", "ReconcileError", "fault recovery failed")
    wait, _ = decide("Degraded", True, f, [], WaitMemory(), 0.0)
    assert wait is not None and wait.on == "drain"  # the drain still polled while something else fails
    g = Findings()
    g.degrade("be", "FEUnreachable", "can't ask the FE")
    wait, _ = decide("Degraded", True, g, [], WaitMemory(), 0.0)
    assert wait == Wait("retry", "Degraded", waits.DEGRADED_REQUEUE)


def _be(*pods: PodState) -> ComponentState:
    return ComponentState(comp="be", replicas=len(pods), pods=list(pods))


def test_the_rollout_says_which_waits_are_on_doris() -> None:
    restarted = PodState(name="dc-be-1", ordinal=1, ready=True, outdated=False, alive=False, node=None)
    outdated = PodState(name="dc-be-0", ordinal=0, ready=True, outdated=True, alive=True, node=("h", 9050))
    plan = plan_rollout([_be(outdated, restarted)], health=None)
    assert plan.polling == {"be": "MemberNotAlive"}
    alive = PodState(name="dc-be-1", ordinal=1, ready=True, outdated=False, alive=True, node=None)
    down = PodState(name="dc-be-1", ordinal=1, ready=False, outdated=False, alive=False, node=None)
    plan = plan_rollout([_be(outdated, down)], health=None)
    assert plan.polling == {} and "waiting for dc-be-1" in plan.waiting["be"][1]  # a pod: watched
    plan = plan_rollout([_be(outdated, alive)], health=TabletHealth(100, 90, 10))
    assert plan.polling == {"be": "WaitingForTablets"} and plan.delete is None
    plan = plan_rollout([_be(outdated, alive)], health=None, health_error="boom")
    assert plan.polling == {}  # unknown health: Degraded, retried
