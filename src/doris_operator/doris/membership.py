"""Which Doris nodes must leave or stay before a StatefulSet may shrink.  Pure decisions: given what
SHOW FRONTENDS / SHOW BACKENDS say and what the spec asks, the statements to send and the replicas the
StatefulSet may have now.  Data leaves a BE through DECOMMISSION; its pod goes only at 0 tablets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .client import Backend, Frontend

_N = TypeVar("_N", Backend, Frontend)

Node = tuple[str, int]
Pods = Mapping[int, tuple[str, Sequence[str]]]
"""ordinal -> (pod name, the names its node may be registered under: FQDN, pod IP)."""


@dataclass
class BackendPlan:
    replicas: int
    """What the StatefulSet may have now: the current count until the leaving BEs are gone."""
    decommission: list[Node] = field(default_factory=list)
    cancel: list[Node] = field(default_factory=list)
    dropp: list[Node] = field(default_factory=list)
    """Decommissioned and empty but still listed: dropping them loses nothing."""
    draining: dict[str, int] = field(default_factory=dict)
    """pod -> tablets it still holds."""
    refused: str | None = None


def _match(pods: Pods, ordinal: int, nodes: Mapping[str, _N]) -> _N | None:
    _, hosts = pods.get(ordinal, ("", ()))
    return next((nodes[h] for h in hosts if h in nodes), None)


def plan_backends(
    desired: int,
    current: int,
    pods: Pods,
    backends: Sequence[Backend],
) -> BackendPlan:
    by_host = {b.host: b for b in backends}
    plan = BackendPlan(replicas=max(desired, 0) if current <= desired else current)
    # scaled back up (or never down): a BE we decommissioned earlier stays after all
    for ordinal in range(min(desired, current)):
        be = _match(pods, ordinal, by_host)
        if be is not None and be.system_decommissioned:
            plan.cancel.append((be.host, be.heartbeat_port))
    if desired >= current:
        return plan
    leaving = [(o, _match(pods, o, by_host)) for o in range(desired, current)]
    staying = [
        b
        for o in range(desired)
        if (b := _match(pods, o, by_host)) is not None and b.alive and not b.system_decommissioned
    ]
    held = sum(be.tablet_num for _, be in leaving if be is not None)
    if held and not staying:
        plan.refused = f"no BE would remain to take the {held} tablets of the leaving ones"
        return plan
    used = sum(be.data_used_capacity or 0 for _, be in leaving if be is not None)
    free = sum(b.avail_capacity or 0 for b in staying)
    if used and free and used > free:
        plan.refused = f"the leaving BEs hold {used} bytes, the remaining ones have {free} bytes free"
        return plan
    for ordinal, be in leaving:
        if be is None:
            continue  # never registered, or already dropped by Doris after its decommission
        node = (be.host, be.heartbeat_port)
        if not be.system_decommissioned:
            plan.decommission.append(node)
            plan.draining[pods[ordinal][0]] = be.tablet_num
        elif be.tablet_num > 0:
            plan.draining[pods[ordinal][0]] = be.tablet_num
        else:
            plan.dropp.append(node)
    if not plan.decommission and not plan.draining:
        plan.replicas = desired  # every leaving BE is empty: the pods may go
    return plan


@dataclass
class FrontendPlan:
    replicas: int
    drop_observers: list[Node] = field(default_factory=list)
    refused: str | None = None


def plan_frontends(
    desired: int,
    current: int,
    election_number: int,
    pods: Pods,
    frontends: Sequence[Frontend],
) -> FrontendPlan:
    """FE scale-in drops the leaving observers through SQL before their pods go; it never takes the
    FEs below the followers (``electionNumber``), and never drops the master."""
    if desired >= current:
        return FrontendPlan(replicas=desired)
    if desired < election_number:
        return FrontendPlan(
            replicas=current,
            refused=f"{desired} FE replicas would leave fewer than the {election_number} followers "
            "(electionNumber); followers are not removed",
        )
    by_host = {f.host: f for f in frontends}
    plan = FrontendPlan(replicas=current)
    for ordinal in range(desired, current):
        fe = _match(pods, ordinal, by_host)
        if fe is None:
            continue
        if fe.is_master or fe.role != "OBSERVER":
            role = "master" if fe.is_master else fe.role
            plan.refused = f"the FE of {pods[ordinal][0]} is a {role}, not an observer: it is not removed"
            return plan
        plan.drop_observers.append((fe.host, fe.edit_log_port))
    if not plan.drop_observers:
        plan.replicas = desired
    return plan
