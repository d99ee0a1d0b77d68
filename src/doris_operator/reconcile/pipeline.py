"""One reconcile of one DorisCluster: observe -> membership -> plan -> act -> rollout -> status.

Level-triggered: nothing here depends on what woke it, so a create, an edit, a child's event, a resync
or an operator restart all lead to the same result.

- observe (:mod:`.snapshot`): the caches, live reads where they miss, the parsed spec, its ConfigMaps;
- membership (``reconcile_membership``, an opaque step on a copy of the desired objects): the replicas
  each StatefulSet may safely have now, after asking the FE;
- plan (:mod:`.plan`, pure): the actions; act (:mod:`.act`): the executor runs them;
- rollout (``reconcile_rollout``, an opaque step): at most one pod replaced, deleted by uid;
- fault recovery (:mod:`.faults`): readiness gates from Doris's view, abandoned drains, failover of
  pods on lost nodes;
- status, written in one place.

While the DorisCluster's ``deletionTimestamp`` is set, only the status is written.  An unexpected
error in a step becomes a Degraded condition and a Warning Event; the steps after it run where that is
safe (a failed membership step never lets a StatefulSet shrink)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from ..access import credentials_refused
from ..api import podsecurity
from ..api.doriscluster import DorisCluster
from ..api.lenient import parse_stored_cluster
from ..api.validation import InvalidResource
from ..builders.config import resolve as resolve_config
from ..doris.client import Credentials, DorisClient
from ..k8s import Fence, Kube, NotLeading
from ..metrics import export_draining
from .act import AppliedMemory, EventRecorder, Executor, HeldCreated, WriteStatus, digest, top_copy
from .faults import FaultResult, reconcile_faults
from .intent import Annotate, annotator
from .members import FeAccess, MemberView
from .membership import FE_ADDRESS_ANNOTATION, FeSession, credentials, fe_endpoint, reconcile_membership
from .observed import Obj
from .plan import keep_claim_templates, plan_children, plan_status
from .rollout import RolloutMemory, reconcile_rollout
from .snapshot import Snapshot, index_children, live_pods, observe
from .status import Findings
from .waits import Wait, WaitMemory, decide

__all__ = ["AppliedMemory", "Context", "EventRecorder", "Result", "digest", "reconcile"]
_keep_claim_templates = keep_claim_templates  # the name the unit tests know

log = logging.getLogger(__name__)
T = TypeVar("T")

PAUSE_ANNOTATION = "doris.apache.org/paused"


@dataclass
class Context:
    kube: Kube
    memory: AppliedMemory
    events: EventRecorder
    written: dict[tuple[str, str], Obj] = field(default_factory=dict)
    """The status last written per cluster: the watched copy lags behind our own writes."""
    rollouts: dict[tuple[str, str], RolloutMemory] = field(default_factory=dict)
    allow_fe_address_annotation: bool = False
    """Honour the fe-address annotation (``run --allow-fe-address-annotation``); else it is ignored with
    a Warning Event."""
    nodes: Callable[[], Mapping[str, Obj]] | None = None
    """The watched nodes by name (failover); None: not watched, no failover."""
    waits: dict[tuple[str, str], WaitMemory] = field(default_factory=dict)
    """Per cluster, what paces the polls of a wait on Doris (:mod:`.waits`)."""
    held_created: dict[tuple[str, str], HeldCreated] = field(default_factory=dict)
    """Per cluster, the objects made but not yet told in a "Created" Event (its BEs wait for an FE)."""
    clock: Callable[[], float] = time.monotonic


@dataclass
class Result:
    requeue_after: float | None = None
    phase: str | None = None
    writes: int = 0
    wait: Wait | None = None
    """What the reconcile waits for, whence ``requeue_after`` (None: converged)."""


class FencedSession(FeSession):
    """The FE session of one reconcile; no statement goes once leadership has lapsed."""

    def __init__(
        self,
        host: str,
        port: int,
        creds: Callable[[], Awaitable[Credentials]],
        fence: Fence,
        tls: bool = False,
        refused: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(host, port, creds, tls=tls, refused=refused)
        self.fence = fence

    async def _run(self, fn: Callable[[DorisClient], T]) -> T:
        self.fence.check("sql", "Doris")
        return await super()._run(fn)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _executor(body: Obj, ctx: Context, findings: Findings) -> Executor:
    return Executor(
        ctx.kube,
        ctx.memory,
        ctx.events,
        body,
        findings,
        written=ctx.written,
        held=ctx.held_created,
        clock=ctx.clock,
    )


async def reconcile(body: Obj, children: Iterable[Obj], pods: Iterable[Obj], ctx: Context) -> Result:
    pods = list(pods)  # observed twice: the snapshot keeps the live ones, fault recovery needs all
    meta = body["metadata"]
    old_status = body.get("status") or {}
    result = Result()

    if (meta.get("annotations") or {}).get(PAUSE_ANNOTATION, "").lower() == "true":
        paused = {
            "type": "Progressing",
            "status": "False",
            "reason": "Paused",
            "message": f"reconciling is paused by the annotation {PAUSE_ANNOTATION}",
            "observedGeneration": meta.get("generation"),
            "lastTransitionTime": _now(),
        }
        conditions = [c for c in old_status.get("conditions") or [] if c.get("type") != "Progressing"]
        status = {**old_status, "phase": "Paused", "conditions": [*conditions, paused]}
        executor = _executor(body, ctx, Findings())
        await executor.run([WriteStatus(status, old_status)])
        result.writes, result.phase = executor.writes, "Paused"
        return result

    try:
        stored: Obj = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
        dc = parse_stored_cluster(stored)  # fields a newer CRD added are logged once and ignored
        refused = podsecurity.overlay_problems(dc)
        if refused:
            raise InvalidResource(refused)
    except InvalidResource as err:
        await ctx.events.record(body, "Warning", "InvalidSpec", str(err))
        status = {
            **old_status,
            "phase": "Degraded",
            "observedGeneration": meta.get("generation"),
            "conditions": [
                {
                    "type": "Degraded",
                    "status": "True",
                    "reason": "InvalidSpec",
                    "message": str(err),
                    "observedGeneration": meta.get("generation"),
                    "lastTransitionTime": _now(),
                }
            ],
        }
        executor = _executor(body, ctx, Findings())
        await executor.run([WriteStatus(status, old_status)])
        result.writes, result.phase = executor.writes, "Degraded"
        return result

    findings = Findings()
    executor = _executor(body, ctx, findings)

    async def warn(step: str, err: Exception) -> None:
        log.error("%s/%s: %s failed", dc.namespace, dc.name, step, exc_info=err)
        message = f"{step} failed: {type(err).__name__}: {err}"
        findings.degrade("", "ReconcileError", message)
        try:
            await ctx.events.record(body, "Warning", "ReconcileError", message)
        except NotLeading:
            raise
        except Exception as event_err:
            log.warning("could not record the ReconcileError event: %s", event_err)

    try:
        snap = await observe(body, dc, children, pods, ctx.kube)
    except (NotLeading, asyncio.CancelledError):
        raise
    except Exception as err:
        snap = Snapshot(body=body, dc=dc, children=index_children(children), pods=live_pods(pods))
        await warn("observing the cluster", err)
        await _finish(snap, findings, executor, ctx, result, steps_ok=False)
        return result
    _merge(findings, snap.findings)

    faults: FaultResult | None = None
    if not snap.deleting:
        faults = await _converge(snap, pods, findings, executor, ctx, warn)
    await _finish(snap, findings, executor, ctx, result, steps_ok=True, faults=faults)
    return result


async def _converge(
    snap: Snapshot,
    all_pods: list[Obj],
    findings: Findings,
    executor: Executor,
    ctx: Context,
    warn: Callable[[str, Exception], Awaitable[None]],
) -> FaultResult | None:
    """Membership, plan, act, rollout, then fault recovery; the last's result (None: it did not run)."""
    dc, body = snap.dc, snap.body

    async def creds() -> Credentials:
        return await credentials(dc, lambda name: ctx.kube.secret_data(name, dc.namespace))

    async def record(event_type: str, reason: str, message: str) -> None:
        await ctx.events.record(body, event_type, reason, message, dedupe=False)

    session: FencedSession | None = None
    fe_access: FeAccess | None = None
    try:
        fe_config = resolve_config("fe", dc.spec.fe_spec, snap.config_maps)
        fe_access = FeAccess(
            fe_config.port("query_port"), ctx.allow_fe_address_annotation, fe_config.flag("enable_ssl")
        )
        host, port = fe_endpoint(dc, fe_config, allow_annotation=ctx.allow_fe_address_annotation)
        session = FencedSession(
            host,
            port,
            creds,
            ctx.kube.fence,
            tls=fe_config.flag("enable_ssl"),
            refused=credentials_refused(dc, ctx.kube.secret_refused),
        )
    except Exception as err:  # a malformed address, say: no scale-in, no rolling update, the rest goes on
        await warn("finding the FE", err)
    else:
        if (dc.metadata.annotations or {}).get(FE_ADDRESS_ANNOTATION) and not ctx.allow_fe_address_annotation:
            await ctx.events.record(
                body,
                "Warning",
                "FEAddressIgnored",
                f"the annotation {FE_ADDRESS_ANNOTATION} is ignored: the operator runs without "
                f"--allow-fe-address-annotation; it connects to {host}:{port}",
            )
    patch_annotations = annotator(ctx.kube, dc.namespace)

    async def annotate(kind: str, name: str, values: dict[str, str | None]) -> None:
        """The operator's intent, recorded on its objects before the statement it stands for."""
        await patch_annotations(kind, name, values)
        executor.writes += 1

    try:
        if session is not None:
            replicas = await _membership(snap, session, findings, record, warn, annotate)
        else:
            replicas = _never_shrink(snap)
        plan = plan_children(snap, replicas)
        _merge(findings, plan.findings)
        held_back = any(reason == "WaitingForFE" for reason, _ in plan.findings.waiting.values())
        await executor.run(plan.actions, more_to_create=held_back)
        if session is not None:
            try:
                await _rollout(snap, session, findings, record, executor, ctx, annotate)
            except (NotLeading, asyncio.CancelledError):
                raise
            except Exception as err:
                await warn("the rolling update", err)
        if fe_access is None:
            return None
        try:
            return await _faults(snap, all_pods, fe_access, creds, record, executor, ctx, session)
        except (NotLeading, asyncio.CancelledError):
            raise
        except Exception as err:
            await warn("fault recovery", err)
            return None
    finally:
        if session is not None:
            try:
                await session.close()
            except Exception as err:
                log.debug("closing the FE session: %s", err)


