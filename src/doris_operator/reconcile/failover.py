"""Failover: a pod stuck on a lost node is force-deleted so its StatefulSet recreates it elsewhere.

A node is lost when its Ready condition has not been True, or it has been gone from the API, for
``spec.failover.period`` (default 5m).  Its pod is force-deleted only when Doris itself reports the member
dead (a partitioned node whose member still heartbeats is left alone; no answer from Doris means unknown,
and nothing happens).  At most one failover per component is in flight (until the new pod's member is
alive in Doris), and at most ``maxFailovers`` per ``window`` in the whole cluster: both survive a restart,
because every failover is recorded in ``status.failover.records``.  A BE or CN whose claim is bound to a
volume pinned to the lost node gets a new claim only with ``recreateLocalClaims: true``, and for a BE only
while tablet health shows no tablet without a healthy replica elsewhere.

:func:`lost_members` and :func:`plan` are pure; :func:`reconcile_failover` observes and acts."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.doriscluster import COMPONENTS, Component, DorisCluster
from ..builders import names
from ..doris.client import DorisError, Timeouts
from ..k8s import Kube
from . import podops
from .members import FeAccess, MemberView, fe_candidates, member_alive
from .observed import Obj

log = logging.getLogger(__name__)
Record = Callable[[str, str, str], Awaitable[None]]

DEFAULT_PERIOD = 300.0
DEFAULT_MAX_FAILOVERS = 3
DEFAULT_WINDOW = 3600.0
KEEP_RECORDS = 20
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def parse_duration(text: str) -> float:
    """``5m`` -> 300.0; ``1h30m`` -> 5400.0."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration like 5m, 90s or 1h30m")
    return sum(float(n) * _UNIT[u] for n, u in parts)


_ONE_SECOND = dt.timedelta(seconds=1)


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        try:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None


