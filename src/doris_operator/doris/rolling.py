"""The next step of a rolling update, decided from what Kubernetes and the master FE say.  Pure.

One pod at a time in the whole cluster, BE and CN first, then FE with the master last, then Broker
(Doris's upgrade order).  Gates before a pod goes:

* nothing else is down (not ready, missing, just deleted);
* an outdated pod that is down anyway (not ready, and its node not alive in Doris) is replaced first,
  ungated: that is what lets a bad image be rolled back by editing the spec;
* every node of the component is alive in Doris;
* a BE goes only when tablet health (the master's) shows no unhealthy and no cloning tablet, which on
  emptyDir storage means its predecessor's replicas were re-replicated;
* an image that skips a Doris minor version is refused unless the cluster allows it;
* on PV-backed BEs, balance is paused (disable_balance, disable_colocate_balance) before the first BE
  goes and restored once every BE is updated and alive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .client import TabletHealth
from .versions import Version, show, skipped_minor

Component = Literal["fe", "be", "cn", "broker"]
ORDER: tuple[Component, ...] = ("be", "cn", "fe", "broker")
Node = tuple[str, int]
BALANCE_KEYS = ("disable_balance", "disable_colocate_balance")


@dataclass(frozen=True)
class PodState:
    name: str
    ordinal: int
    ready: bool
    outdated: bool
    alive: bool | None = None
    """Its node in Doris: alive, dead, or None (not matched: unknown)."""
    node: Node | None = None
    """BE/CN: the ``host:heartbeat_port`` to MODIFY."""
    is_master: bool = False
    deleting: bool = False
    """The operator deleted it and its replacement hasn't shown up yet."""


@dataclass(frozen=True)
class ComponentState:
    comp: Component
    pods: Sequence[PodState]
    replicas: int
    persistent: bool = True
    """BE/CN data on PersistentVolumes (survives a restart); False for emptyDir."""
    target: Version | None = None
    """The Doris version of the new image."""
    running: Sequence[Version] = ()
    """The versions Doris reports for the component's nodes."""

    @property
    def outdated(self) -> list[PodState]:
        return [p for p in self.pods if p.outdated]

    @property
    def down(self) -> list[str]:
        names = [p.name for p in self.pods if p.deleting or not p.ready]
        present = {p.ordinal for p in self.pods}
        names += [f"ordinal {o}" for o in range(self.replicas) if o not in present]
        return names


@dataclass
class RolloutPlan:
    delete: str | None = None
    disable_query: Node | None = None
    """Set disable_query on this BE before its pod goes."""
    pause_balance: bool = False
    restore_balance: bool = False
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    refused: dict[str, tuple[str, str]] = field(default_factory=dict)
    reason: str = ""
    polling: dict[str, str] = field(default_factory=dict)
    """Components whose wait is on Doris-side state (a member alive again, tablets healthy again): no
    Kubernetes event tells its end, so the caller polls."""


def _label(state: ComponentState) -> str:
    return f"{state.comp.upper()} rolling update, {len(state.outdated)} of {len(state.pods)} pods to go"


def _settled_be(state: ComponentState | None) -> bool:
    """Every BE is updated, ready and alive: balance may run again."""
    if state is None:
        return True
    return not state.outdated and not state.down and all(p.alive for p in state.pods)


