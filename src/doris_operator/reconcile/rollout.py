"""Rolling upgrades and restarts in Doris's order.  The StatefulSets use OnDelete: a new template (image,
resources, a restartedAt annotation, changed conf) reaches a pod only when the operator deletes it, one
pod at a time in the whole cluster, BE and CN first, then FE with the master last, then Broker.  The
gates are decided in :mod:`doris_operator.doris.rolling` (pure); this module reads Kubernetes and the
master FE, and acts.

Intent is on the objects: before a BE pod goes, the pod is marked (``queries-disabled``) and only then
does the BE get disable_query; a marked pod whose BE is back and alive gets its queries back and loses
the mark, also after an operator restart.  Balance paused for PV-backed BEs is recorded on the BE
StatefulSet (``balance-paused``) before the statements, and restored from that record."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from ..api.doriscluster import Component, DorisCluster
from ..builders import names
from ..builders.config import resolve as resolve_config
from ..builders.pod import data_volumes
from ..doris.client import Backend, DorisError, TabletHealth
from ..doris.identity import Match, match_nodes
from ..doris.master import MasterUnknownError
from ..doris.rolling import BALANCE_KEYS, ORDER, ComponentState, PodState, plan_rollout
from ..doris.versions import Version, doris_version, image_version
from .intent import ALLOW_VERSION_SKIP, BALANCE_PAUSED, QUERIES_DISABLED, Annotate, annotations_of
from .membership import FeSession, members_of, pod_refs
from .observed import Obj
from .status import Findings

log = logging.getLogger(__name__)
Record = Callable[[str, str, str], Awaitable[None]]


@dataclass
class RolloutMemory:
    """Per cluster, in memory, only to go faster: the pod just deleted (name -> uid, until its
    replacement shows up, so a stale cache never lets a second pod go) and the BEs whose queries the
    operator turned off and whose pod (and its mark) is gone meanwhile.  Lost on restart: the marks on
    the pods and the images' own reset of disable_query cover that."""

    deleting: dict[str, str] = field(default_factory=dict)
    disabled: dict[str, tuple[str, int]] = field(default_factory=dict)


def _containers_up(pod: Obj) -> bool:
    return bool(pod.get("containersReady", pod["ready"]))


def _up(pod: Obj, update: str | None) -> bool:
    """An outdated pod is up while its containers are ready: the readiness gate member-alive keeps a
    query-disabled BE NotReady, and it is the rollout that turns its queries back on (or replaces it).
    A pod on the new revision (just replaced, or new) is up only once it is Ready, gate included: until
    the gate opens, the Services route nothing to it, and taking the next pod then would leave two
    out of service at once (seen by the chaos benchmark: queries re-enabled and the next BE deleted in
    one pass, before the gate of the first had turned True)."""
    if not _containers_up(pod):
        return False
    if pod["revision"] != update or not pod.get("gated"):
        return True
    return bool(pod["ready"]) and pod.get("memberAlive") == "True"


def _ordinal(pod: Obj) -> int:
    return int(pod["metadata"]["name"].rsplit("-", 1)[1])


def persistent_storage(dc: DorisCluster, comp: Component) -> bool:
    """Every data path of the component is on a PersistentVolume (not emptyDir or the container fs)."""
    spec = dc.spec.component(comp)
    if spec is None:
        return False
    config = resolve_config(comp, spec, {})
    paths = set(config.data_paths())
    volumes = [(path, claim) for _, path, claim in data_volumes(spec, comp, config) if path in paths]
    shared = {
        (s.mount_path or "")
        for s in dc.spec.shared_persistent_volume_claims or []
        if not s.support_components or comp in s.support_components
    }
    covered = {path for path, claim in volumes if claim is not None} | {p for p in paths if p in shared}
    return bool(paths) and paths <= covered


def _mark(pod: Obj) -> tuple[str, int] | None:
    text = annotations_of(pod).get(QUERIES_DISABLED)
    if not text:
        return None
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