def _fmt(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime(TIME_FORMAT)


def _whole_second_up(when: dt.datetime) -> dt.datetime:
    """``when`` rounded up to a whole second: what the status keeps (whole seconds, :func:`_fmt`) and
    reads back unchanged, never earlier than ``when``."""
    return when if when.microsecond == 0 else when.replace(microsecond=0) + _ONE_SECOND


@dataclass(frozen=True)
class Settings:
    enabled: bool = True
    period: float = DEFAULT_PERIOD
    max_failovers: int = DEFAULT_MAX_FAILOVERS
    window: float = DEFAULT_WINDOW
    recreate_local_claims: bool = False


def settings(dc: DorisCluster) -> Settings:
    spec = dc.spec.failover
    if spec is None:
        return Settings()
    return Settings(
        enabled=spec.enabled is not False,
        period=parse_duration(spec.period) if spec.period else DEFAULT_PERIOD,
        max_failovers=spec.max_failovers if spec.max_failovers is not None else DEFAULT_MAX_FAILOVERS,
        window=parse_duration(spec.window) if spec.window else DEFAULT_WINDOW,
        recreate_local_claims=bool(spec.recreate_local_claims),
    )


@dataclass(frozen=True)
class NodeView:
    ready: bool
    since: dt.datetime | None = None
    """When Ready last changed (its lastTransitionTime)."""


def node_view(node: Mapping[str, Any]) -> NodeView:
    """From a Node object (or its trimmed copy)."""
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return NodeView(False, None)
    return NodeView(ready.get("status") == "True", _time(ready.get("lastTransitionTime")))


def trim_node(body: Mapping[str, Any]) -> Obj:
    """What the node index keeps: the Ready condition."""
    conditions = (body.get("status") or {}).get("conditions") or []
    return {
        "metadata": {"name": body["metadata"]["name"]},
        "status": {"conditions": [dict(c) for c in conditions if c.get("type") == "Ready"]},
    }


@dataclass(frozen=True)
class FailoverRecord:
    pod: str
    uid: str
    component: str
    node: str
    time: dt.datetime
    reason: str
    recreated_claims: tuple[str, ...] = ()
    completed: bool = False

    def to_status(self) -> Obj:
        out: Obj = {
            "pod": self.pod,
            "uid": self.uid,
            "component": self.component,
            "node": self.node,
            "time": _fmt(self.time),
            "reason": self.reason,
            "completed": self.completed,
        }
        if self.recreated_claims:
            out["recreatedClaims"] = list(self.recreated_claims)
        return out

    @classmethod
    def from_status(cls, obj: Mapping[str, Any]) -> FailoverRecord | None:
        when = _time(obj.get("time"))
        if when is None or not obj.get("pod"):
            return None
        return cls(
            pod=str(obj["pod"]),
            uid=str(obj.get("uid") or ""),
            component=str(obj.get("component") or ""),
            node=str(obj.get("node") or ""),
            time=when,
            reason=str(obj.get("reason") or ""),
            recreated_claims=tuple(obj.get("recreatedClaims") or ()),
            completed=bool(obj.get("completed")),
        )


@dataclass(frozen=True)
class Claim:
    name: str
    uid: str
    nodes: frozenset[str]
    """The nodes its volume is pinned to (empty: reachable anywhere)."""


@dataclass
class Snapshot:
    now: dt.datetime
    settings: Settings
    pods: list[Obj]
    nodes: Mapping[str, NodeView]
    """The nodes the cache holds; a node a pod is bound to that is missing here is gone."""
    lost_nodes: Mapping[str, dt.datetime]
    """Gone nodes and since when (from the status)."""
    alive: Mapping[str, bool | None]
    """Pod name -> Doris's view of its member (None: unknown)."""
    records: list[FailoverRecord]
    claims: Mapping[str, list[Claim]] = field(default_factory=dict)
    """Pod name -> its claims, loaded for the lost members only."""
    tablets_safe: bool | None = None
    """Tablet health: True when no tablet would be left without a healthy replica (None: unknown)."""
    fe_quorum: bool | None = None
    """Whether Doris's view shows a majority of FE followers alive.  Without it the view comes from an
    FE that can't reach a master, so BE/CN liveness may be stale: they are not failed over."""


@dataclass(frozen=True)
class LostMember:
    pod: str
    uid: str
    component: Component
    node: str
    lost_for: float
    reason: str


@dataclass(frozen=True)
class ForceDelete:
    member: LostMember
    claims: tuple[Claim, ...] = ()


@dataclass
class Plan:
    delete: list[ForceDelete] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    completed: list[FailoverRecord] = field(default_factory=list)
    records: list[FailoverRecord] = field(default_factory=list)
    lost_nodes: dict[str, dt.datetime] = field(default_factory=dict)
    requeue_after: float | None = None

    def status(self) -> Obj | None:
        out: Obj = {}
        if self.records:
            out["records"] = [r.to_status() for r in self.records]
        if self.lost_nodes:
            out["lostNodes"] = {n: _fmt(t) for n, t in sorted(self.lost_nodes.items())}
        if self.waiting:
            out["waiting"] = list(self.waiting)
        return out or None


def _component(pod: Obj) -> Component | None:
    comp = pod["metadata"]["labels"].get(names.LABEL_COMPONENT)
    return next((c for c in COMPONENTS if c == comp), None)


def _requeue(plan: Plan, seconds: float) -> None:
    seconds = max(seconds, 1.0)
    plan.requeue_after = seconds if plan.requeue_after is None else min(plan.requeue_after, seconds)


def lost_nodes(snap: Snapshot) -> dict[str, dt.datetime]:
    """Since when each node of a pod has been lost (NotReady or gone)."""
    out: dict[str, dt.datetime] = {}
    for pod in snap.pods:
        node = pod.get("nodeName")
        if not node or node in out:
            continue
        view = snap.nodes.get(node)
        if view is None:
            # first seen gone now; kept in the status in whole seconds: rounded up, so the period is
            # never counted from before the node was seen gone (CI: a failover 0.07 s early)
            out[node] = snap.lost_nodes.get(node, _whole_second_up(snap.now))
        elif not view.ready:
            # API times are whole seconds, truncated: counting from the next second never fails a
            # pod over before the period has passed
            out[node] = view.since + _ONE_SECOND if view.since else snap.now
    return out


def lost_members(snap: Snapshot, plan: Plan | None = None) -> list[LostMember]:
    """Pods on nodes lost for at least the period whose member Doris reports dead."""
    plan = plan or Plan()
    lost = lost_nodes(snap)
    out: list[LostMember] = []
    for pod in sorted(snap.pods, key=lambda p: p["metadata"]["name"]):
        node, comp = pod.get("nodeName"), _component(pod)
        if not node or node not in lost or comp is None:
            continue
        name = pod["metadata"]["name"]
        gone = node not in snap.nodes
        lost_for = (snap.now - lost[node]).total_seconds()
        state = "gone" if gone else "NotReady"
        if lost_for < snap.settings.period:
            plan.waiting.append(
                f"{name}: node {node} {state} since {_fmt(lost[node])} "
                f"(failover after {snap.settings.period:.0f}s)"
            )
            _requeue(plan, snap.settings.period - lost_for)
            continue
        alive = snap.alive.get(name)
        if alive is None:
            plan.waiting.append(f"{name}: node {node} {state}, but Doris's view of its member is unknown")
            _requeue(plan, 30)
            continue
        if alive:
            plan.waiting.append(f"{name}: node {node} {state}, but Doris reports its member alive")
            continue
        out.append(
            LostMember(
                name,
                pod["metadata"].get("uid") or "",
                comp,
                node,
                lost_for,
                f"node {node} {state} for {lost_for:.0f}s and Doris reports the {comp.upper()} dead",
            )
        )
    return out


def plan(snap: Snapshot) -> Plan:
    out = Plan()
    out.lost_nodes = {n: t for n, t in lost_nodes(snap).items() if n not in snap.nodes}
    by_name = {p["metadata"]["name"]: p for p in snap.pods}
    records: list[FailoverRecord] = []
    for rec in snap.records:
        pod = by_name.get(rec.pod)
        back = pod is not None and pod["metadata"].get("uid") != rec.uid and snap.alive.get(rec.pod) is True
        if not rec.completed and back:
            rec = FailoverRecord(**{**rec.__dict__, "completed": True})
            out.completed.append(rec)
        if rec.completed and (snap.now - rec.time).total_seconds() > snap.settings.window:
            continue  # out of the window and done: it no longer counts
        records.append(rec)
    out.records = records[-KEEP_RECORDS:]
    if not snap.settings.enabled:
        return out
    members = lost_members(snap, out)
    in_window = [r for r in out.records if (snap.now - r.time).total_seconds() <= snap.settings.window]
    busy = {r.component for r in out.records if not r.completed}
    budget = snap.settings.max_failovers - len(in_window)
    for member in members:
        if member.component != "fe" and snap.fe_quorum is False:
            out.waiting.append(
                f"{member.pod}: the FE followers have no quorum; Doris's view of it may be stale"
            )
            _requeue(out, 30)
            continue
        if member.component in busy:
            out.waiting.append(
                f"{member.pod}: waiting for the {member.component.upper()} failover in progress"
            )
            _requeue(out, 10)
            continue
        if budget <= 0:
            oldest = min((r.time for r in in_window), default=snap.now)
            left = snap.settings.window - (snap.now - oldest).total_seconds()
            out.waiting.append(
                f"{member.pod}: node {member.node} lost, Doris reports the {member.component.upper()} dead; "
                f"failover cap reached ({snap.settings.max_failovers} per {snap.settings.window:.0f}s, next "
                f"after {_fmt(oldest + dt.timedelta(seconds=snap.settings.window))})"
            )
            _requeue(out, max(left, 1))
            continue
        claims = snap.claims.get(member.pod, [])
        local = tuple(c for c in claims if member.node in c.nodes)
        if local:
            if member.component == "fe" or not snap.settings.recreate_local_claims:
                out.waiting.append(
                    f"{member.pod}: its volumes ({', '.join(c.name for c in local)}) are local to the lost "
                    f"node {member.node}; "
                    + (
                        "an FE's metadata is never recreated"
                        if member.component == "fe"
                        else "set spec.failover.recreateLocalClaims: true to give it new, empty ones"
                    )
                )
                continue
            if member.component == "be" and snap.tablets_safe is not True:
                out.waiting.append(
                    f"{member.pod}: not recreating its local volumes: tablet health "
                    + (
                        "is unknown"
                        if snap.tablets_safe is None
                        else "shows tablets with no healthy replica elsewhere"
                    )
                )
                _requeue(out, 30)
                continue
        out.delete.append(ForceDelete(member, local))
        busy.add(member.component)
        budget -= 1
    return out


# ---- observe and act ---------------------------------------------------------------------------------


def fe_quorum(view: MemberView) -> bool | None:
    if view.frontends is None:
        return None
    followers = [f for f in view.frontends if f.role.upper() == "FOLLOWER"]
    if not followers:
        return None
    return sum(1 for f in followers if f.alive) >= len(followers) // 2 + 1


def _records(old_status: Obj) -> list[FailoverRecord]:
    raw = (old_status.get("failover") or {}).get("records") or []
    return [r for r in (FailoverRecord.from_status(o) for o in raw if isinstance(o, dict)) if r is not None]


def _lost_since(old_status: Obj) -> dict[str, dt.datetime]:
    raw = (old_status.get("failover") or {}).get("lostNodes") or {}
    return {k: t for k, v in raw.items() if (t := _time(v)) is not None}


def tablets_safe_from(columns: list[str], rows: list[tuple[Any, ...]]) -> bool | None:
    """SHOW PROC '/cluster_health/tablet_health': safe when every row's UnrecoverableNum (tablets with
    no healthy replica) is 0; None when the column is missing (this Doris does not say)."""
    if "UnrecoverableNum" not in columns:
        return None
    index = columns.index("UnrecoverableNum")
    try:
        return all(int(str(row[index]).strip() or 0) == 0 for row in rows)
    except ValueError:
        return None


async def _tablets_safe(dc: DorisCluster, fe_access: FeAccess, creds: Any) -> bool | None:
    for host, port in fe_candidates(dc, fe_access):
        try:
            client = await asyncio.to_thread(fe_access.connect, host, port, creds, Timeouts(3, 15, 15))
        except (DorisError, OSError):
            continue
        try:
            columns, rows = await asyncio.to_thread(client.query, "SHOW PROC '/cluster_health/tablet_health'")
            return tablets_safe_from(columns, rows)
        except (DorisError, OSError):
            return None
        finally:
            await asyncio.to_thread(client.close)
    return None


def _nodes_of(pods: list[Obj]) -> set[str]:
    """The nodes the pods run on: the only ones failover looks at."""
    return {str(p["nodeName"]) for p in pods if p.get("nodeName")}


async def reconcile_failover(
    dc: DorisCluster,
    pods: list[Obj],
    nodes: Mapping[str, Obj] | None,
    view: MemberView,
    old_status: Obj,
    kube: Kube,
    fe_access: FeAccess,
    credentials: Callable[[], Awaitable[Any]],
    record: Record,
    now: dt.datetime | None = None,
) -> Plan | None:
    """None when the node cache is not available (nothing is known, nothing is done)."""
    if nodes is None:
        return None
    now = now or dt.datetime.now(dt.UTC)
    snap = Snapshot(
        now=now,
        settings=settings(dc),
        pods=pods,
        nodes={name: node_view(nodes[name]) for name in _nodes_of(pods) if name in nodes},
        lost_nodes=_lost_since(old_status),
        alive={
            p["metadata"]["name"]: member_alive(view, dc, comp, p)
            for p in pods
            if (comp := _component(p)) is not None
        },
        records=_records(old_status),
        fe_quorum=fe_quorum(view),
    )
    gone = {n for n in lost_nodes(snap) if n not in snap.nodes}
    for node in gone:  # the cache may lag: a node it lacks must be confirmed gone
        if await podops.node_exists(kube, node) is not False:
            snap.nodes = {**snap.nodes, node: NodeView(True)}
    if snap.settings.enabled:
        candidates = lost_members(snap)
        by_name = {p["metadata"]["name"]: p for p in pods}
        loaded: dict[str, list[Claim]] = {}
        for member in candidates:
            claims = by_name[member.pod].get("claims") or []
            if claims:
                info = await podops.claim_nodes(kube, list(claims), dc.namespace)
                loaded[member.pod] = [Claim(c, uid, frozenset(n)) for c, (uid, n) in info.items()]
        snap.claims = loaded
        if snap.settings.recreate_local_claims and any(
            member.component == "be" and any(c.nodes for c in loaded.get(member.pod, []))
            for member in candidates
        ):
            snap.tablets_safe = await _tablets_safe(dc, fe_access, await credentials())
    result = plan(snap)
    for rec in result.completed:
        await record("Normal", "FailoverCompleted", f"{rec.pod} is back and Doris reports its member alive")
    for action in result.delete:
        member = action.member
        recreated: list[str] = []
        for claim in action.claims:
            if await podops.delete_claim(kube, claim.name, dc.namespace, claim.uid):
                recreated.append(claim.name)
        deleted = await podops.force_delete_pod(kube, member.pod, dc.namespace, member.uid)
        if not deleted:
            continue  # replaced or gone meanwhile: nothing was failed over
        log.warning("failover: force-deleted %s/%s: %s", dc.namespace, member.pod, member.reason)
        result.records.append(
            FailoverRecord(
                member.pod, member.uid, member.component, member.node, now, member.reason, tuple(recreated)
            )
        )
        extra = f"; new claims for {', '.join(recreated)}" if recreated else ""
        await record(
            "Warning",
            "Failover",
            f"force-deleted pod {member.pod} so it is recreated elsewhere: {member.reason}{extra}",
        )
        _requeue(result, 5)
    return result
