"""One reconcile of one DorisMonitor: observe -> plan -> act -> status.

* **observe** reads the DorisMonitor's children by its label, its DorisCluster, and notes which kinds
  the apiserver does not serve (the Prometheus Operator CRDs not installed).  In the operator the
  children come from the informers (every kind of :data:`OWNED_KINDS` is watched by that label, and a
  child's change wakes its monitor), and one the caches miss is read live before it is applied: an
  idle resync sends no request.  Without informers (a :class:`MonitorContext` of its own) it lists
  every kind until a reconcile of the current generation has done so, in this process, without
  deleting anything or failing; after that, only the kinds the spec makes (:func:`wanted_kinds`).
  The generated Grafana admin Secret is read by name: the operator never lists or watches Secrets;
* **plan** (pure) compares them with :func:`builders.monitor.build` and returns the actions: apply what
  is wanted, delete what it owns and no longer wants (a mode switch, dashboards or alerts turned off),
  create the Grafana admin Secret once;
* **act** runs them with server-side apply under the operator's field manager, and records Events;
* **status** (pure) says, per part, whether it is there and ready, with the URLs of Prometheus and
  Grafana in bundled mode.

Deleting the DorisMonitor deletes its children through their owner references (garbage collection).
Level-triggered: the same result whatever woke it.  One reconcile per DorisMonitor at a time.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lightkube import ApiError
from pydantic import ValidationError

from ..api.doriscluster import DorisCluster
from ..api.dorismonitor import KIND, DorisMonitor
from ..builders import monitor as mb
from ..k8s import Kube
from ..metrics import MONITORS, RECONCILE_SECONDS
from .act import created_message
from .observed import APPLIED_HASH
from .pipeline import AppliedMemory, EventRecorder, digest
from .queue import WorkQueue

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]
OWNED_KINDS = (
    "PodMonitor",
    "PrometheusRule",
    "ConfigMap",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "StatefulSet",
    "Deployment",
    "Service",
)
"""The kinds of a DorisMonitor's children, found by its label (``doris.apache.org/monitor``).  Not the
generated Grafana admin Secret: the operator may not list or watch Secrets, so that one is read by
name, and never pruned (it goes with its DorisMonitor, whose password it keeps across mode switches)."""
OPTIONAL_KINDS = frozenset({"PodMonitor", "PrometheusRule"})
"""Served only where the Prometheus Operator's CRDs are installed."""
NOT_READY_REQUEUE = 15.0


@dataclass
class Snapshot:
    monitor: Obj
    cluster: Obj | None
    children: dict[tuple[str, str], Obj]
    unserved: set[str] = field(default_factory=set)
    listed: tuple[str, ...] = OWNED_KINDS
    """The kinds whose children were listed: only those can be pruned."""
    admin_secret: bool = True
    """Whether the generated Grafana admin Secret exists (read by name; True when none is generated)."""


@dataclass(frozen=True)
class Action:
    verb: Literal["apply", "delete", "create-secret"]
    kind: str
    name: str
    part: str
    obj: Obj | None = None
    """apply: the object wanted; delete: the child as observed (its uid the delete's precondition)."""


@dataclass
class Plan:
    actions: list[Action]
    desired: list[Obj]
    blocked: dict[str, str] = field(default_factory=dict)
    """part -> why it can't be made (its kind isn't served)."""


def _part(obj: Obj) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(mb.LABEL_PART, ""))


def _owned_by(obj: Obj, uid: str | None) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("kind") == KIND and (uid is None or r.get("uid") == uid) for r in refs)


