"""Scale-in decisions: which statements to send and how many pods may stay."""

from __future__ import annotations

import dataclasses

from doris_operator.doris.client import Backend, Frontend
from doris_operator.doris.membership import plan_backends, plan_frontends


def be(i: int, tablets: int = 10, decommissioned: bool = False, alive: bool = True) -> Backend:
    return Backend(
        backend_id=i,
        host=f"be-{i}.x",
        heartbeat_port=9050,
        alive=alive,
        system_decommissioned=decommissioned,
        tablet_num=tablets,
        data_used_capacity=tablets * 100,
        avail_capacity=10_000,
    )


def pods(n: int, comp: str = "be") -> dict[int, tuple[str, list[str]]]:
    return {i: (f"dc-{comp}-{i}", [f"{comp}-{i}.x"]) for i in range(n)}


def test_scale_in_starts_decommission_and_keeps_the_pods() -> None:
    plan = plan_backends(3, 5, pods(5), [be(i) for i in range(5)])
    assert plan.decommission == [("be-3.x", 9050), ("be-4.x", 9050)]
    assert plan.replicas == 5 and plan.draining == {"dc-be-3": 10, "dc-be-4": 10}


def test_draining_keeps_the_pods_until_empty_then_drops_and_shrinks() -> None:
    draining = plan_backends(3, 5, pods(5), [*[be(i) for i in range(3)], be(3, 4, True), be(4, 0, True)])
    assert (draining.replicas, draining.decommission, draining.dropp) == (5, [], [("be-4.x", 9050)])
    assert draining.draining == {"dc-be-3": 4}
    done = plan_backends(3, 5, pods(5), [be(i) for i in range(3)])  # Doris dropped them at 0 tablets
    assert (done.replicas, done.decommission, done.draining) == (3, [], {})


def test_scaling_back_up_cancels() -> None:
    plan = plan_backends(5, 5, pods(5), [*[be(i) for i in range(3)], be(3, 4, True), be(4, 2, True)])
    assert plan.cancel == [("be-3.x", 9050), ("be-4.x", 9050)] and plan.replicas == 5


def test_refused_when_nothing_would_hold_the_data() -> None:
    plan = plan_backends(0, 2, pods(2), [be(0), be(1)])
    assert (
        plan.refused and "no BE would remain" in plan.refused and plan.replicas == 2 and not plan.decommission
    )
    full = [dataclasses.replace(be(0), avail_capacity=5), be(1, tablets=1000)]
    plan = plan_backends(1, 2, pods(2), full)
    assert plan.refused and "bytes free" in plan.refused and plan.replicas == 2


def test_scale_out_needs_nothing() -> None:
    plan = plan_backends(5, 3, pods(5), [be(i) for i in range(3)])
    assert (plan.replicas, plan.decommission, plan.cancel) == (5, [], [])


def fe(i: int, role: str, master: bool = False) -> Frontend:
    return Frontend(
        name=f"fe{i}", host=f"fe-{i}.x", edit_log_port=9010, role=role, is_master=master, alive=True
    )


FES = [fe(0, "FOLLOWER", True), fe(1, "FOLLOWER"), fe(2, "FOLLOWER"), fe(3, "OBSERVER"), fe(4, "OBSERVER")]


def test_fe_scale_in_drops_observers_first() -> None:
    plan = plan_frontends(3, 5, 3, pods(5, "fe"), FES)
    assert plan.drop_observers == [("fe-3.x", 9010), ("fe-4.x", 9010)] and plan.replicas == 5
    after = plan_frontends(3, 5, 3, pods(5, "fe"), FES[:3])
    assert (after.drop_observers, after.replicas) == ([], 3)


def test_fe_scale_in_below_election_number_is_refused() -> None:
    plan = plan_frontends(2, 3, 3, pods(3, "fe"), FES[:3])
    assert (
        plan.refused and "electionNumber" in plan.refused and plan.replicas == 3 and not plan.drop_observers
    )


def test_fe_never_drops_a_follower_or_the_master() -> None:
    odd = [fe(0, "FOLLOWER"), fe(1, "FOLLOWER", True)]
    plan = plan_frontends(1, 2, 1, pods(2, "fe"), odd)
    assert plan.refused and "master" in plan.refused and plan.replicas == 2
