"""Rolling-update gates, decided without I/O: one pod down at most, tablet health, balance, version
skips, and replacing an outdated pod that is down anyway (so a bad image can be rolled back)."""

from __future__ import annotations

import pytest

from doris_operator.doris.client import TabletHealth
from doris_operator.doris.rolling import ComponentState, PodState, plan_rollout
from doris_operator.doris.versions import doris_version, image_version, skipped_minor

HEALTHY = TabletHealth(tablets=90, healthy=90, cloning=0)


def pod(
    comp: str, i: int, outdated: bool = True, ready: bool = True, alive: bool | None = True, **kw: bool
) -> PodState:
    return PodState(
        name=f"dc-{comp}-{i}",
        ordinal=i,
        ready=ready,
        outdated=outdated,
        alive=alive,
        node=(f"{comp}-{i}", 9050) if comp in ("be", "cn") else None,
        **kw,
    )


def comp(name: str, *pods: PodState, persistent: bool = False, **kw: object) -> ComponentState:
    return ComponentState(name, list(pods), len(pods), persistent=persistent, **kw)  # type: ignore[arg-type]


def test_highest_be_first_out_of_queries_and_balance_untouched_on_emptydir() -> None:
    plan = plan_rollout([comp("be", *(pod("be", i) for i in range(3)))], health=HEALTHY)
    assert (plan.delete, plan.disable_query, plan.pause_balance) == ("dc-be-2", ("be-2", 9050), False)


def test_pv_backed_bes_pause_balance_then_restore_it_once_all_are_updated_and_alive() -> None:
    bes = [pod("be", i) for i in range(3)]
    plan = plan_rollout([comp("be", *bes, persistent=True)], health=HEALTHY)
    assert plan.pause_balance and plan.delete == "dc-be-2" and not plan.restore_balance
    midway = [pod("be", 0), pod("be", 1), pod("be", 2, outdated=False)]
    plan = plan_rollout([comp("be", *midway, persistent=True)], health=HEALTHY, balance_paused=True)
    assert not plan.pause_balance and not plan.restore_balance and plan.delete == "dc-be-1"
    done = [pod("be", i, outdated=False) for i in range(3)]
    plan = plan_rollout([comp("be", *done, persistent=True)], health=None, balance_paused=True)
    assert plan.restore_balance and plan.delete is None
    back_but_dead = [*done[:2], pod("be", 2, outdated=False, alive=False)]
    plan = plan_rollout([comp("be", *back_but_dead, persistent=True)], health=None, balance_paused=True)
    assert not plan.restore_balance


@pytest.mark.parametrize(
    ("health", "reason"),
    [
        (TabletHealth(90, 60, 0), "WaitingForTablets"),  # replicas missing on the restarted BE
        (TabletHealth(90, 90, 3), "WaitingForTablets"),  # still cloning
        (None, "TabletHealthUnknown"),
    ],
)
def test_the_next_be_waits_for_tablet_health(health: TabletHealth | None, reason: str) -> None:
    bes = [pod("be", 0), pod("be", 1), pod("be", 2, outdated=False)]
    plan = plan_rollout([comp("be", *bes)], health=health, health_error="no answer")
    assert plan.delete is None and plan.waiting["be"][0] == reason


def test_single_replica_tablets_on_emptydir_are_refused() -> None:
    bes = [pod("be", i) for i in range(3)]
    thin = TabletHealth(90, 90, 0, replicas=120)
    plan = plan_rollout([comp("be", *bes)], health=thin)
    assert plan.delete is None and plan.refused["be"][0] == "SingleReplicaTablets"
    assert plan_rollout([comp("be", *bes, persistent=True)], health=thin).delete == "dc-be-2"


def test_one_pod_down_anywhere_blocks_every_ready_pod() -> None:
    bes = [pod("be", 0), pod("be", 1), pod("be", 2, outdated=False, ready=False, alive=False)]
    fes = [pod("fe", i) for i in range(3)]
    plan = plan_rollout([comp("be", *bes), comp("fe", *fes)], health=HEALTHY)
    assert plan.delete is None and "waiting for dc-be-2" in plan.waiting["be"][1]
    missing = ComponentState("be", [pod("be", 0), pod("be", 1)], 3)
    assert plan_rollout([missing], health=HEALTHY).delete is None