async def reconcile_rollout(
    dc: DorisCluster,
    observed: dict[tuple[str, str], Obj],
    pods: list[Obj],
    memory: RolloutMemory,
    session: FeSession,
    findings: Findings,
    record: Record,
    delete_pod: Callable[[str], Awaitable[None]],
    annotate: Annotate | None = None,
    settling: Collection[str] = (),
) -> None:
    """At most one pod deleted per call.  Every failure becomes a Degraded finding of its component.
    ``settling``: StatefulSets applied in this reconcile, whose observed status (update revision) is
    from before that apply; nothing is decided on them until the next reconcile."""
    live = {p["metadata"]["name"]: p["metadata"].get("uid") for p in pods}
    for name, uid in list(memory.deleting.items()):
        if live.get(name) != uid:
            del memory.deleting[name]
    be_sts = observed.get(("StatefulSet", names.statefulset(dc.name, "be")))
    paused = bool(annotations_of(be_sts).get(BALANCE_PAUSED))
    marked = {p["metadata"]["name"]: m for p in pods if (m := _mark(p)) is not None}
    comps: list[tuple[Component, list[Obj], Obj]] = []
    for comp in ORDER:
        sts = observed.get(("StatefulSet", names.statefulset(dc.name, comp)))
        if dc.spec.component(comp) is None or sts is None:
            continue
        if sts["metadata"]["name"] in settling:
            return  # the template just changed: the revisions observed are from before
        status = sts.get("status") or {}
        update = status.get("updateRevision")
        if not update or (status.get("observedGeneration") or 0) < (sts["metadata"].get("generation") or 0):
            return  # the StatefulSet controller hasn't caught up with our last apply yet
        mine = sorted(
            (p for p in pods if p["metadata"]["labels"].get(names.LABEL_COMPONENT) == comp), key=_ordinal
        )
        comps.append((comp, mine, sts))
    outdated = any(
        p["revision"] != (s.get("status") or {}).get("updateRevision") for _, m, s in comps for p in m
    )
    if not outdated and not memory.deleting and not memory.disabled and not marked and not paused:
        return  # no rolling update under way: nothing to ask anyone
    try:
        backends = await session.backends()
        view = await session.view()
    except Exception as err:
        _degrade(findings, "be" if be_sts is not None else "", session, err, "rolling update paused")
        return
    matched: dict[str, Match[Backend]] = {}
    states: list[ComponentState] = []
    for comp, mine, sts in comps:
        update = (sts.get("status") or {}).get("updateRevision")
        replicas = int(sts["spec"].get("replicas") or 0)
        refs = pod_refs(dc, comp, max([replicas, *(_ordinal(p) + 1 for p in mine)]), mine)
        running: list[Version] = []
        node_of: dict[int, tuple[bool | None, tuple[str, int] | None, bool]] = {}
        if comp in ("be", "cn"):
            matches = match_nodes(refs, backends, members_of(sts))
            for ordinal, match in matches.items():
                be = match.node
                matched[refs[ordinal].name] = match
                node_of[ordinal] = (
                    (None, None, False) if be is None else (be.alive, (be.host, be.heartbeat_port), False)
                )
                if be is not None and (v := doris_version(be.version)) is not None:
                    running.append(v)
        elif comp == "fe":
            for ordinal, fmatch in match_nodes(refs, list(view.frontends), members_of(sts)).items():
                fe = fmatch.node
                node_of[ordinal] = (None, None, False) if fe is None else (fe.alive, None, fe.is_master)
                if fe is not None and (v := doris_version(fe.version)) is not None:
                    running.append(v)
        spec = dc.spec.component(comp)
        states.append(
            ComponentState(
                comp=comp,
                replicas=replicas,
                persistent=persistent_storage(dc, comp),
                target=image_version(spec.image) if spec is not None else None,
                running=running,
                pods=[
                    PodState(
                        name=p["metadata"]["name"],
                        ordinal=_ordinal(p),
                        ready=_up(p, update),
                        outdated=p["revision"] != update,
                        alive=node_of.get(_ordinal(p), (True, None, False))[0] if comp != "broker" else True,
                        node=node_of.get(_ordinal(p), (None, None, False))[1],
                        is_master=node_of.get(_ordinal(p), (None, None, False))[2],
                        deleting=p["metadata"]["name"] in memory.deleting
                        and p["metadata"].get("uid") == memory.deleting[p["metadata"]["name"]],
                    )
                    for p in mine
                ],
            )
        )
    await _enable_queries(pods, marked, matched, memory, session, findings, record, annotate)
    health: TabletHealth | None = None
    health_error: str | None = None
    be_state = next((s for s in states if s.comp == "be"), None)
    if be_state is not None and be_state.outdated:
        try:
            health = await session.call(lambda c: c.show_tablet_health())
            if not be_state.persistent and health.replicas is None:
                try:
                    stats = await session.call(lambda c: c.show_statistic())
                    health = TabletHealth(
                        health.tablets, health.healthy, health.cloning, health.unrecoverable, stats.replicas
                    )
                except DorisError as err:
                    log.debug("no /statistic: %s", err)
        except Exception as err:
            health_error = str(err)
    allow = (dc.metadata.annotations or {}).get(ALLOW_VERSION_SKIP, "")
    plan = plan_rollout(
        states,
        health=health,
        health_error=health_error,
        balance_paused=paused,
        allow_version_skip=allow.strip().lower() == "true",
    )
    findings.waiting.update(plan.waiting)
    findings.polling.update(plan.polling)
    for refused, (reason, message) in plan.refused.items():
        findings.degrade(refused, reason, message)
    if plan.waiting.get("be", ("",))[0] == "TabletHealthUnknown":
        findings.degrade("be", "TabletHealthUnknown", plan.waiting["be"][1])
    try:
        if plan.restore_balance and be_sts is not None:
            await _set_balance(session, be_sts, annotate, False, record)
        if plan.delete is None:
            return
        if plan.pause_balance and be_sts is not None:
            await _set_balance(session, be_sts, annotate, True, record)
        name = plan.delete
        if plan.disable_query is not None:  # a BE or CN: no new queries for it before it goes
            host, port = plan.disable_query
            if annotate is not None:
                await annotate("Pod", name, {QUERIES_DISABLED: f"{host}:{port}"})
            await session.call(lambda c: c.modify_backend(host, port, disable_query=True))
            memory.disabled[name] = (host, port)
        pod = next(p for p in pods if p["metadata"]["name"] == name)
        memory.deleting[name] = pod["metadata"].get("uid") or ""
        await delete_pod(name)
        await record("Normal", "RollingUpdate", plan.reason)
    except Exception as err:
        _degrade(findings, "be" if plan.disable_query else "", session, err, "rolling update paused")


