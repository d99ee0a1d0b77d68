"""Plan: from a DorisCluster's snapshot to the actions that move its children toward the spec.  Pure:
no I/O, no clock, and the snapshot is never edited (desired objects are copied before any change).

Who owns what:
- an object whose ownerReference names this DorisCluster's uid as controller is ours: applied, and
  pruned when the spec no longer wants it (never when the spec still references it by name, as a
  Secret named in ``authSecret``), always with a uid precondition;
- an object that names this DorisCluster as owner but not as controller (the official operator's) is
  adopted: its fields are taken over, a StatefulSet keeps its replicas (scale changes go through
  membership afterwards) and its pods keep their template until the spec changes it (no restart);
- anything else under a wanted name is left alone, and the component is Degraded (NotOwned)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..builders import names
from ..k8s import owner_uids
from .act import Action, Apply, Delete, Emit, TakeOwnership, digest, top_copy
from .cn_hpa import hpa_owns_cn
from .observed import ADOPTED_TEMPLATE, Obj
from .snapshot import Key, Snapshot, component_of, fe_answers, referenced_secrets, waits_for_fe
from .status import Findings, cluster_status, component_status

TEMPLATE: tuple[str, ...] = ("f:spec", "f:template")
HOLDS_DATA = ("fe", "be", "cn")


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    findings: Findings = field(default_factory=Findings)


def controlled(obj: Obj, uid: str) -> bool:
    return bool(uid) and uid in owner_uids(obj, controller=True)


def owned(obj: Obj, uid: str) -> bool:
    return bool(uid) and uid in owner_uids(obj)


def keep_claim_templates(obj: Obj, observed: Obj) -> tuple[Obj, list[str]]:
    """A StatefulSet's volumeClaimTemplates can't change: a copy of ``obj`` with the stored ones, and
    the names of the volumes whose wanted template differs (new, or another size or class)."""
    stored = [
        {k: v for k, v in t.items() if k != "status"}
        for t in observed["spec"].get("volumeClaimTemplates") or []
    ]
    wanted = obj["spec"].get("volumeClaimTemplates") or []
    by_name = {t["metadata"]["name"]: t for t in stored}
    differ = [
        t["metadata"]["name"]
        for t in wanted
        if t["metadata"]["name"] not in by_name
        or any(
            t["spec"].get(key) is not None
            and t["spec"].get(key) != by_name[t["metadata"]["name"]]["spec"].get(key)
            for key in ("resources", "storageClassName")
        )
    ]
    obj = top_copy(obj)
    if stored:
        obj["spec"]["volumeClaimTemplates"] = stored
    else:
        obj["spec"].pop("volumeClaimTemplates", None)
    return obj, differ


def pinned(obj: Obj, template_digest: str) -> Obj:
    """The StatefulSet without its pod template (the pods' one stays, owned by its former manager)
    and marked with the digest of the template this operator would apply."""
    out = top_copy(obj)
    out["spec"].pop("template", None)
    out["metadata"].setdefault("annotations", {})[ADOPTED_TEMPLATE] = template_digest
    return out


def plan_children(snap: Snapshot, replicas: dict[str, int]) -> Plan:
    """Apply what the spec wants, in the builders' start-up order, then prune.  ``replicas``: the safe
    replicas per StatefulSet name, as membership decided them (default: the spec's)."""
    plan = Plan()
    if snap.deleting:
        return plan
    fe_ready = fe_answers(snap)
    for obj in snap.desired:
        comp = component_of(obj)
        if comp in snap.blocked:
            continue
        key: Key = (obj["kind"], obj["metadata"]["name"])
        live = snap.children.get(key)
        if live is None:
            if waits_for_fe(comp, fe_ready):
                plan.findings.waiting[comp] = (
                    "WaitingForFE",
                    "waiting for an FE to answer before creating it",
                )
                continue
            want = top_copy(obj)
            if obj["kind"] == "StatefulSet" and "replicas" in want["spec"]:  # absent: an HPA sets them
                want["spec"]["replicas"] = replicas.get(key[1], want["spec"]["replicas"])
            plan.actions.append(Apply(want, None, comp))
            continue
        _existing(snap, obj, live, comp, replicas, plan)
    _prune(snap, plan)
    return plan


def _existing(snap: Snapshot, obj: Obj, live: Obj, comp: str, replicas: dict[str, int], plan: Plan) -> None:
    kind, name, ns = obj["kind"], obj["metadata"]["name"], snap.dc.namespace
    uid = str(live["metadata"].get("uid") or "")
    if live["metadata"].get("deletionTimestamp"):
        plan.findings.waiting[comp] = (
            "Terminating",
            f"{kind} {name} is being deleted; it is made again after",
        )
        return
    if not owned(live, snap.uid):
        plan.findings.degrade(
            comp,
            "NotOwned",
            f"{kind} {name} exists and belongs to something else than DorisCluster {snap.dc.name}; "
            "it is left alone: delete it, or rename the DorisCluster",
        )
        return
    adopting = not controlled(live, snap.uid)
    want = obj
    if kind == "StatefulSet":
        want, differ = keep_claim_templates(obj, live)
        if differ:
            plan.actions.append(
                Emit(
                    "Warning",
                    "VolumeClaimTemplatesUnchanged",
                    f"StatefulSet {name}: persistentVolumes {', '.join(differ)} differ from its "
                    "volumeClaimTemplates, which can't change; the existing ones are kept",
                )
            )
        current = int(live["spec"].get("replicas") or 0)
        # adopting: the replicas it runs (a scale change goes through membership on the next visit)
        if adopting:
            want["spec"]["replicas"] = current
        elif "replicas" in want["spec"]:  # absent: an HPA sets them (cnSpec.autoScalingPolicy)
            want["spec"]["replicas"] = replicas.get(name, want["spec"]["replicas"])
        template = digest(obj["spec"]["template"])
        marker = (live["metadata"].get("annotations") or {}).get(ADOPTED_TEMPLATE)
        if adopting:
            plan.actions.append(TakeOwnership(kind, name, ns, uid, (TEMPLATE,), comp))
            plan.actions.append(Apply(pinned(want, template), live, comp))
            plan.actions.append(
                Emit(
                    "Normal",
                    "Adopted",
                    f"took over StatefulSet {name} with its {current} replicas; its pods keep running "
                    "until a change of the spec replaces them one at a time",
                    False,
                    (kind, name),
                )
            )
        elif marker is not None and marker == template:
            plan.actions.append(Apply(pinned(want, template), live, comp))
        elif marker is not None:
            plan.actions.append(TakeOwnership(kind, name, ns, uid, (), comp))
            plan.actions.append(Apply(want, live, comp))
            plan.actions.append(
                Emit(
                    "Normal",
                    "TemplateTakenOver",
                    f"StatefulSet {name} now runs this operator's pod template: its pods are replaced "
                    "one at a time",
                    False,
                    (kind, name),
                )
            )
        else:
            plan.actions.append(Apply(want, live, comp))
        return
    if adopting:
        plan.actions.append(TakeOwnership(kind, name, ns, uid, (), comp))
        plan.actions.append(Apply(want, live, comp))
        plan.actions.append(Emit("Normal", "Adopted", f"took over {kind} {name}", False, (kind, name)))
        return
    plan.actions.append(Apply(want, live, comp))


def _prune(snap: Snapshot, plan: Plan) -> None:
    """Delete what this DorisCluster controls and no longer wants (a removed component, say); never
    PVCs, never what the spec references.  FE and BE hold data and CNs stay registered in Doris: while
    their StatefulSet still runs pods, removing their spec is refused; the replicas go to 0 first
    (scale-in moves the data away and unregisters them), then the objects go."""
    wanted = {(o["kind"], o["metadata"]["name"]) for o in snap.desired}
    referenced = {name for name, _ in referenced_secrets(snap.dc)}
    stale = {
        key: obj
        for key, obj in snap.children.items()
        if key not in wanted
        and controlled(obj, snap.uid)
        and not obj["metadata"].get("deletionTimestamp")
        and not (key[0] == "Secret" and key[1] in referenced)
    }
    keep: set[str] = set()
    for (kind, name), obj in stale.items():
        comp = component_of(obj)
        running = int((obj.get("status") or {}).get("replicas") or 0)
        if kind == "StatefulSet" and comp in HOLDS_DATA and running > 0:
            keep.add(comp)
            plan.findings.degrade(
                "",
                "RemovalRefused",
                f"spec.{comp}Spec was removed, but StatefulSet {name} still runs {running} pods holding "
                f"data; set spec.{comp}Spec.replicas to 0 first, then remove it",
            )
    for (kind, name), obj in stale.items():
        if component_of(obj) in keep:
            continue
        plan.actions.append(
            Delete(
                kind,
                name,
                snap.dc.namespace,
                str(obj["metadata"].get("uid") or ""),
                f"deleted {kind} {name}: no longer in the spec",
            )
        )


def plan_status(snap: Snapshot, findings: Findings, now: str) -> Obj:
    """The DorisCluster's whole status from the snapshot and what the steps found."""
    dc, old = snap.dc, snap.old_status
    components: dict[str, Obj] = {}
    for comp, spec in dc.components():
        replicas = spec.replicas if spec.replicas is not None else 1
        live = snap.children.get(("StatefulSet", names.statefulset(dc.name, comp)))
        if comp == "cn" and hpa_owns_cn(dc) and live is not None:
            replicas = int(live["spec"].get("replicas") or 0)  # what the HPA set
        components[comp] = component_status(
            dc, comp, replicas, snap.children, snap.pods, findings, old.get(f"{comp}Status"), now
        )
        if comp == "cn" and hpa_owns_cn(dc):
            policy = dc.spec.cn_spec.auto_scaling_policy if dc.spec.cn_spec else None
            version = (policy.version if policy else None) or "v2"
            components[comp]["horizontalScaler"] = {"name": names.cn_autoscaler(dc.name), "version": version}
    status = cluster_status(dc, components, findings, old, now)
    if snap.deleting:
        status["phase"] = "Deleting"
        for cond in status["conditions"]:
            if cond["type"] == "Progressing":
                before: Obj = next(
                    (c for c in old.get("conditions") or [] if c.get("type") == "Progressing"), {}
                )
                cond.update(
                    status="True",
                    reason="Deleting",
                    message="the DorisCluster is being deleted: nothing is applied or restarted",
                    lastTransitionTime=before.get("lastTransitionTime", now)
                    if before.get("reason") == "Deleting"
                    else now,
                )
    return status