def test_an_outdated_pod_that_is_down_is_replaced_ungated_so_a_rollback_converges() -> None:
    # the new image crashed on be-2; the spec was edited back: be-2 is outdated again, and down
    bes = [pod("be", 0, outdated=False), pod("be", 1, outdated=False), pod("be", 2, ready=False, alive=False)]
    unhealthy = TabletHealth(90, 60, 0)
    plan = plan_rollout([comp("be", *bes)], health=unhealthy)
    assert plan.delete == "dc-be-2" and plan.disable_query is None
    # on emptyDir, not while some tablet has no alive replica (the down BE may hold the last one)
    lost = TabletHealth(90, 60, 0, unrecoverable=4)
    plan = plan_rollout([comp("be", *bes)], health=lost)
    assert plan.delete is None and "4 tablets have no alive replica" in plan.waiting["be"][1]
    assert plan_rollout([comp("be", *bes)], health=None, health_error="x").delete is None
    assert plan_rollout([comp("be", *bes, persistent=True)], health=lost).delete == "dc-be-2"
    # but a not-ready pod whose BE still serves is not: the tablets come first
    serving = [*bes[:2], pod("be", 2, ready=False, alive=True)]
    assert plan_rollout([comp("be", *serving)], health=unhealthy).delete is None
    # nor one the operator just deleted
    deleting = [*bes[:2], pod("be", 2, ready=False, alive=False, deleting=True)]
    assert plan_rollout([comp("be", *deleting)], health=unhealthy).delete is None


def test_be_before_fe_and_the_fe_master_last() -> None:
    bes = [pod("be", i, outdated=False) for i in range(3)]
    fes = [pod("fe", 0, is_master=True), pod("fe", 1), pod("fe", 2)]
    plan = plan_rollout([comp("be", *bes), comp("fe", *fes)], health=HEALTHY)
    assert plan.delete == "dc-fe-2" and plan.disable_query is None
    last = [pod("fe", 0, is_master=True), pod("fe", 1, outdated=False), pod("fe", 2, outdated=False)]
    assert plan_rollout([comp("fe", *last)], health=None).delete == "dc-fe-0"
    dead = [pod("fe", 0, is_master=True), pod("fe", 1, alive=None), pod("fe", 2)]
    plan = plan_rollout([comp("fe", *dead)], health=None)
    assert plan.delete is None and "dc-fe-1 to be alive" in plan.waiting["fe"][1]


def test_an_image_that_skips_a_minor_version_is_refused_unless_allowed() -> None:
    bes = [pod("be", i) for i in range(3)]
    skip = comp("be", *bes, target=(3, 2, 0), running=[(3, 0, 4)])
    plan = plan_rollout([skip], health=HEALTHY)
    assert plan.delete is None and plan.refused["be"][0] == "VersionSkipRefused"
    assert "allow-version-skip" in plan.refused["be"][1] and "3.0.4" in plan.refused["be"][1]
    assert plan_rollout([skip], health=HEALTHY, allow_version_skip=True).delete == "dc-be-2"
    ok = comp("be", *bes, target=(3, 1, 0), running=[(3, 0, 4), (3, 1, 0)])
    assert plan_rollout([ok], health=HEALTHY).delete == "dc-be-2"


def test_versions() -> None:
    assert image_version("selectdb/doris.be-ubuntu:2.1.8") == (2, 1, 8)
    assert image_version("apache/doris:be-3.0.3") == (3, 0, 3)
    assert image_version("registry:5000/doris/be:3.1") == (3, 1, 0)
    assert image_version("registry:5000/doris/be") is None
    assert image_version("apache/doris:latest") is None
    assert image_version("apache/doris@sha256:abc") is None
    assert doris_version("doris-2.1.7-rc03-443e87e203") == (2, 1, 7)
    assert doris_version("") is None
    assert skipped_minor([(3, 0, 1)], (3, 1, 9)) is None
    assert skipped_minor([(2, 1, 8)], (3, 0, 3)) is None
    assert skipped_minor([(3, 1, 0)], (2, 1, 8)) is None  # a rollback is no skip
    assert skipped_minor([(3, 0, 1)], (3, 2, 0)) is not None
    assert skipped_minor([(2, 0, 1)], (3, 1, 0)) is not None
    assert skipped_minor([], (9, 9, 9)) is None