def _degrade(findings: Findings, comp: str, session: FeSession, err: Exception, what: str) -> None:
    if isinstance(err, MasterUnknownError):
        findings.degrade(comp, "MasterUnknown", f"{what}: {err.detail}")
    elif isinstance(err, (DorisError, OSError)):
        findings.degrade(
            comp, "FEUnreachable", f"{what}: can't ask the FE at {session.host}:{session.port}: {err}"
        )
    else:
        log.exception("rolling update")
        findings.degrade(comp, "RolloutError", f"{what}: {type(err).__name__}: {err}")


async def _set_balance(
    session: FeSession, be_sts: Obj, annotate: Annotate | None, pause: bool, record: Record
) -> None:
    """Pause (record first) or restore (record removed last) the tablet balancer."""
    name = be_sts["metadata"]["name"]
    if pause:
        if annotate is not None:
            await annotate("StatefulSet", name, {BALANCE_PAUSED: ",".join(BALANCE_KEYS)})
        be_sts["metadata"].setdefault("annotations", {})[BALANCE_PAUSED] = ",".join(BALANCE_KEYS)
    keys = [k for k in annotations_of(be_sts).get(BALANCE_PAUSED, "").split(",") if k in BALANCE_KEYS]
    for key in keys or list(BALANCE_KEYS):
        await session.call(lambda c, k=key: c.set_frontend_config(k, pause))  # type: ignore[misc]
    if not pause:
        if annotate is not None:
            await annotate("StatefulSet", name, {BALANCE_PAUSED: None})
        be_sts["metadata"].get("annotations", {}).pop(BALANCE_PAUSED, None)
        await record(
            "Normal", "BalanceRestored", "every BE is updated and alive: tablet balancing is on again"
        )
    else:
        await record("Normal", "BalancePaused", "tablet balancing paused while the PV-backed BEs restart")


async def _enable_queries(
    pods: list[Obj],
    marked: dict[str, tuple[str, int]],
    matched: dict[str, Match[Backend]],
    memory: RolloutMemory,
    session: FeSession,
    findings: Findings,
    record: Record,
    annotate: Annotate | None,
) -> None:
    """A BE the operator disabled takes queries again once its pod is ready and its BE alive in the
    master's view; then the pod's mark goes."""
    ready = {p["metadata"]["name"] for p in pods if _containers_up(p)}  # its gate waits on this
    for name in sorted({*marked, *memory.disabled}):
        if name not in ready or name in memory.deleting:
            continue
        match = matched.get(name)
        be = match.node if match is not None else None
        if be is None or not be.alive:
            continue
        try:
            if be.query_disabled:
                node: tuple[str, int] = (be.host, be.heartbeat_port)
                await session.call(lambda c: c.modify_backend(*node, disable_query=False))  # noqa: B023
            if name in marked and annotate is not None:
                await annotate("Pod", name, {QUERIES_DISABLED: None})
        except Exception as err:
            findings.degrade(
                "cn" if "-cn-" in name else "be",
                "QueriesNotEnabled",
                f"can't give {name} its queries back: {err}",
            )
            continue
        memory.disabled.pop(name, None)
        await record("Normal", "QueriesEnabled", f"{name} is back and alive: it takes queries again")
