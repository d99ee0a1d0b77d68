"""Which Doris nodes must leave or stay before a StatefulSet may shrink.  Pure decisions: given what the
master FE's SHOW FRONTENDS / SHOW BACKENDS say, what the operator recorded per ordinal, and what the spec
asks, the statements to send and the replicas the StatefulSet may have now.

A positively confirmed state machine, per leaving ordinal:

    registered --DECOMMISSION (recorded first)--> draining (tablets > 0) --> empty (0 tablets) --> gone

The pod may go only when its node is confirmed *empty* (decommissioned, 0 tablets: DROPP loses
nothing) or *gone* (the node this operator decommissioned, by BackendId, is no longer listed by the
master), or when the pod never ran (never scheduled, nothing recorded).  Anything else that is "not
found" is *unknown*: nothing shrinks, and the reason says what was not found."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from .client import Backend, Frontend
from .identity import Member, Members, PodRef, match_nodes, registration, remember

Node = tuple[str, int]


@dataclass
class BackendPlan:
    replicas: int
    """What the StatefulSet may have now: it shrinks only past ordinals confirmed empty or gone."""
    decommission: list[Node] = field(default_factory=list)
    cancel: list[Node] = field(default_factory=list)
    dropp: list[Node] = field(default_factory=list)
    """Decommissioned and empty but still listed: dropping them loses nothing."""
    draining: dict[str, int] = field(default_factory=dict)
    """pod -> tablets it still holds."""
    refused: str | None = None
    unknown: list[str] = field(default_factory=list)
    """Why some leaving ordinal's node is unknown (MembershipUnknown)."""
    members: Members = field(default_factory=dict)
    """The records to keep on the StatefulSet (written before any statement is sent)."""
    registration: str | None = None


def _by_ordinal(pods: Sequence[PodRef]) -> dict[int, PodRef]:
    return {p.ordinal: p for p in pods}


def _shrink_to(desired: int, leaving: Sequence[int], confirmed: Mapping[int, bool]) -> int:
    """The StatefulSet removes its highest ordinals first: it may shrink down to just above the
    highest leaving ordinal that is not confirmed yet."""
    pending = [o for o in leaving if not confirmed.get(o)]
    return max(pending) + 1 if pending else desired


def plan_backends(
    desired: int,
    current: int,
    pods: Sequence[PodRef],
    backends: Sequence[Backend],
    members: Members | None = None,
) -> BackendPlan:
    """``pods`` covers ordinals ``0 .. max(desired, current) - 1``; ``backends`` is the master's list."""
    desired = max(desired, 0)
    members = dict(members or {})
    matches = match_nodes(pods, backends, members)
    known = remember(members, pods, matches)
    known = {o: m for o, m in known.items() if o < max(desired, current)}
    plan = BackendPlan(
        replicas=desired if current <= desired else current, members=known, registration=registration(matches)
    )
    # scaled back up (or never down): a BE this operator decommissioned stays after all
    for ordinal in range(min(desired, current)):
        be, record = matches[ordinal].node, known.get(ordinal)
        if record is None or not record.leaving:
            continue
        if be is not None and be.system_decommissioned:
            plan.cancel.append((be.host, be.heartbeat_port))
        if be is not None:
            known[ordinal] = replace(record, leaving=False)
    if desired >= current:
        return plan
    by_ordinal = _by_ordinal(pods)
    leaving = list(range(desired, current))
    if not backends and not (desired == 0 and all(known.get(o, Member()).leaving for o in leaving)):
        plan.unknown.append(
            "SHOW BACKENDS on the master FE lists no backend at all, so none of the leaving BEs "
            f"({', '.join(by_ordinal[o].name for o in leaving)}) can be confirmed decommissioned"
        )
        return plan
    staying = [
        b
        for o in range(desired)
        if (b := matches[o].node) is not None and b.alive and not b.system_decommissioned
    ]
    held = sum(b.tablet_num for o in leaving if (b := matches[o].node) is not None)
    if held and not staying:
        plan.refused = f"no BE would remain to take the {held} tablets of the leaving ones"
        return plan
    used = sum(b.data_used_capacity or 0 for o in leaving if (b := matches[o].node) is not None)
    free = sum(b.avail_capacity or 0 for b in staying)
    if used and free and used > free:
        plan.refused = f"the leaving BEs hold {used} bytes, the remaining ones have {free} bytes free"
        return plan
    confirmed: dict[int, bool] = {}
    for ordinal in leaving:
        pod, match, record = by_ordinal[ordinal], matches[ordinal], known.get(ordinal)
        if match.problem:
            plan.unknown.append(match.problem)
            continue
        be = match.node
        if be is not None:
            node = (be.host, be.heartbeat_port)
            if not be.system_decommissioned:
                plan.decommission.append(node)
                plan.draining[pod.name] = be.tablet_num
            elif be.tablet_num > 0:
                plan.draining[pod.name] = be.tablet_num
            else:
                plan.dropp.append(node)
                confirmed[ordinal] = True
            known[ordinal] = replace(known.get(ordinal) or Member(), leaving=True)
            continue
        if record is not None and record.leaving and record.node_id:
            confirmed[ordinal] = True  # the BE this operator decommissioned was dropped by Doris
        elif pod.unschedulable and (record is None or record.node_id is None):
            confirmed[ordinal] = True  # never ran, so never registered
        else:
            detail = (
                f"; its recorded BackendId {record.node_id} ({record.host}) is not listed either, and "
                "this operator never decommissioned it"
                if record is not None and record.node_id
                else ""
            )
            plan.unknown.append(f"no backend registered as {pod.describe()} for pod {pod.name}{detail}")
    plan.replicas = _shrink_to(desired, leaving, confirmed)
    return plan


