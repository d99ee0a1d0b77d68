"""Rolling upgrades and restarts in Doris's order.  The StatefulSets use OnDelete: a new template (image,
resources, a restartedAt annotation, changed conf) reaches a pod only when the operator deletes it, one
pod at a time in the whole cluster, BE and CN first, then FE with the master last, then Broker.  A BE
stops getting queries (disable_query) before its pod goes and gets them again once it is back and
alive in the FE."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..api.doriscluster import Component, DorisCluster
from ..builders import names
from ..doris.client import DorisError
from .membership import FeSession
from .observed import Obj
from .status import Findings

log = logging.getLogger(__name__)
ORDER: tuple[Component, ...] = ("be", "cn", "fe", "broker")
Record = Callable[[str, str, str], Awaitable[None]]


@dataclass
class RolloutMemory:
    """Per cluster, in memory: the pod just deleted (name -> uid, until its replacement shows up, so a
    stale cache never lets a second pod go) and the BEs whose queries the operator turned off."""

    deleting: dict[str, str] = field(default_factory=dict)
    disabled: dict[str, tuple[str, int]] = field(default_factory=dict)


def _up(pod: Obj) -> bool:
    """The pod's containers are ready.  Not its Ready condition: the readiness gate member-alive keeps a
    query-disabled BE NotReady, and the rollout is what turns its queries back on."""
    return bool(pod.get("containersReady", pod["ready"]))


def _ordinal(pod: Obj) -> int:
    return int(pod["metadata"]["name"].rsplit("-", 1)[1])


def _host(dc: DorisCluster, comp: Component, pod: Obj) -> str:
    return names.pod_fqdn(dc.name, comp, _ordinal(pod), dc.namespace)


async def reconcile_rollout(
    dc: DorisCluster,
    observed: dict[tuple[str, str], Obj],
    pods: list[Obj],
    memory: RolloutMemory,
    session: FeSession,
    findings: Findings,
    record: Record,
    delete_pod: Callable[[str], Awaitable[None]],
) -> None:
    """At most one pod deleted per call."""
    live = {p["metadata"]["name"]: p["metadata"].get("uid") for p in pods}
    for name, uid in list(memory.deleting.items()):
        if live.get(name) != uid:
            del memory.deleting[name]
    await _enable_queries(pods, memory, session, record)
    plans: list[tuple[Component, list[Obj], list[Obj], int]] = []
    for comp in ORDER:
        sts = observed.get(("StatefulSet", names.statefulset(dc.name, comp)))
        if dc.spec.component(comp) is None or sts is None:
            continue
        status = sts.get("status") or {}
        update = status.get("updateRevision")
        if not update or (status.get("observedGeneration") or 0) < (sts["metadata"].get("generation") or 0):
            return  # the StatefulSet controller hasn't caught up with our last apply yet
        mine = sorted(
            (p for p in pods if p["metadata"]["labels"].get(names.LABEL_COMPONENT) == comp),
            key=_ordinal,
        )
        plans.append(
            (comp, mine, [p for p in mine if p["revision"] != update], int(sts["spec"].get("replicas") or 0))
        )
    if not any(outdated for _, _, outdated, _ in plans) and not memory.deleting and not memory.disabled:
        return  # no rolling update under way: nothing to ask anyone
    for comp, mine, outdated, replicas in plans:
        label = f"{comp.upper()} rolling update, {len(outdated)} of {len(mine)} pods to go"
        busy = [*memory.deleting, *(p["metadata"]["name"] for p in mine if not _up(p)), *memory.disabled]
        if busy or len(mine) < replicas:
            # the previous pod first: ready, and for a BE alive and taking queries again
            findings.waiting[comp] = ("RollingUpdate", f"{label}: waiting for {busy[0] if busy else 'pods'}")
            return
        if not outdated:
            continue
        try:
            pod, node = await _next(dc, comp, outdated, mine, session)
            if pod is None:
                findings.waiting[comp] = ("RollingUpdate", f"{label}: waiting for every node to be alive")
                return
            name = pod["metadata"]["name"]
            if node is not None:  # a BE or CN: no new queries for it before it goes
                host, port = node
                await session.call(lambda c: c.modify_backend(host, port, disable_query=True))  # noqa: B023
                memory.disabled[name] = node
        except (DorisError, OSError) as err:
            findings.degrade(comp, "FEUnreachable", f"rolling update paused: can't ask the FE: {err}")
            return
        memory.deleting[name] = pod["metadata"].get("uid") or ""
        await delete_pod(name)
        await record("Normal", "RollingUpdate", f"restarting {name} with the new template ({label})")
        findings.waiting[comp] = ("RollingUpdate", f"{label}: restarting {name}")
        return


async def _next(
    dc: DorisCluster, comp: Component, outdated: list[Obj], mine: list[Obj], session: FeSession
) -> tuple[Obj | None, tuple[str, int] | None]:
    """The pod to restart next (and its BE), or None while Doris doesn't see every node alive."""
    if comp in ("be", "cn"):
        backends = {b.host: b for b in await session.call(lambda c: c.show_backends())}
        if any(not (b := backends.get(_host(dc, comp, p))) or not b.alive for p in mine):
            return None, None
        pod = outdated[-1]  # highest ordinal first
        be = backends[_host(dc, comp, pod)]
        return pod, (be.host, be.heartbeat_port)
    if comp == "fe":
        frontends = {f.host: f for f in await session.call(lambda c: c.show_frontends())}
        if any(not (f := frontends.get(_host(dc, comp, p))) or not f.alive for p in mine):
            return None, None
        rest = [p for p in outdated if not frontends[_host(dc, comp, p)].is_master]
        return (rest[-1] if rest else outdated[-1]), None  # the master last
    return outdated[-1], None


async def _enable_queries(pods: list[Obj], memory: RolloutMemory, session: FeSession, record: Record) -> None:
    """A BE the operator disabled takes queries again once its new pod is ready and alive in the FE."""
    ready = {p["metadata"]["name"] for p in pods if _up(p)}
    back = [name for name in memory.disabled if name in ready and name not in memory.deleting]
    if not back:
        return
    backends = {b.host: b for b in await session.call(lambda c: c.show_backends())}
    for name in back:
        host, port = memory.disabled[name]
        be = backends.get(host)
        if be is None or not be.alive:
            continue
        if be.query_disabled:
            await session.call(lambda c, h=host, p=port: c.modify_backend(h, p, disable_query=False))  # type: ignore[misc]
        del memory.disabled[name]
        await record("Normal", "QueriesEnabled", f"{name} is back and alive: it takes queries again")
