"""What a DorisCluster's reconcile waits for, and when it looks again.  Pure: no I/O, and the clock
is an argument.

A wait on Kubernetes (pods becoming Ready, a StatefulSet's status, an object going away) wakes the
cluster through the watch events, so only a long fallback requeue stands behind it.  A wait on Doris
(nothing in Kubernetes changes when Doris does) is polled:

- a BE/CN decommission: from the drain's progress, about half the time the tablets left would take at
  the rate seen since the drain was first observed, between :data:`DRAIN_POLL_MIN` and
  :data:`DRAIN_POLL_MAX`; so the StatefulSet shrinks soon after Doris drops the drained BE, with a
  handful of looks per drain rather than one per second;
- other Doris-side state (a restarted BE alive again in SHOW BACKENDS, tablets healthy again after a
  restart, a dropped observer, a pod's member-alive readiness gate): soon at first, backing off as the
  wait drags on (a quarter of the time waited so far, between :data:`DORIS_POLL_MIN` and
  :data:`DORIS_POLL_MAX`).

A failure (a step that could not run, a problem Kubernetes won't tell us about) is retried at a fixed
interval; a converged cluster is not requeued at all (the resync still visits it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .observed import Obj
from .status import Findings

DRAIN_POLL_MIN = 1.0
DRAIN_POLL_MAX = 10.0
DORIS_POLL_MIN = 1.0
DORIS_POLL_MAX = 30.0
FAILED_REQUEUE = 10.0
"""A step could not run (observing, say)."""
DEGRADED_REQUEUE = 30.0
"""A problem found (the FE unreachable, an apply refused): retried, nothing announces its end."""
KUBERNETES_FALLBACK = 300.0
"""Waiting on Kubernetes objects: their watch events wake the cluster; this only covers a lost one."""


@dataclass(frozen=True)
class Wait:
    """Why the reconcile is not done, and when it looks again."""

    on: str
    """``drain`` | ``doris`` | ``retry`` | ``kubernetes``."""
    reason: str
    requeue_after: float


@dataclass(frozen=True)
class WaitMemory:
    """Per cluster, in memory, only to pace the polls (lost on restart: the first look is then soon)."""

    drain_since: float | None = None
    drain_tablets: int = 0
    """The tablets still on the leaving BEs when the current drain was first observed, and when."""
    doris_since: float | None = None
    """When the current wait on Doris-side state began."""


def drain_poll(tablets: int, since: float, at_start: int, now: float) -> float:
    """Seconds until the next look at a drain with ``tablets`` left, ``at_start`` when it was first
    observed at ``since``: half the estimated time to empty, at the average rate since then."""
    elapsed = now - since
    moved = at_start - tablets
    if tablets <= 0 or elapsed <= 0 or moved <= 0:
        # done, just started or not moving: soon, backing off while nothing moves
        return min(DRAIN_POLL_MAX, max(DRAIN_POLL_MIN, elapsed / 4 if tablets > 0 else 0.0))
    left = tablets / (moved / elapsed)
    return min(DRAIN_POLL_MAX, max(DRAIN_POLL_MIN, left / 2))


def doris_poll(waited: float) -> float:
    """Seconds until the next look at Doris-side state awaited for ``waited`` seconds so far."""
    return min(DORIS_POLL_MAX, max(DORIS_POLL_MIN, waited / 4))


def gates_pending(pods: Iterable[Obj]) -> list[str]:
    """Pods whose containers are ready but whose member-alive readiness gate is not True yet: only a
    look at Doris turns them Ready (no Kubernetes event will)."""
    return sorted(
        p["metadata"]["name"]
        for p in pods
        if p.get("gated")
        and p.get("containersReady")
        and p.get("memberAlive") != "True"
        and not p["metadata"].get("deletionTimestamp")
    )


def decide(
    phase: str,
    steps_ok: bool,
    findings: Findings,
    pods: Iterable[Obj],
    memory: WaitMemory,
    now: float,
) -> tuple[Wait | None, WaitMemory]:
    """The wait with the soonest look, of all the reconcile is waiting for (None: converged, no
    requeue), and the memory for the next reconcile."""
    waits: list[Wait] = []
    if not steps_ok:
        waits.append(Wait("retry", "StepFailed", FAILED_REQUEUE))
    elif findings.degraded.get("") or phase == "Degraded":
        reason = next(iter(findings.degraded.get("") or [("Degraded", "")]))[0]
        waits.append(Wait("retry", reason, DEGRADED_REQUEUE))

    tablets = sum(sum(pods_left.values()) for pods_left in findings.draining.values())
    drain_since, drain_tablets = memory.drain_since, memory.drain_tablets
    if findings.draining:
        if drain_since is None or tablets > drain_tablets:  # a drain seen for the first time (or more)
            drain_since, drain_tablets = now, tablets
        waits.append(Wait("drain", "Decommissioning", drain_poll(tablets, drain_since, drain_tablets, now)))
    else:
        drain_since, drain_tablets = None, 0

    doris = _doris_reasons(findings.polling, gates_pending(pods))
    doris_since = memory.doris_since
    if doris:
        doris_since = now if doris_since is None else doris_since
        waits.append(Wait("doris", doris[0], doris_poll(now - doris_since)))
    else:
        doris_since = None

    if phase not in ("Ready", "Paused") and not waits:
        waiting = sorted(r for r, _ in findings.waiting.values())
        waits.append(Wait("kubernetes", waiting[0] if waiting else "NotReady", KUBERNETES_FALLBACK))
    wait = min(waits, key=lambda w: w.requeue_after) if waits else None
    return wait, WaitMemory(drain_since, drain_tablets, doris_since)


def _doris_reasons(polling: Mapping[str, str], gated: list[str]) -> list[str]:
    out = [polling[c] for c in sorted(polling)]
    if gated:
        out.append("MemberNotAlive")
    return out
