"""Fault recovery in one reconcile: read Doris's view of the members once, then set the readiness gates
(:mod:`.readiness`), finish abandoned drains (:mod:`..webhook.eviction` sets them), and fail over pods on
lost nodes (:mod:`.failover`).  Called by the pipeline after it has applied the desired objects."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import ApiError

from ..access import credentials_refused
from ..api.doriscluster import DorisCluster
from ..builders import names
from ..doris.client import Credentials, DorisError, Timeouts
from ..k8s import Kube
from . import podops
from .failover import _time, reconcile_failover
from .members import FeAccess, MemberView, fe_candidates, pod_hosts, read_members
from .observed import Obj
from .readiness import plan_gates

log = logging.getLogger(__name__)
Record = Callable[[str, str, str], Awaitable[None]]
ABANDONED_DRAIN_GRACE = 120.0
"""Seconds past drain.timeoutSeconds after which a pod that is still there (the drain was abandoned)
takes queries again."""


@dataclass
class FaultResult:
    failover_status: Obj | None = None
    requeue_after: float | None = None
    writes: int = 0


def drain_timeout(dc: DorisCluster) -> float:
    drain = dc.spec.drain
    return float(drain.timeout_seconds) if drain and drain.timeout_seconds is not None else 600.0


def _modify(
    fe_access: FeAccess, fe: tuple[str, int], creds: Credentials, host: str, port: int, disable: bool
) -> None:
    with fe_access.connect(fe[0], fe[1], creds, Timeouts(3, 15, 15)) as client:
        client.modify_backend(host, port, disable_query=disable)


async def enable_queries(
    dc: DorisCluster, fe_access: FeAccess, creds: Credentials, host: str, port: int
) -> bool:
    """MODIFY BACKEND ... disable_query=false through the first FE that takes it."""
    for fe in fe_candidates(dc, fe_access):
        try:
            await asyncio.to_thread(_modify, fe_access, fe, creds, host, port, False)
            return True
        except (DorisError, OSError) as err:
            log.info("re-enabling queries on %s:%s via %s:%s: %s", host, port, *fe, err)
    return False


async def _finish_abandoned_drains(
    dc: DorisCluster,
    pods: list[Obj],
    view: MemberView,
    kube: Kube,
    fe_access: FeAccess,
    credentials: Callable[[], Awaitable[Credentials]],
    record: Record,
    now: dt.datetime,
) -> int:
    """A BE pod the eviction webhook drained that is still running long after the drain timeout: the
    drain was given up (kubectl drain interrupted), so it takes queries again."""
    writes = 0
    for pod in pods:
        meta = pod["metadata"]
        started = _time(meta["annotations"].get(names.DRAIN_STARTED))
        if started is None or meta.get("deletionTimestamp"):
            continue
        if (now - started).total_seconds() < drain_timeout(dc) + ABANDONED_DRAIN_GRACE:
            continue
        comp = meta["labels"].get(names.LABEL_COMPONENT)
        row = view.row(comp, pod_hosts(dc, comp, pod)) if view.known else None
        if row is None:
            continue
        target = (
            meta["annotations"].get(names.DRAIN_BACKEND) or f"{row.host}:{getattr(row, 'heartbeat_port', 0)}"
        )
        host, _, port = target.rpartition(":")
        if not await enable_queries(dc, fe_access, await credentials(), host, int(port)):
            continue
        try:
            await podops.patch_pod_annotations(
                kube, meta["name"], dc.namespace, {names.DRAIN_STARTED: None, names.DRAIN_BACKEND: None}
            )
        except ApiError as err:
            log.info("could not clear the drain annotations of %s: %s", meta["name"], err.status.message)
        writes += 1
        await record("Normal", "DrainAbandoned", f"{meta['name']} was not evicted: it takes queries again")
    return writes


async def reconcile_faults(
    dc: DorisCluster,
    pods: list[Obj],
    nodes: Mapping[str, Obj] | None,
    old_status: Obj,
    kube: Kube,
    fe_access: FeAccess,
    credentials: Callable[[], Awaitable[Credentials]],
    record: Record,
    members: Callable[[], Awaitable[MemberView]] | None = None,
) -> FaultResult:
    """``members``: Doris's view from a session the reconcile has open already (the master's); when
    it is None or fails, each FE is asked in turn (:func:`~.members.read_members`)."""
    result = FaultResult()
    refused = credentials_refused(dc, kube.secret_refused)
    view = MemberView()
    if members is not None:
        try:
            view = await members()
        except (DorisError, OSError) as err:
            log.debug("%s/%s: the open FE session failed (%s): asking each FE", dc.namespace, dc.name, err)
    if not view.known:
        view = await read_members(dc, fe_access, credentials, refused=refused)
    if not view.known:
        log.debug("%s/%s: no FE answered (%s): readiness gates unchanged", dc.namespace, dc.name, view.error)
    now = dt.datetime.now(dt.UTC)
    for change in plan_gates(dc, pods, view):
        try:
            await podops.set_pod_condition(kube, change.pod, dc.namespace, change.condition(now))
            result.writes += 1
        except ApiError as err:
            if err.status.code != 404:
                log.warning("readiness gate of %s/%s: %s", dc.namespace, change.pod, err.status.message)
    try:
        result.writes += await _finish_abandoned_drains(
            dc, pods, view, kube, fe_access, credentials, record, now
        )
    except (ApiError, DorisError, OSError) as err:
        log.warning("drain bookkeeping of %s/%s: %s", dc.namespace, dc.name, err)
    plan = await reconcile_failover(
        dc, pods, nodes, view, old_status, kube, fe_access, credentials, record, now
    )
    if plan is not None:
        result.failover_status = plan.status()
        result.requeue_after = plan.requeue_after
        result.writes += len(plan.delete)
    elif old_status.get("failover"):
        result.failover_status = old_status["failover"]  # nothing known this time: keep the record
    return result


def any_value(store: Any) -> Obj | None:
    """The one value an index keeps under a key."""
    for value in store:
        return dict(value)
    return None
