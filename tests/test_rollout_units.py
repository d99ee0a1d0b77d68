"""The rolling update's view of a pod (reconcile/rollout.py): when a replaced pod counts as back."""

from __future__ import annotations

from typing import Any

import pytest

from doris_operator.doris.client import TabletHealth
from doris_operator.doris.rolling import ComponentState, PodState, plan_rollout
from doris_operator.reconcile.rollout import _up

NEW, OLD = "rev-new", "rev-old"


def pod(
    ordinal: int, revision: str, *, containers: bool = True, ready: bool = True, gate: str | None = "True"
) -> Any:
    return {
        "metadata": {"name": f"c-be-{ordinal}"},
        "revision": revision,
        "containersReady": containers,
        "ready": ready,
        "gated": True,
        "memberAlive": gate,
    }


@pytest.mark.parametrize(
    ("body", "up"),
    [
        # outdated: containers ready is enough (the rollout itself holds its gate closed: disable_query)
        (pod(1, OLD, ready=False, gate="False"), True),
        (pod(1, OLD, containers=False, ready=False), False),
        # replaced: only once Ready with the gate open, so the Services route to it again
        (pod(2, NEW), True),
        (pod(2, NEW, ready=False, gate="False"), False),
        (pod(2, NEW, ready=False, gate=None), False),
        ({**pod(2, NEW, ready=True), "gated": False}, True),
    ],
)
def test_a_replaced_pod_is_back_only_once_its_gate_is_open(body: Any, up: bool) -> None:
    assert _up(body, NEW) is up


def be_state(bodies: list[Any]) -> ComponentState:
    pods = [
        PodState(
            name=b["metadata"]["name"],
            ordinal=i,
            ready=_up(b, NEW),
            outdated=b["revision"] != NEW,
            alive=True,
            node=(f"h{i}", 9050),
        )
        for i, b in enumerate(bodies)
    ]
    return ComponentState(comp="be", replicas=len(bodies), persistent=True, pods=pods)


def test_the_next_be_waits_while_the_replaced_one_is_still_out_of_service() -> None:
    health = TabletHealth(tablets=10, healthy=10, cloning=0)
    # be-2 replaced, alive in Doris and its queries just re-enabled, but its gate has not opened yet
    plan = plan_rollout(
        [be_state([pod(0, OLD), pod(1, OLD), pod(2, NEW, ready=False, gate="False")])], health=health
    )
    assert plan.delete is None and "c-be-2" in plan.waiting["be"][1]
    assert plan_rollout([be_state([pod(0, OLD), pod(1, OLD), pod(2, NEW)])], health=health).delete == "c-be-1"