def _never_shrink(snap: Snapshot) -> dict[str, int]:
    """Each StatefulSet's replicas when the scale-in step could not run: never fewer than it runs."""
    out: dict[str, int] = {}
    for obj in snap.desired:
        if obj["kind"] == "StatefulSet":
            live = snap.children.get(("StatefulSet", obj["metadata"]["name"]))
            current = int((live or {}).get("spec", {}).get("replicas") or 0)
            if obj["spec"].get("replicas") is not None:  # absent: an HPA sets them
                out[obj["metadata"]["name"]] = max(int(obj["spec"]["replicas"]), current)
    return out


async def _membership(
    snap: Snapshot,
    session: FeSession,
    findings: Findings,
    record: Callable[[str, str, str], Awaitable[None]],
    warn: Callable[[str, Exception], Awaitable[None]],
    annotate: Annotate,
) -> dict[str, int]:
    """The safe replicas per StatefulSet, from the membership step run on a copy of the desired
    objects.  If it fails, no StatefulSet shrinks below what it runs."""
    desired = [top_copy(o) if o["kind"] == "StatefulSet" else o for o in snap.desired]  # it sets replicas
    try:
        await reconcile_membership(
            snap.dc, desired, snap.children, snap.pods, snap.old_status, session, findings, record, annotate
        )
    except (NotLeading, asyncio.CancelledError):
        raise
    except Exception as err:
        await warn("the scale-in step", err)
        return _never_shrink(snap)
    return {
        o["metadata"]["name"]: int(o["spec"]["replicas"])
        for o in desired
        if o["kind"] == "StatefulSet" and o["spec"].get("replicas") is not None
    }


