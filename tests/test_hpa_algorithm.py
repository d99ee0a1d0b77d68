"""The HPA algorithm the DorisClusterAutoscaler decides with (reconcile/hpa_algorithm.py)."""

from __future__ import annotations

from doris_operator.api.dorisclusterautoscaler import Behavior, ScalingPolicy, ScalingRules
from doris_operator.reconcile.hpa_algorithm import (
    PodSample,
    TimedReplicas,
    decide,
    rate_limit,
    stabilize,
    utilization_proposal,
    value_proposal,
)


def pods(*usages: float | None, request: float = 1000) -> list[PodSample]:
    return [PodSample(u, request) for u in usages]


def test_utilization_within_tolerance_keeps_the_replicas() -> None:
    assert utilization_proposal(3, pods(320, 300, 290), 30).replicas == 3  # 30.3% of 30%


def test_utilization_scales_by_the_ratio() -> None:
    p = utilization_proposal(3, pods(900, 900, 900), 30)
    assert p is not None and p.replicas == 9 and p.current_value == "90%"
    p = utilization_proposal(4, pods(50, 50, 50, 50), 50)
    assert p is not None and p.replicas == 1


def test_no_sample_at_all_is_unavailable() -> None:
    assert utilization_proposal(3, pods(None, None), 50) is None


def test_pods_without_samples_count_as_full_on_a_scale_down() -> None:
    # two pods idle, one without a sample: assumed at 100% of its request, so the drop is smaller
    p = utilization_proposal(3, pods(100, 100, None), 50)
    assert p is not None and p.replicas == 3  # (100+100+1000)/3000 = 40% of 50%: ceil(0.8 * 3) = 3
    p = utilization_proposal(3, pods(0, 0, None), 80)
    assert p is not None and p.replicas == 2  # 33% of 80% -> ceil(0.4166 * 3) = 2


def test_pods_without_samples_count_as_idle_on_a_scale_up() -> None:
    p = utilization_proposal(3, pods(1000, 1000, None), 50)
    assert p is not None and p.replicas == 4  # (2000 + 0)/3000 = 66% of 50%: ceil(1.33 * 3) = 4


def test_value_and_average_value() -> None:
    assert value_proposal(2, 300, 100, average=False).replicas == 6
    assert value_proposal(2, 105, 100, average=False).replicas == 2  # within tolerance
    assert value_proposal(2, 300, 100, average=True).replicas == 3
    assert value_proposal(3, 300, 100, average=True).replicas == 3


def test_scale_down_waits_for_the_stabilization_window() -> None:
    history = [TimedReplicas(1000, 5)]
    replicas, kept = stabilize(1100, 5, 2, history, None)
    assert replicas == 5 and [r.replicas for r in kept] == [5, 2]
    replicas, kept = stabilize(1400, 5, 2, [TimedReplicas(1000, 5), TimedReplicas(1100, 2)], None)
    assert replicas == 2 and [r.replicas for r in kept] == [2]  # 1100 is 300 s ago: out of the window


def test_scale_up_is_immediate_by_default_and_windowed_when_asked() -> None:
    assert stabilize(1000, 2, 6, [TimedReplicas(990, 2)], None)[0] == 6
    slow = Behavior(scale_up=ScalingRules(stabilization_window_seconds=60))
    assert stabilize(1000, 2, 6, [TimedReplicas(990, 2)], slow)[0] == 2
    assert stabilize(1000, 2, 6, [TimedReplicas(990, 4)], slow)[0] == 4


def test_default_rate_limits() -> None:
    assert rate_limit(0, 2, 20, [], None) == (6, True)  # max(2 + 100%, 2 + 4 pods)
    assert rate_limit(0, 10, 30, [], None) == (20, True)
    assert rate_limit(100, 4, 1, [], None) == (1, False)  # 100% down is allowed at once


def test_rate_limit_counts_the_changes_inside_the_period() -> None:
    one_pod = Behavior(
        scale_down=ScalingRules(policies=[ScalingPolicy(type="Pods", value=1, period_seconds=60)])
    )
    assert rate_limit(100, 5, 3, [], one_pod) == (4, True)
    assert rate_limit(100, 4, 3, [TimedReplicas(70, -1)], one_pod) == (4, True)  # used up already
    assert rate_limit(100, 4, 3, [TimedReplicas(30, -1)], one_pod) == (3, False)  # outside the period
    disabled = Behavior(scale_down=ScalingRules(select_policy="Disabled"))
    assert rate_limit(0, 5, 3, [], disabled) == (5, True)


def test_decide_clamps_to_the_range_and_the_data_floor() -> None:
    common = {"now": 0.0, "behavior": None, "history": [], "events": [], "scale_down_enabled": True}
    d = decide(current=3, proposals=[12], min_replicas=1, max_replicas=5, data_floor=0, **common)
    assert (d.replicas, d.reason, d.limited) == (5, "ScaleUp", "TooManyReplicas")
    d = decide(current=3, proposals=[1], min_replicas=2, max_replicas=5, data_floor=0, **common)
    assert (d.replicas, d.reason, d.limited) == (2, "ScaleDown", "TooFewReplicas")
    d = decide(current=4, proposals=[1], min_replicas=1, max_replicas=5, data_floor=3, **common)
    assert (d.replicas, d.limited) == (3, "DataFloor")
    d = decide(current=4, proposals=[1, 4], min_replicas=1, max_replicas=5, data_floor=0, **common)
    assert (d.replicas, d.reason) == (4, "NoChange")  # the largest proposal wins


def test_decide_never_scales_down_when_disabled() -> None:
    d = decide(
        now=0,
        current=4,
        proposals=[1],
        min_replicas=1,
        max_replicas=5,
        data_floor=0,
        scale_down_enabled=False,
        behavior=None,
        history=[],
        events=[],
    )
    assert (d.replicas, d.limited) == (4, "ScaleDownDisabled")


def test_decide_holds_a_scale_down_inside_the_window() -> None:
    d = decide(
        now=100,
        current=5,
        proposals=[2],
        min_replicas=1,
        max_replicas=10,
        data_floor=0,
        scale_down_enabled=True,
        behavior=None,
        history=[TimedReplicas(50, 5)],
        events=[],
    )
    assert (d.replicas, d.reason, d.limited) == (5, "NoChange", "ScaleDownStabilized")


def test_an_unchanged_recommendation_keeps_the_history_as_it_is() -> None:
    # at rest: the same proposal every evaluation leaves the history (and so the status) unchanged
    history = [TimedReplicas(1000, 3)]
    replicas, kept = stabilize(5000, 3, 3, history, None)
    assert replicas == 3 and kept == history
    # a run counts while it reaches into the window: 5 until 1200, then 2; at 1450 the 5 is 250 s old
    runs = [TimedReplicas(1000, 5), TimedReplicas(1200, 2)]
    assert stabilize(1450, 5, 2, runs, None) == (5, runs)
    assert stabilize(1550, 5, 2, runs, None) == (2, [TimedReplicas(1200, 2)])