@dataclass
class FrontendPlan:
    replicas: int
    drop_observers: list[Node] = field(default_factory=list)
    """In the order to send them: the FE this session is connected to last."""
    refused: str | None = None
    unknown: list[str] = field(default_factory=list)
    members: Members = field(default_factory=dict)


def plan_frontends(
    desired: int,
    current: int,
    election_number: int,
    pods: Sequence[PodRef],
    frontends: Sequence[Frontend],
    members: Members | None = None,
) -> FrontendPlan:
    """FE scale-in drops the leaving observers through SQL before their pods go; it never takes the
    FEs below the followers (``electionNumber``), and never drops the master."""
    if desired >= current:
        return FrontendPlan(replicas=desired, members=dict(members or {}))
    if desired < election_number:
        return FrontendPlan(
            replicas=current,
            members=dict(members or {}),
            refused=f"{desired} FE replicas would leave fewer than the {election_number} followers "
            "(electionNumber); followers are not removed",
        )
    members = dict(members or {})
    matches = match_nodes(pods, frontends, members)
    known = {o: m for o, m in remember(members, pods, matches).items() if o < current}
    plan = FrontendPlan(replicas=current, members=known)
    by_ordinal = _by_ordinal(pods)
    leaving = list(range(desired, current))
    confirmed: dict[int, bool] = {}
    drops: list[tuple[bool, Node]] = []
    for ordinal in leaving:
        pod, match, record = by_ordinal[ordinal], matches[ordinal], known.get(ordinal)
        if match.problem:
            plan.unknown.append(match.problem)
            continue
        fe = match.node
        if fe is not None:
            if fe.is_master or fe.role != "OBSERVER":
                role = "master" if fe.is_master else fe.role
                plan.refused = f"the FE of {pod.name} is a {role}, not an observer: it is not removed"
                plan.drop_observers = []
                return plan
            drops.append((bool(fe.current_connected), (fe.host, fe.edit_log_port)))
            known[ordinal] = replace(known.get(ordinal) or Member(), leaving=True)
        elif (record is not None and record.leaving and record.node_id) or (
            pod.unschedulable and (record is None or record.node_id is None)
        ):
            confirmed[ordinal] = True
        else:
            plan.unknown.append(f"no frontend registered as {pod.describe()} for pod {pod.name}")
    plan.drop_observers = [node for _, node in sorted(drops, key=lambda d: d[0])]
    plan.replicas = _shrink_to(desired, leaving, confirmed)
    return plan