async def _rollout(
    snap: Snapshot,
    session: FeSession,
    findings: Findings,
    record: Callable[[str, str, str], Awaitable[None]],
    executor: Executor,
    ctx: Context,
    annotate: Annotate,
) -> None:
    dc = snap.dc
    uids = {p["metadata"]["name"]: str(p["metadata"].get("uid") or "") for p in snap.pods}

    async def delete_pod(name: str) -> None:
        # by uid: the pod the rollout looked at, never a replacement made since
        await ctx.kube.delete("Pod", name, dc.namespace, uids.get(name) or None)
        executor.writes += 1

    memory = ctx.rollouts.setdefault((dc.namespace, dc.name), RolloutMemory())
    # nothing is decided on a StatefulSet applied in this pass: its observed revision is from before
    settling = {name for kind, name in executor.applied if kind == "StatefulSet"}
    await reconcile_rollout(
        dc, snap.children, snap.pods, memory, session, findings, record, delete_pod, annotate, settling
    )


async def _faults(
    snap: Snapshot,
    all_pods: list[Obj],
    fe_access: FeAccess,
    creds: Callable[[], Awaitable[Credentials]],
    record: Callable[[str, str, str], Awaitable[None]],
    executor: Executor,
    ctx: Context,
    session: FeSession | None = None,
) -> FaultResult:
    """Readiness gates, abandoned drains and failover (:mod:`.faults`), on every pod of the cluster
    (terminating ones too: a pod stuck on a lost node is one).  Its statements to Doris pass the fence
    like the FE session's.  Doris's view comes from the reconcile's FE session when it is open (one
    login per reconcile, not two), else from each FE in turn."""
    dc = snap.dc
    ctx.kube.fence.check("sql", "Doris")
    nodes = ctx.nodes() if ctx.nodes is not None else None
    # the failover records must be the newest: the watched status lags behind our own last write
    written = ctx.written.get((dc.namespace, dc.name))
    faults = await reconcile_faults(
        dc,
        all_pods,
        nodes,
        written if written is not None else snap.old_status,
        ctx.kube,
        fe_access,
        creds,
        record,
        members=_session_members(session, dc) if session is not None and session.opened else None,
    )
    executor.writes += faults.writes
    return faults