def plan_rollout(
    states: Sequence[ComponentState],
    *,
    health: TabletHealth | None,
    health_error: str | None = None,
    balance_paused: bool = False,
    allow_version_skip: bool = False,
) -> RolloutPlan:
    """At most one pod to delete.  ``health`` is the master's tablet health (None: not asked or
    unavailable, ``health_error`` says why)."""
    plan = RolloutPlan()
    by_comp = {s.comp: s for s in states}
    be = by_comp.get("be")
    if balance_paused and _settled_be(be):
        plan.restore_balance = True
    ordered = [by_comp[c] for c in ORDER if c in by_comp]
    # an outdated pod that is down anyway goes first: replacing it takes nothing more down, except the
    # data of an emptyDir BE, which may hold the last replica of a tablet (UnrecoverableNum > 0)
    for state in ordered:
        for pod in sorted(state.outdated, key=lambda p: -p.ordinal):
            if pod.ready or pod.deleting or pod.alive is True:
                continue
            if state.comp == "be" and not state.persistent and (health is None or health.unrecoverable):
                why = f"{health.unrecoverable} tablets have no alive replica" if health else health_error
                plan.waiting[state.comp] = (
                    "RollingUpdate",
                    f"{_label(state)}: not replacing {pod.name}, whose emptyDir data may be needed ({why})",
                )
                return plan
            plan.delete = pod.name
            plan.reason = f"{_label(state)}: replacing {pod.name}, which is down"
            plan.waiting[state.comp] = ("RollingUpdate", plan.reason)
            return plan
    down = [(s, name) for s in ordered for name in s.down]
    if down:
        state, name = down[0]
        if state.outdated or any(s.outdated for s in ordered):
            moving = next(s for s in ordered if s.outdated) if not state.outdated else state
            plan.waiting[moving.comp] = ("RollingUpdate", f"{_label(moving)}: waiting for {name}")
        return plan
    for state in ordered:
        outdated = state.outdated
        if not outdated:
            continue
        label = _label(state)
        if state.target is not None and not allow_version_skip:
            why = skipped_minor(state.running, state.target)
            if why is not None:
                plan.refused[state.comp] = (
                    "VersionSkipRefused",
                    f"spec.{state.comp}Spec.image: {why}; upgrade through each minor version, or "
                    "annotate the DorisCluster doris.apache.org/allow-version-skip=true",
                )
                return plan
        if state.comp in ("be", "cn", "fe"):
            dead = [p.name for p in state.pods if p.alive is not True]
            if dead:
                plan.waiting[state.comp] = (
                    "RollingUpdate",
                    f"{label}: waiting for {dead[0]} to be alive in Doris",
                )
                plan.polling[state.comp] = "MemberNotAlive"
                return plan
        if state.comp == "be":
            if health is None:
                plan.waiting[state.comp] = (
                    "TabletHealthUnknown",
                    f"{label}: paused, the master's tablet health is unknown ({health_error or 'not read'})",
                )
                return plan
            if not health.settled:
                plan.waiting[state.comp] = (
                    "WaitingForTablets",
                    f"{label}: waiting for the tablets to be healthy again ({health.describe()})",
                )
                plan.polling[state.comp] = "WaitingForTablets"
                return plan
            if not state.persistent and health.replicas is not None and health.replicas < 2 * health.tablets:
                plan.refused[state.comp] = (
                    "SingleReplicaTablets",
                    f"{label}: refused, the BEs keep their data on emptyDir and {health.tablets} "
                    f"tablets have only {health.replicas} replicas: some tablet has a single replica, which "
                    "a restart would lose; use persistentVolumes or replication_num >= 2",
                )
                return plan
            if state.persistent and not balance_paused:
                plan.pause_balance = True
        if state.comp == "fe":
            rest = [p for p in outdated if not p.is_master]
            pod = max(rest or outdated, key=lambda p: p.ordinal)  # the master last
        else:
            pod = max(outdated, key=lambda p: p.ordinal)  # highest ordinal first
        plan.delete = pod.name
        if state.comp in ("be", "cn"):
            plan.disable_query = pod.node
        plan.reason = f"{label}: restarting {pod.name}"
        plan.waiting[state.comp] = ("RollingUpdate", plan.reason)
        return plan
    return plan


def version_note(state: ComponentState) -> str:
    """For messages: ``2.1.7 -> 2.1.8``."""
    running = ", ".join(sorted({show(v) for v in state.running})) or "?"
    return f"{running} -> {show(state.target) if state.target else '?'}"
