"""Act: the small executor every custom resource's reconcile shares.  A pure ``plan()`` returns
:data:`Action` values; :meth:`Executor.run` carries them out in order under one field manager:

- :class:`Apply`: server-side apply (skipped when the object is unchanged since our last apply, see
  :class:`AppliedMemory`); one ``Event`` "Created" per run naming every object it made, or, while the
  plan still holds creations back (a new cluster's BEs wait for an FE), one for all of them once they
  are made (:class:`HeldCreated`);
- :class:`Delete`: delete with a uid precondition (a replacement is never deleted);
- :class:`TakeOwnership`: move other managers' fields to ours before adopting an object;
- :class:`WriteStatus`: the status subresource, when it changed (timestamps aside); its failure is
  raised (there is no status left to report it in: the caller retries with a backoff);
- :class:`Emit`: an Event on the owner.

A failed action (an API error, or anything unexpected) becomes a Degraded finding and a Warning Event,
and the next action still runs; only :class:`~doris_operator.k8s.NotLeading` (leadership lost) and
cancellation stop the run."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lightkube import ApiError

from .. import jsoncodec
from ..k8s import Kube, NotLeading
from .observed import APPLIED_HASH, Obj
from .status import Findings, without_times

log = logging.getLogger(__name__)


def top_copy(obj: Obj) -> Obj:
    """A copy of a built object whose ``metadata``, ``metadata.annotations`` and ``spec`` dicts are
    its own, sharing everything below: what the planner and the executor change (replicas, the pod
    template's presence, volumeClaimTemplates, our annotations), at a fraction of a deep copy's cost.
    Built objects are fresh per reconcile and nothing changes them deeper than that."""
    out = dict(obj)
    if isinstance(obj.get("metadata"), dict):
        meta = out["metadata"] = dict(obj["metadata"])
        if "annotations" in meta:
            meta["annotations"] = dict(meta["annotations"] or {})
    if isinstance(obj.get("spec"), dict):
        out["spec"] = dict(obj["spec"])
    return out


def digest(obj: Any) -> str:
    return hashlib.sha256(jsoncodec.dumps_sorted(obj)).hexdigest()[:16]


@dataclass
class AppliedMemory:
    """What the operator last applied, per object uid: the generation (resourceVersion for kinds
    without one) the apply returned.  An unchanged hash and version, and the labels and annotations we
    set still in place (metadata edits don't bump the generation), mean nobody touched the object since,
    so there is nothing to write.  Lost on restart: then each object is applied once again."""

    versions: dict[str, str] = field(default_factory=dict)
    echoes: dict[str, str] = field(default_factory=dict)
    """Per uid, the resourceVersion our last write of the object returned (an apply, a status patch):
    the watch event of that version only echoes what we wrote, and need wake nothing."""

    @staticmethod
    def version(obj: Obj) -> str:
        meta = obj["metadata"]
        return str(meta.get("generation") or meta.get("resourceVersion") or "")

    def unchanged(self, observed: Obj | None, digest: str, desired: Obj | None = None) -> bool:
        if observed is None or (observed["metadata"].get("annotations") or {}).get(APPLIED_HASH) != digest:
            return False
        if desired is not None and not _metadata_in_place(desired, observed):
            return False
        uid = observed["metadata"].get("uid")
        return uid is not None and self.versions.get(uid) == self.version(observed)

    def returned(self, obj: Obj) -> bool:
        """Whether ``obj`` is at the resourceVersion our last write of it returned: a watch's echo of
        that write, which brings nothing we did not know."""
        meta = obj["metadata"]
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        return bool(uid and version) and self.echoes.get(uid) == version

    def remember(self, stored: Obj) -> None:
        meta = stored["metadata"]
        uid = meta.get("uid")
        if uid:
            self.versions[uid] = self.version(stored)
            self.wrote(uid, meta.get("resourceVersion"))

    def wrote(self, uid: str | None, version: str | None) -> None:
        """Our write of the object ``uid`` returned ``version`` (None: unknown)."""
        if uid and version:
            self.echoes[uid] = str(version)
        elif uid:
            self.echoes.pop(uid, None)

    def forget(self, uid: str) -> None:
        self.versions.pop(uid, None)
        self.echoes.pop(uid, None)


def _metadata_in_place(desired: Obj, observed: Obj) -> bool:
    """Every label and annotation we apply is on the observed object with our value."""
    want, have = desired["metadata"], observed["metadata"]
    for key in ("labels", "annotations"):
        mine, theirs = want.get(key) or {}, have.get(key) or {}
        if any(theirs.get(k) != v for k, v in mine.items()):
            return False
    return True


class EventRecorder:
    """Events on an owner object, each distinct (reason, message) once until it changes."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._last: dict[tuple[str, str, str], tuple[str, str]] = {}

    async def record(
        self, body: Obj, event_type: str, reason: str, message: str, dedupe: bool = True
    ) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"], reason)
        if dedupe and self._last.get(key) == (event_type, message):
            return
        self._last[key] = (event_type, message)
        await self.kube.event(body, event_type, reason, message)

    def forget(self, namespace: str, name: str) -> None:
        for key in [k for k in self._last if k[:2] == (namespace, name)]:
            del self._last[key]


@dataclass(frozen=True)
class Apply:
    obj: Obj
    """The whole object as this operator wants it (the executor adds the applied-hash annotation)."""
    observed: Obj | None = None
    """The object as observed (cache or live read), None when it doesn't exist."""
    component: str = ""
    """Where a failure is reported ('' = the whole resource)."""


@dataclass(frozen=True)
class Delete:
    kind: str
    name: str
    namespace: str
    uid: str
    """Precondition: only this object, never one made since under the same name."""
    message: str = ""
    """The Normal Event "Deleted" on the owner ('' = none)."""


@dataclass(frozen=True)
class TakeOwnership:
    kind: str
    name: str
    namespace: str
    uid: str
    keep: tuple[tuple[str, ...], ...] = ()
    """FieldsV1 subtrees left with their current managers, e.g. (("f:spec", "f:template"),)."""
    component: str = ""


@dataclass(frozen=True)
class WriteStatus:
    status: Obj
    previous: Obj
    """The status as observed: nothing is written when the new one differs only in timestamps."""


@dataclass(frozen=True)
class Emit:
    type: str
    reason: str
    message: str
    dedupe: bool = True
    subject: tuple[str, str] | None = None
    """(kind, name): the Event tells of that object, and is skipped when an action on it failed."""


Action = Apply | Delete | TakeOwnership | WriteStatus | Emit

HOLD_CREATED = 60.0
"""Seconds a "Created" Event may wait for the creations its plan held back (a new cluster's BEs wait
for an FE to answer); after that it is recorded with what was made so far."""


@dataclass
class HeldCreated:
    """Objects made by earlier runs for one owner, not yet told in an Event because the plan held other
    creations back: one apply of a new cluster is one "Created" Event, not one per reconcile.  Kept in
    memory only (an Event is best effort): a restart loses it, and the next creation is told alone."""

    uid: str
    since: float
    created: list[tuple[str, str]]


@dataclass
class Executor:
    """Runs one resource's actions.  ``owner`` is the resource being reconciled (apiVersion, kind and
    metadata: Events name it); ``status_resource`` its lightkube class (None: DorisCluster)."""

    kube: Kube
    memory: AppliedMemory
    events: EventRecorder
    owner: Obj
    findings: Findings
    status_resource: Any = None
    written: dict[tuple[str, str], Obj] = field(default_factory=dict)
    """The status last written per owner (shared across reconciles: the watched copy lags behind)."""
    writes: int = 0
    failed: set[tuple[str, str]] = field(default_factory=set)
    """(kind, name) of the objects an action failed on: later actions on them in this run are skipped
    (an object is not applied over when taking over its fields failed)."""
    applied: set[tuple[str, str]] = field(default_factory=set)
    """(kind, name) of the objects this run wrote with an apply."""
    held: dict[tuple[str, str], HeldCreated] | None = None
    """Per owner (namespace, name), the creations not told yet (shared across reconciles); None: every
    run tells its own."""
    clock: Callable[[], float] = time.monotonic

    async def run(self, actions: Iterable[Action], more_to_create: bool | None = None) -> None:
        """``more_to_create``: whether this run's plan held creations back (then the "Created" Event
        waits for them, at most :data:`HOLD_CREATED` seconds) or not (the held ones are told now); None:
        not a plan's run (a status write, say), which leaves the held ones alone."""
        created: list[tuple[str, str]] = []
        await self._run(actions, created)
        if more_to_create is not None:
            created = self._hold(created, more_to_create)
        if created:  # one Event for the run, not one per object
            await self._created(created)

    def _hold(self, created: list[tuple[str, str]], more_to_create: bool) -> list[tuple[str, str]]:
        """What to tell now: the held creations and this run's, unless more are coming (and the oldest
        held one is younger than :data:`HOLD_CREATED`): then nothing, and they are held."""
        if self.held is None:
            return created
        meta = self.owner.get("metadata") or {}
        key, uid = (str(meta.get("namespace") or ""), str(meta.get("name") or "")), str(meta.get("uid") or "")
        prior = self.held.pop(key, None)
        if prior is not None and prior.uid == uid:  # another uid: a DorisCluster deleted and made again
            created = prior.created + [c for c in created if c not in prior.created]
        else:
            prior = None
        if more_to_create and created:
            since = prior.since if prior is not None else self.clock()
            if self.clock() - since < HOLD_CREATED:
                self.held[key] = HeldCreated(uid, since, created)
                return []
        return created

    async def _created(self, created: list[tuple[str, str]]) -> None:
        try:
            await self.events.record(self.owner, "Normal", "Created", created_message(created), False)
        except NotLeading:
            raise
        except Exception as err:
            log.warning("could not record the Created event: %s", err)

    async def _run(self, actions: Iterable[Action], created: list[tuple[str, str]]) -> None:
        for action in actions:
            if isinstance(action, WriteStatus):
                await self._status(action)  # a failure has no status to show in: it is raised
                continue
            subject = _subject(action)
            if subject is not None and subject in self.failed:
                continue
            try:
                made = await self._one(action)
                if made is not None:
                    created.append(made)
            except (NotLeading, KeyboardInterrupt):
                raise
            except ApiError as err:
                self._failed(action, "ApiError", f"{_describe(action)}: {err.status.message}")
                await self._warn(action, err.status.message or str(err))
            except Exception as err:
                log.exception("%s failed", _describe(action))
                self._failed(action, "InternalError", f"{_describe(action)}: {type(err).__name__}: {err}")
                await self._warn(action, f"{type(err).__name__}: {err}")

    def _failed(self, action: Action, reason: str, message: str) -> None:
        subject = _subject(action)
        if subject is not None:
            self.failed.add(subject)
        component = getattr(action, "component", "")
        if isinstance(action, Apply):
            reason = "ApplyFailed" if reason == "ApiError" else reason
        elif isinstance(action, Delete):
            reason = "DeleteFailed" if reason == "ApiError" else reason
        elif isinstance(action, TakeOwnership):
            reason = "AdoptFailed" if reason == "ApiError" else reason
        self.findings.degrade(component, reason, message)

    async def _warn(self, action: Action, message: str) -> None:
        reason = {Apply: "ApplyFailed", Delete: "DeleteFailed", TakeOwnership: "AdoptFailed"}.get(
            type(action), "ReconcileError"
        )
        try:
            await self.events.record(self.owner, "Warning", reason, f"{_describe(action)}: {message}")
        except NotLeading:
            raise
        except Exception as err:
            log.warning("could not record %s: %s", reason, err)

    async def _one(self, action: Action) -> tuple[str, str] | None:
        """Carry out ``action``; the (kind, name) of the object it created, if it did."""
        if isinstance(action, Apply):
            return await self._apply(action)
        if isinstance(action, Delete):
            log.info("deleting %s %s/%s", action.kind, action.namespace, action.name)
            deleted = await self.kube.delete(action.kind, action.name, action.namespace, action.uid)
            self.writes += 1
            self.memory.forget(action.uid)
            if deleted and action.message:
                await self.events.record(self.owner, "Normal", "Deleted", action.message, False)
        elif isinstance(action, TakeOwnership):
            log.info("taking over the fields of %s %s/%s", action.kind, action.namespace, action.name)
            await self.kube.take_ownership(
                action.kind, action.name, action.namespace, action.uid, action.keep
            )
            self.writes += 1
            self.memory.forget(action.uid)
        elif isinstance(action, WriteStatus):
            await self._status(action)
        else:
            await self.events.record(self.owner, action.type, action.reason, action.message, action.dedupe)
        return None

    async def _apply(self, action: Apply) -> tuple[str, str] | None:
        obj = top_copy(action.obj)
        hashed = digest(obj)
        obj["metadata"].setdefault("annotations", {})[APPLIED_HASH] = hashed
        if self.memory.unchanged(action.observed, hashed, obj):
            return None
        stored = await self.kube.apply(obj)
        self.writes += 1
        key = (obj["kind"], obj["metadata"]["name"])
        self.applied.add(key)
        self.memory.remember(stored)
        return key if action.observed is None else None

    async def _status(self, action: WriteStatus) -> None:
        clean = {k: v for k, v in action.status.items() if v is not None}
        meta = self.owner["metadata"]
        key = (meta["namespace"], meta["name"])
        if without_times(clean) in (without_times(action.previous), without_times(self.written.get(key))):
            return
        version = await self.kube.patch_status(key[1], key[0], clean, self.status_resource)
        self.memory.wrote(meta.get("uid"), version)
        self.written[key] = clean
        self.writes += 1


def created_message(created: Iterable[tuple[str, str]]) -> str:
    """``created StatefulSet a, b; Service c``: the objects of one run by kind, in the order made."""
    by_kind: dict[str, list[str]] = {}
    for kind, name in created:
        by_kind.setdefault(kind, []).append(name)
    return "created " + "; ".join(f"{kind} {', '.join(names)}" for kind, names in by_kind.items())


def _subject(action: Action) -> tuple[str, str] | None:
    if isinstance(action, Apply):
        return action.obj["kind"], action.obj["metadata"]["name"]
    if isinstance(action, Delete | TakeOwnership):
        return action.kind, action.name
    if isinstance(action, Emit):
        return action.subject
    return None


def _describe(action: Action) -> str:
    if isinstance(action, Apply):
        return f"apply {action.obj['kind']} {action.obj['metadata']['name']}"
    if isinstance(action, Delete):
        return f"delete {action.kind} {action.name}"
    if isinstance(action, TakeOwnership):
        return f"take over {action.kind} {action.name}"
    if isinstance(action, WriteStatus):
        return "write status"
    return f"event {action.reason}"