def plan(dm: DorisMonitor, snap: Snapshot) -> Plan:
    """What to do, from the snapshot alone (pure)."""
    dc = _cluster_model(snap.cluster)
    desired = mb.build(dm, dc)
    actions: list[Action] = []
    blocked: dict[str, str] = {}
    for obj in desired:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in snap.unserved:
            blocked[_part(obj)] = (
                f"{kind} (monitoring.coreos.com/v1) is not served: install the Prometheus Operator's CRDs, "
                "or use mode: bundled"
            )
            continue
        actions.append(Action("apply", kind, name, _part(obj), obj))
    if generates_admin_secret(dm):
        secret_name, _ = mb.grafana_admin_secret_name(dm)
        if not snap.admin_secret:
            actions.append(Action("create-secret", "Secret", secret_name, "grafana"))
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
    uid = dm.metadata.uid
    for (kind, name), obj in sorted(snap.children.items()):
        if kind in snap.listed and (kind, name) not in wanted and _owned_by(obj, uid):
            actions.append(Action("delete", kind, name, _part(obj), obj))
    return Plan(actions, desired, blocked)


def _cluster_model(body: Obj | None) -> DorisCluster | None:
    if body is None:
        return None
    try:
        return DorisCluster.model_validate(
            {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
        )
    except ValidationError:
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready_replicas(obj: Obj | None) -> int:
    st = (obj or {}).get("status") or {}
    return int(st.get("readyReplicas") or st.get("availableReplicas") or 0)


def _node_port(svc: Obj | None) -> int | None:
    for p in ((svc or {}).get("spec") or {}).get("ports") or []:
        if p.get("nodePort"):
            return int(p["nodePort"])
    return None


def status(
    dm: DorisMonitor, snap: Snapshot, p: Plan, failures: Mapping[str, str], old: Obj | None = None
) -> Obj:
    """The DorisMonitor's status (pure): per part, then conditions and phase."""
    generation = dm.metadata.generation
    by_part: dict[str, list[str]] = {}
    for obj in p.desired:
        by_part.setdefault(_part(obj), []).append(f"{obj['kind']}/{obj['metadata']['name']}")
    parts: dict[str, Obj] = {}
    for part, objects in by_part.items():
        entry: Obj = {"ready": True, "objects": sorted(objects)}
        if part in p.blocked:
            entry.update(ready=False, reason="PrometheusOperatorMissing", message=p.blocked[part])
        elif part in failures:
            entry.update(ready=False, reason="ApplyFailed", message=failures[part])
        parts[part] = entry
    out: Obj = {"mode": dm.spec.mode, "observedGeneration": generation}
    if dm.spec.mode == "bundled":
        sts = snap.children.get(("StatefulSet", mb.name(dm, "prometheus")))
        prom = parts.setdefault("prometheus", {"ready": False})
        prom["url"] = mb.prometheus_url(dm)
        out["prometheusURL"] = prom["url"]
        if prom["ready"] and _ready_replicas(sts) < 1:
            prom.update(ready=False, reason="Starting", message="the Prometheus pod is not ready yet")
        port = _node_port(snap.children.get(("Service", mb.name(dm, "prometheus"))))
        if port:
            prom["nodePort"] = port
        if dm.bundled.grafana.enabled:
            deploy = snap.children.get(("Deployment", mb.name(dm, "grafana")))
            graf = parts.setdefault("grafana", {"ready": False})
            graf["url"] = mb.grafana_url(dm)
            out["grafanaURL"] = graf["url"]
            if graf["ready"] and _ready_replicas(deploy) < 1:
                graf.update(ready=False, reason="Starting", message="the Grafana pod is not ready yet")
            port = _node_port(snap.children.get(("Service", mb.name(dm, "grafana"))))
            if port:
                graf["nodePort"] = port
    out["parts"] = parts
    broken = {
        k: v for k, v in parts.items() if v.get("reason") in ("ApplyFailed", "PrometheusOperatorMissing")
    }
    waiting = {k: v for k, v in parts.items() if not v["ready"] and k not in broken}
    notes: list[tuple[str, str]] = []
    if snap.cluster is None:
        notes.append(("ClusterNotFound", f"DorisCluster {dm.spec.cluster} does not exist in {dm.namespace}"))
    for part, entry in broken.items():
        notes.append((str(entry["reason"]), f"{part}: {entry['message']}"))

    def cond(ctype: str, ok: bool, reason: str, message: str) -> Obj:
        return {
            "type": ctype,
            "status": "True" if ok else "False",
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
        }

    ready = not broken and not waiting and snap.cluster is not None
    conditions = [
        cond(
            "Ready",
            ready,
            "AllPartsReady" if ready else "NotReady",
            "every part is in place and ready"
            if ready
            else "; ".join(sorted({*(f"{k} not ready" for k in waiting), *(m for _, m in notes)})),
        ),
        cond(
            "Progressing",
            bool(waiting),
            "Waiting" if waiting else "Settled",
            ", ".join(f"{k}: {v.get('message', '')}" for k, v in sorted(waiting.items()))
            or "nothing pending",
        ),
        cond(
            "Degraded",
            bool(notes),
            notes[0][0] if notes else "None",
            "; ".join(m for _, m in notes) or "no problems",
        ),
    ]
    previous = {c.get("type"): c for c in (old or {}).get("conditions") or []}
    now = _now()
    for c in conditions:
        before = previous.get(c["type"])
        c["lastTransitionTime"] = (
            before.get("lastTransitionTime", now) if before and before.get("status") == c["status"] else now
        )
    out["conditions"] = conditions
    out["phase"] = "Ready" if ready else ("Degraded" if notes else "Progressing")
    return out


# -- observe and act -------------------------------------------------------------------------------------


def trim_monitor_child(obj: Obj) -> Obj:
    """What the reconcile reads of a child (its ``kind`` set): identity, labels, owner, the applied
    hash, versions; a StatefulSet's or Deployment's status, a Service's ports."""
    meta = obj.get("metadata") or {}
    out: Obj = {
        "kind": obj.get("kind"),
        "apiVersion": obj.get("apiVersion"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": {k: v for k, v in (meta.get("annotations") or {}).items() if k == APPLIED_HASH},
            "ownerReferences": list(meta.get("ownerReferences") or []),
            "generation": meta.get("generation"),
            "resourceVersion": meta.get("resourceVersion"),
        },
    }
    if obj.get("kind") in ("StatefulSet", "Deployment"):
        out["status"] = dict(obj.get("status") or {})
    if obj.get("kind") == "Service":
        out["spec"] = {"ports": list((obj.get("spec") or {}).get("ports") or [])}
    return out


def child_index(kind: str) -> str:
    """The name of the informers' index of a DorisMonitor's children of ``kind``."""
    return f"dmon_{kind}"


def child_entries(kind: str) -> Callable[[Obj], dict[Any, Obj]]:
    """The index function of that index: (namespace, monitor) -> :func:`trim_monitor_child` of the object."""

    def entries(obj: Obj) -> dict[Any, Obj]:
        meta = obj["metadata"]
        monitor = (meta.get("labels") or {}).get(mb.LABEL_MONITOR)
        if not monitor:
            return {}
        return {(meta.get("namespace"), monitor): trim_monitor_child({**obj, "kind": kind})}

    return entries


def wanted_kinds(dm: DorisMonitor, desired: list[Obj]) -> tuple[str, ...]:
    """The kinds of what the spec makes (``desired``: :func:`builders.monitor.build`'s), in
    :data:`OWNED_KINDS`' order."""
    kinds = {o["kind"] for o in desired}
    return tuple(k for k in OWNED_KINDS if k in kinds)


def generates_admin_secret(dm: DorisMonitor) -> bool:
    return (
        dm.spec.mode == "bundled" and dm.bundled.grafana.enabled and dm.bundled.grafana.admin_secret is None
    )


Children = Callable[[str, str], dict[tuple[str, str], Obj]]
"""The informers' children of the DorisMonitor (namespace, name): (kind, name) -> the
:func:`trim_monitor_child` of each."""


async def observe(
    kube: Kube,
    body: Obj,
    dm: DorisMonitor,
    kinds: tuple[str, ...] = OWNED_KINDS,
    clusters: Callable[[str, str], Obj | None] | None = None,
    watched: tuple[Children, Callable[[], set[str]]] | None = None,
) -> Snapshot:
    """``kinds``: the kinds of children to list (default: all a monitor may own).  ``clusters``: the
    operator's DorisCluster index; a miss is read live (a cluster the index has not seen yet).
    ``watched``: the informers' children and the kinds the API server does not serve; then nothing
    is listed (``kinds`` unused)."""
    admin_secret = True
    if generates_admin_secret(dm):
        admin_secret = await kube.secret_exists(mb.grafana_admin_secret_name(dm)[0], dm.namespace)
    cluster = clusters(dm.namespace, dm.spec.cluster) if clusters is not None else None
    if cluster is None:
        cluster = await kube.get("DorisCluster", dm.spec.cluster, dm.namespace)
    if watched is not None:
        children_of, unserved_kinds = watched
        unserved = unserved_kinds() & OPTIONAL_KINDS
        listed = tuple(k for k in OWNED_KINDS if k not in unserved)
        return Snapshot(body, cluster, children_of(dm.namespace, dm.name), unserved, listed, admin_secret)
    children: dict[tuple[str, str], Obj] = {}
    unserved = set()
    selector = {mb.LABEL_MONITOR: dm.name}
    for kind in kinds:
        try:
            objs = await kube.list_labelled(kind, dm.namespace, selector)
        except ApiError as err:
            if err.status.code == 404 and kind in OPTIONAL_KINDS:
                unserved.add(kind)
                continue
            raise
        for obj in objs:
            obj.setdefault("kind", kind)
            children[(kind, obj["metadata"]["name"])] = trim_monitor_child(obj)
    return Snapshot(body, cluster, children, unserved, tuple(kinds), admin_secret)


@dataclass
class MonitorContext:
    kube: Kube
    memory: AppliedMemory = field(default_factory=AppliedMemory)
    events: EventRecorder | None = None
    written: dict[Key, Obj] = field(default_factory=dict)
    scanned: dict[Key, tuple[tuple[str, int], tuple[str, ...]]] = field(default_factory=dict)
    """Per monitor, the (uid, generation) whose full scan of :data:`OWNED_KINDS` found nothing left to
    delete and had no failure, and its :func:`wanted_kinds`: what its later reconciles list.  In memory:
    a restarted operator scans each monitor fully once more."""
    clusters: Callable[[str, str], Obj | None] | None = None
    """The DorisCluster index's entry for (namespace, name), once the informers are synced."""
    watched: tuple[Children, Callable[[], set[str]]] | None = None
    """The informers' children and unserved kinds (then children are never listed), once synced."""

    def __post_init__(self) -> None:
        if self.events is None:
            self.events = EventRecorder(self.kube)


async def act(
    dm: DorisMonitor, body: Obj, snap: Snapshot, p: Plan, ctx: MonitorContext
) -> tuple[dict[str, str], int]:
    """Run the plan; returns (part -> failure message, writes)."""
    assert ctx.events is not None
    failures: dict[str, str] = {}
    writes = 0
    created: list[tuple[str, str]] = []
    for action in p.actions:
        try:
            if action.verb == "apply":
                assert action.obj is not None
                obj = copy.deepcopy(action.obj)
                hashed = digest(obj)
                obj["metadata"].setdefault("annotations", {})[APPLIED_HASH] = hashed
                observed = snap.children.get((action.kind, action.name))
                if observed is None and ctx.watched is not None:  # a cache miss: read it live
                    live = await ctx.kube.get(action.kind, action.name, dm.namespace)
                    observed = None if live is None else trim_monitor_child(live)
                if ctx.memory.unchanged(observed, hashed):
                    continue
                stored = await ctx.kube.apply(obj)
                ctx.memory.remember(stored)
                writes += 1
                if observed is None:
                    created.append((action.kind, action.name))
            elif action.verb == "create-secret":
                # chosen once; never re-applied, so the password never changes under Grafana
                await ctx.kube.apply(mb.generated_admin_secret(dm, secrets.token_urlsafe(24)))
                writes += 1
                await ctx.events.record(
                    body, "Normal", "Created", f"created Secret {action.name} (Grafana admin password)", False
                )
            else:
                writes += 1
                uid = ((action.obj or {}).get("metadata") or {}).get("uid")
                # with the uid it was observed with: never a replacement; nor one gone already
                if await ctx.kube.delete(action.kind, action.name, dm.namespace, uid):
                    await ctx.events.record(
                        body,
                        "Normal",
                        "Deleted",
                        f"deleted {action.kind} {action.name}: no longer wanted",
                        False,
                    )
        except ApiError as err:
            message = f"{action.kind} {action.name}: {err.status.message}"
            failures.setdefault(action.part, message)
            await ctx.events.record(body, "Warning", "ApplyFailed", message)
    if created:  # one Event for the run, not one per object
        await ctx.events.record(body, "Normal", "Created", created_message(created), False)
    return failures, writes


@dataclass
class MonitorResult:
    phase: str
    writes: int
    requeue_after: float | None


async def reconcile(body: Obj, ctx: MonitorContext) -> MonitorResult:
    assert ctx.events is not None
    meta = body["metadata"]
    key = (meta.get("namespace") or "default", meta["name"])
    old_status = body.get("status") or {}
    try:
        dm = DorisMonitor.model_validate(
            {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
        )
    except ValidationError as err:
        message = "; ".join(
            f"spec.{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}"
            if e["loc"][:1] == ("spec",)
            else e["msg"]
            for e in err.errors()
        )
        await ctx.events.record(body, "Warning", "InvalidSpec", message)
        new = {
            **old_status,
            "phase": "Degraded",
            "observedGeneration": meta.get("generation"),
            "conditions": [
                {
                    "type": "Degraded",
                    "status": "True",
                    "reason": "InvalidSpec",
                    "message": message,
                    "observedGeneration": meta.get("generation"),
                    "lastTransitionTime": _now(),
                }
            ],
        }
        writes = await _write_status(key, meta.get("uid"), old_status, new, ctx)
        return MonitorResult("Degraded", writes, None)
    generation = (str(meta.get("uid") or ""), int(meta.get("generation") or 0))
    scanned = ctx.scanned.get(key)
    full = scanned is None or scanned[0] != generation
    kinds = OWNED_KINDS if full or scanned is None else scanned[1]
    snap = await observe(ctx.kube, body, dm, kinds, ctx.clusters, ctx.watched)
    p = plan(dm, snap)
    failures, writes = await act(dm, body, snap, p, ctx)
    if ctx.watched is None:  # listed, not watched: what the next reconciles list
        if failures:
            ctx.scanned.pop(key, None)  # scan everything again
        elif full and not any(a.verb == "delete" for a in p.actions):
            ctx.scanned[key] = (generation, wanted_kinds(dm, p.desired))
    new = status(dm, snap, p, failures, old_status)
    writes += await _write_status(key, meta.get("uid"), old_status, new, ctx)
    return MonitorResult(new["phase"], writes, None if new["phase"] == "Ready" else NOT_READY_REQUEUE)


def _without_times(status: Obj | None) -> Obj | None:
    if status is None:
        return None
    out = copy.deepcopy(status)
    for c in out.get("conditions") or []:
        c.pop("lastTransitionTime", None)
    return out


async def _write_status(key: Key, uid: str | None, old: Obj, new: Obj, ctx: MonitorContext) -> int:
    """The status, unless unchanged; the version written is remembered, so its watch echo wakes
    nothing (:meth:`AppliedMemory.returned`)."""
    if _without_times(new) in (_without_times(old), _without_times(ctx.written.get(key))):
        return 0
    version = await ctx.kube.patch_status(key[1], key[0], new, kind=KIND)
    ctx.memory.wrote(uid, version)
    ctx.written[key] = new
    return 1


# -- the work loop -------------------------------------------------------------------------------------


class MonitorController:
    """DorisMonitors from the informers' index, reconciled by a few workers, one at a time per monitor."""

    INDEX = "dmon_monitors"

    def __init__(self, kube: Kube, workers: int = 2, resync: float = 60.0) -> None:
        self.ctx = MonitorContext(kube)
        self.queue: WorkQueue[Key] = WorkQueue()
        self.workers = workers
        self.resync = resync
        self.indexes: Mapping[str, Any] | None = None
        self.synced = asyncio.Event()
        self._phases: dict[Key, str] = {}

    def attach(self, indexes: Mapping[str, Any], unserved: Callable[[], set[str]] | None = None) -> None:
        """The informers' indexes; with ``unserved`` (the kinds the API server does not serve) and
        an index of every kind of :data:`OWNED_KINDS`, the children come from them."""
        if self.indexes is None and self.INDEX in indexes:
            self.indexes = indexes
            if "dc_clusters" in indexes:
                clusters = indexes["dc_clusters"]

                def cluster(namespace: str, name: str) -> Obj | None:
                    return next(iter(clusters.get((namespace, name), ())), None)

                self.ctx.clusters = cluster
            if unserved is not None and all(child_index(k) in indexes for k in OWNED_KINDS):

                def children(namespace: str, name: str) -> dict[tuple[str, str], Obj]:
                    return {
                        (kind, obj["metadata"]["name"]): obj
                        for kind in OWNED_KINDS
                        for obj in indexes[child_index(kind)].get((namespace, name), ())
                    }

                self.ctx.watched = (children, unserved)
            self.synced.set()

    def child_changed(self, type: str, obj: Obj) -> None:
        """A child of a DorisMonitor changed or went: reconcile the monitor, unless the change is only
        the echo of its own apply (the resourceVersion the apply returned)."""
        meta = obj["metadata"]
        monitor = (meta.get("labels") or {}).get(mb.LABEL_MONITOR)
        if not monitor:
            return
        if type != "DELETED" and self.ctx.memory.returned(obj):
            return
        self.enqueue((meta.get("namespace") or "default", monitor))

    def enqueue(self, key: Key) -> None:
        self.queue.add(key)

    def cluster_changed(self, key: Key) -> None:
        """A DorisCluster changed: its monitors' rules depend on its FE followers."""
        if self.indexes is None:
            return
        for mkey in list(self.indexes[self.INDEX]):
            for body in self.indexes[self.INDEX].get(mkey, ()):
                if mkey[0] == key[0] and (body.get("spec") or {}).get("cluster") == key[1]:
                    self.enqueue(mkey)

    def forget(self, key: Key) -> None:
        self.queue.forget(key)
        assert self.ctx.events is not None
        self.ctx.events.forget(*key)
        self.ctx.written.pop(key, None)
        self.ctx.scanned.pop(key, None)
        self._phases.pop(key, None)
        self._export()

    async def run(self) -> None:
        await self.synced.wait()
        tasks = [asyncio.create_task(self._work(), name=f"monitor-worker-{i}") for i in range(self.workers)]
        tasks.append(asyncio.create_task(self._resync(), name="monitor-resync"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            assert self.indexes is not None
            for key in list(self.indexes[self.INDEX]):
                self.queue.add(key, urgent=False)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.reconcile_key(key)
            finally:
                self.queue.done(key)

    async def reconcile_key(self, key: Key) -> None:
        assert self.indexes is not None
        bodies = list(self.indexes[self.INDEX].get(key, ()))
        if not bodies:
            self.forget(key)
            return
        started = time.monotonic()
        try:
            result = await reconcile(bodies[0], self.ctx)
        except Exception as err:  # one monitor's failure must not stop the others
            log.warning("reconcile of DorisMonitor %s/%s failed (retry in 10s): %s", *key, err)
            self.queue.add_after(key, 10.0)
            return
        finally:
            RECONCILE_SECONDS.observe(time.monotonic() - started)
        self._phases[key] = result.phase
        self._export()
        if result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)

    def _export(self) -> None:
        for phase in ("Ready", "Progressing", "Degraded"):
            MONITORS.labels(phase=phase).set(sum(1 for p in self._phases.values() if p == phase))
