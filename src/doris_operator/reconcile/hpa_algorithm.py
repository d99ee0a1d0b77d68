"""The HorizontalPodAutoscaler's replica calculation, as pure functions (no I/O, no clock).

Follows the documented algorithm of ``autoscaling/v2`` (kube-controller-manager's podautoscaler):

* per metric, ``desired = ceil(current * currentValue / targetValue)``, kept at ``current`` while the
  ratio is within the tolerance (10%); for utilization, pods without a sample count as 100% of their
  request on a scale-down and 0% on a scale-up, and a decision those pods would reverse is dropped;
* several metrics: the largest proposal;
* stabilization: a scale-down takes the highest recommendation of its window (default 300 s), a scale-up
  the lowest of its window (default 0 s);
* rate policies: the change allowed per period (default up: 100% or 4 pods per 15 s, the larger; down:
  100% per 15 s), counted from the scale events inside the period;
* then ``minReplicas``/``maxReplicas`` (and, for BEs, the fewest that hold the data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..api.dorisclusterautoscaler import Behavior, ScalingPolicy, ScalingRules

TOLERANCE = 0.1
DEFAULT_UP = ScalingRules(
    stabilization_window_seconds=0,
    select_policy="Max",
    policies=[
        ScalingPolicy(type="Percent", value=100, period_seconds=15),
        ScalingPolicy(type="Pods", value=4, period_seconds=15),
    ],
)
DEFAULT_DOWN = ScalingRules(
    stabilization_window_seconds=300,
    select_policy="Max",
    policies=[ScalingPolicy(type="Percent", value=100, period_seconds=15)],
)


@dataclass(frozen=True)
class PodSample:
    """One pod's usage and request of the metric's resource (any unit, the same for both)."""

    usage: float | None
    """None: no sample for this pod (not scraped yet, or not ready)."""
    request: float


@dataclass(frozen=True)
class Proposal:
    replicas: int
    current_value: str
    """What was measured, for status (``62%``, ``1.5``)."""


def utilization_proposal(current: int, pods: Sequence[PodSample], target_percent: int) -> Proposal | None:
    """``Utilization`` of a resource: the pods' summed usage over their summed requests. None when no
    pod has a sample (the metric is unavailable)."""
    sampled = [p for p in pods if p.usage is not None and p.request > 0]
    if not sampled:
        return None
    missing = [p for p in pods if p.usage is None and p.request > 0]
    usage = sum(p.usage or 0.0 for p in sampled)
    request = sum(p.request for p in sampled)
    utilization = 100.0 * usage / request
    ratio = utilization / target_percent
    shown = f"{round(utilization)}%"
    if abs(ratio - 1.0) <= TOLERANCE:
        return Proposal(current, shown)
    if missing:
        # the pods without a sample: 100% of their request when scaling down, 0% when scaling up
        assumed = usage + (sum(p.request for p in missing) if ratio < 1 else 0.0)
        total_request = request + sum(p.request for p in missing)
        new_ratio = (100.0 * assumed / total_request) / target_percent
        if abs(new_ratio - 1.0) <= TOLERANCE or (new_ratio - 1.0) * (ratio - 1.0) < 0:
            return Proposal(current, shown)
        return Proposal(math.ceil(new_ratio * len(pods)), shown)
    return Proposal(math.ceil(ratio * len(sampled)), shown)


def value_proposal(current: int, value: float, target: float, average: bool) -> Proposal:
    """``Value`` (the metric against the target) or ``AverageValue`` (the metric per replica)."""
    shown = f"{value:g}"
    if target <= 0:
        return Proposal(current, shown)
    if average:
        ratio = value / (target * max(current, 1))
        if abs(ratio - 1.0) <= TOLERANCE:
            return Proposal(current, shown)
        return Proposal(math.ceil(value / target), shown)
    ratio = value / target
    if abs(ratio - 1.0) <= TOLERANCE:
        return Proposal(current, shown)
    return Proposal(math.ceil(ratio * current), shown)


@dataclass(frozen=True)
class TimedReplicas:
    at: float
    """Seconds (any epoch, the same for all)."""
    replicas: int


@dataclass
class Decision:
    replicas: int
    reason: str
    """ScaleUp, ScaleDown, NoChange, or why the change was limited."""
    message: str
    limited: str | None = None
    """The ScalingLimited reason: TooFewReplicas, TooManyReplicas, DataFloor, ScaleUpLimit,
    ScaleDownLimit, ScaleDownDisabled, ScaleDownStabilized, ScaleUpStabilized."""
    recommendations: list[TimedReplicas] = field(default_factory=list)
    """The recommendation history to keep (inside the longest window)."""


def _rules(behavior: Behavior | None, up: bool) -> ScalingRules:
    default = DEFAULT_UP if up else DEFAULT_DOWN
    given = (behavior.scale_up if up else behavior.scale_down) if behavior else None
    if given is None:
        return default
    return ScalingRules(
        stabilization_window_seconds=(
            given.stabilization_window_seconds
            if given.stabilization_window_seconds is not None
            else default.stabilization_window_seconds
        ),
        select_policy=given.select_policy or default.select_policy,
        policies=given.policies if given.policies is not None else default.policies,
    )


def stabilize(
    now: float, current: int, proposal: int, history: Sequence[TimedReplicas], behavior: Behavior | None
) -> tuple[int, list[TimedReplicas]]:
    """The stabilized recommendation and the history to keep (the proposal included).

    The history is run-length: a record says the recommendation was ``replicas`` from ``at`` until the
    next record (the last one: until now).  A record counts in a window when its run reaches into it,
    and a proposal equal to the last record adds nothing, so an autoscaler at rest keeps the same
    history and writes no status.  (The HPA keeps a sample per evaluation, in memory; a run ends no
    earlier than its last sample, so this holds a value at most one evaluation period longer.)"""
    up_window = _rules(behavior, True).stabilization_window_seconds or 0
    down_window = _rules(behavior, False).stabilization_window_seconds or 0
    ends = [nxt.at for nxt in history[1:]] + ([now] if history else [])
    up, down = proposal, proposal
    for rec, end in zip(history, ends, strict=True):
        if end > now - up_window:
            up = min(up, rec.replicas)
        if end > now - down_window:
            down = max(down, rec.replicas)
    result = current
    if result < up:
        result = up
    if result > down:
        result = down
    keep_after = now - max(up_window, down_window)
    kept = [r for r, end in zip(history, ends, strict=True) if end > keep_after]
    if kept and kept[-1].replicas == proposal:
        return result, kept
    return result, [*kept, TimedReplicas(now, proposal)]


def rate_limit(
    now: float, current: int, desired: int, events: Sequence[TimedReplicas], behavior: Behavior | None
) -> tuple[int, bool]:
    """``desired`` bounded by the rate policies (``events`` are scale changes: replicas = delta).
    Returns the bounded value and whether a policy bounded it."""
    if desired == current:
        return current, False
    up = desired > current
    rules = _rules(behavior, up)
    if rules.select_policy == "Disabled":
        return current, True
    limits: list[int] = []
    for policy in rules.policies or []:
        in_period = sum(e.replicas for e in events if e.at > now - policy.period_seconds)
        if up:
            start = current - max(in_period, 0)
            limit = (
                start + policy.value if policy.type == "Pods" else math.ceil(start * (1 + policy.value / 100))
            )
        else:
            start = current - min(in_period, 0)
            limit = (
                start - policy.value
                if policy.type == "Pods"
                else math.floor(start * (1 - policy.value / 100))
            )
        limits.append(limit)
    if not limits:
        return desired, False
    if up:
        bound = max(limits) if rules.select_policy != "Min" else min(limits)
        return (bound, True) if desired > bound else (desired, False)
    bound = min(limits) if rules.select_policy != "Min" else max(limits)
    return (bound, True) if desired < bound else (desired, False)


def decide(
    *,
    now: float,
    current: int,
    proposals: Sequence[int],
    min_replicas: int,
    max_replicas: int,
    data_floor: int,
    scale_down_enabled: bool,
    behavior: Behavior | None,
    history: Sequence[TimedReplicas],
    events: Sequence[TimedReplicas],
) -> Decision:
    """The replicas to set now, from the metrics' proposals."""
    proposal = max(proposals) if proposals else current
    if not scale_down_enabled:
        proposal = max(proposal, current)
    stabilized, kept = stabilize(now, current, proposal, history, behavior)
    limited: str | None = None
    if stabilized > proposal:
        limited = "ScaleDownStabilized"
    elif stabilized < proposal:
        limited = "ScaleUpStabilized"
    desired, bounded = rate_limit(now, current, stabilized, events, behavior)
    if bounded:
        limited = "ScaleUpLimit" if stabilized > current else "ScaleDownLimit"
    floor = max(min_replicas, data_floor)
    if desired > max_replicas:
        desired, limited = max_replicas, "TooManyReplicas"
    if desired < floor:
        limited = "DataFloor" if data_floor > min_replicas and desired < data_floor else "TooFewReplicas"
        desired = floor
    if not scale_down_enabled and proposals and max(proposals) < current:
        limited = "ScaleDownDisabled"
    if desired > current:
        reason, message = "ScaleUp", f"{current} -> {desired}: the metrics propose {proposal}"
    elif desired < current:
        reason, message = "ScaleDown", f"{current} -> {desired}: the metrics propose {proposal}"
    else:
        reason, message = "NoChange", f"stays at {current}: the metrics propose {proposal}"
    if limited:
        message += f" ({limited})"
    return Decision(desired, reason, message, limited, kept)