def _session_members(session: FeSession, dc: DorisCluster) -> Callable[[], Awaitable[MemberView]]:
    async def members() -> MemberView:
        """What the membership step and the rolling update read on it, unless a statement ran since."""
        fes, bes = await session.frontends(), await session.backends()
        brokers = await session.call(lambda c: c.show_brokers()) if dc.spec.broker_spec is not None else None
        return MemberView(fes, bes, brokers, source=f"{session.host}:{session.port}")

    return members


async def _finish(
    snap: Snapshot,
    findings: Findings,
    executor: Executor,
    ctx: Context,
    result: Result,
    steps_ok: bool,
    faults: FaultResult | None = None,
) -> None:
    for problems in findings.degraded.values():
        for reason, message in problems:
            try:
                await ctx.events.record(snap.body, "Warning", reason, message)
            except NotLeading:
                raise
            except Exception as err:
                log.warning("could not record %s: %s", reason, err)
    export_draining(snap.dc.namespace, snap.dc.name, findings.draining)
    status = plan_status(snap, findings, _now())
    failover = faults.failover_status if faults is not None else snap.old_status.get("failover")
    if failover:
        status["failover"] = failover
    await executor.run([WriteStatus(status, snap.old_status)])
    result.writes = executor.writes
    result.phase = status["phase"]
    key = (snap.dc.namespace, snap.dc.name)
    wait, memory = decide(
        status["phase"], steps_ok, findings, snap.pods, ctx.waits.get(key, WaitMemory()), ctx.clock()
    )
    if memory == WaitMemory():
        ctx.waits.pop(key, None)
    else:
        ctx.waits[key] = memory
    result.wait = wait
    result.requeue_after = wait.requeue_after if wait is not None else None
    if faults is not None and faults.requeue_after is not None:
        result.requeue_after = min(result.requeue_after or faults.requeue_after, faults.requeue_after)


def _merge(into: Findings, other: Findings) -> None:
    for comp, problems in other.degraded.items():
        into.degraded.setdefault(comp, []).extend(problems)
    into.waiting.update({k: v for k, v in other.waiting.items() if k not in into.waiting})
    into.draining.update(other.draining)
    into.polling.update(other.polling)
