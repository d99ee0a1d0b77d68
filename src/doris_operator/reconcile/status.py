"""Status of a DorisCluster, computed from what is observed.  Pure; the one writer is the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.doriscluster import Component, DorisCluster
from ..builders import names

Obj = dict[str, Any]
FAILED_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass
class Findings:
    """What the pipeline learnt beyond the objects themselves, per component ('' = whole cluster)."""

    degraded: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    draining: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per component: pods whose BE is being decommissioned -> tablets it still holds."""
    polling: dict[str, str] = field(default_factory=dict)
    """Per component: the reason of a wait on Doris-side state (no Kubernetes event tells its end, so
    the reconcile polls; see :mod:`.waits`)."""

    def degrade(self, comp: str, reason: str, message: str) -> None:
        self.degraded.setdefault(comp, []).append((reason, message))


def _condition(ctype: str, ok: bool, reason: str, message: str, generation: int | None) -> Obj:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def condition(ctype: str, ok: bool, reason: str, message: str, generation: int | None) -> Obj:
    """A status condition (every resource of the operator writes them the same way)."""
    return _condition(ctype, ok, reason, message, generation)


def carry_times(new: list[Obj], old: list[Obj] | None, now: str) -> list[Obj]:
    """lastTransitionTime moves only when a condition's status changes."""
    return _carry_times(new, old, now)


def _carry_times(new: list[Obj], old: list[Obj] | None, now: str) -> list[Obj]:
    """lastTransitionTime moves only when a condition's status changes."""
    previous = {c.get("type"): c for c in old or []}
    for cond in new:
        before = previous.get(cond["type"])
        same = before is not None and before.get("status") == cond["status"]
        cond["lastTransitionTime"] = before.get("lastTransitionTime", now) if same and before else now
    return new


def _access(cluster: str, comp: Component, children: dict[tuple[str, str], Obj]) -> Obj | None:
    svc = children.get(("Service", names.access_service(cluster, comp)))
    if svc is None:
        return None
    spec = svc["spec"]
    ports = []
    for p in spec.get("ports") or []:
        entry: Obj = {"name": p.get("name", ""), "port": p["port"]}
        if p.get("nodePort"):
            entry["nodePort"] = p["nodePort"]
        ports.append(entry)
    access: Obj = {
        "service": svc["metadata"]["name"],
        "type": spec.get("type") or "ClusterIP",
        "ports": ports,
    }
    if spec.get("clusterIP"):
        access["clusterIP"] = spec["clusterIP"]
    ingress = [
        i.get("ip") or i.get("hostname")
        for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ]
    if ingress:
        access["ingress"] = [i for i in ingress if i]
    return access


def component_status(
    dc: DorisCluster,
    comp: Component,
    desired_replicas: int,
    children: dict[tuple[str, str], Obj],
    pods: list[Obj],
    findings: Findings,
    old: Obj | None,
    now: str,
) -> Obj:
    generation = dc.metadata.generation
    sts = children.get(("StatefulSet", names.statefulset(dc.name, comp)))
    st = (sts or {}).get("status") or {}
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    settled = sts is not None and (st.get("observedGeneration") or 0) >= (
        sts["metadata"].get("generation") or 0
    )
    # (with OnDelete the StatefulSet never moves currentRevision: updatedReplicas says it all)
    available = (
        settled
        and ready == desired_replicas
        and updated == desired_replicas
        and int(st.get("replicas") or 0) == desired_replicas
    )
    mine = sorted(
        (p for p in pods if p["metadata"]["labels"].get(names.LABEL_COMPONENT) == comp),
        key=lambda p: p["metadata"]["name"],
    )
    running = [p["metadata"]["name"] for p in mine if p["ready"]]
    failed = [p for p in mine if p["phase"] in ("Failed", "Unknown") or p["reason"] in FAILED_REASONS]
    creating = [p["metadata"]["name"] for p in mine if not p["ready"] and p not in failed]

    problems = list(findings.degraded.get(comp, []))
    problems += [
        (p["reason"] or "PodFailed", f"pod {p['metadata']['name']}: {p['reason'] or p['phase']}")
        for p in failed
    ]
    waiting = findings.waiting.get(comp)
    unschedulable = [p for p in mine if p.get("unschedulable")]
    if waiting is not None:
        progressing = (True, *waiting)
    elif sts is None:
        progressing = (True, "Creating", "the StatefulSet is being created")
    elif available:
        progressing = (False, "Stable", f"{ready}/{desired_replicas} replicas ready")
    elif unschedulable:
        first = unschedulable[0]
        progressing = (True, "Unschedulable", f"pod {first['metadata']['name']}: {first['unschedulable']}")
    elif updated < desired_replicas:
        progressing = (True, "RollingUpdate", f"{updated}/{desired_replicas} replicas updated, {ready} ready")
    elif int(st.get("replicas") or 0) != desired_replicas:
        progressing = (True, "Scaling", f"{st.get('replicas') or 0} replicas, {desired_replicas} desired")
    else:
        progressing = (True, "PodsStarting", f"{ready}/{desired_replicas} replicas ready")
    conditions = [
        _condition(
            "Ready",
            available,
            "AllReplicasReady" if available else "ReplicasNotReady",
            f"{ready}/{desired_replicas} replicas ready",
            generation,
        ),
        _condition("Progressing", progressing[0], progressing[1], progressing[2], generation),
        _condition(
            "Degraded",
            bool(problems),
            problems[0][0] if problems else "AsExpected",
            "; ".join(m for _, m in problems) if problems else "",
            generation,
        ),
    ]
    old = old or {}
    conditions = _carry_times(conditions, old.get("conditions"), now)
    if problems:
        phase, reason, message = "haveMemberFailed", problems[0][0], conditions[2]["message"]
    elif available:
        phase, reason, message = "available", "AllReplicasReady", conditions[0]["message"]
    else:
        phase = "initializing" if sts is None else "reconciling"
        reason, message = progressing[1], progressing[2]
    old_cc = old.get("componentCondition") or {}
    status: Obj = {
        "accessService": names.access_service(dc.name, comp) if comp != "broker" else None,
        "runningInstances": running,
        "creatingInstances": creating,
        "failedInstances": [p["metadata"]["name"] for p in failed],
        "componentCondition": {
            "subResourceName": names.statefulset(dc.name, comp),
            "phase": phase,
            "reason": reason,
            "message": message,
            "lastTransitionTime": old_cc.get("lastTransitionTime", now)
            if old_cc.get("phase") == phase
            else now,
        },
        "replicas": desired_replicas,
        "readyReplicas": ready,
        "ready": f"{ready}/{desired_replicas}",
        "conditions": conditions,
        "access": _access(dc.name, comp, children),
        "decommissioning": findings.draining.get(comp) or None,
        "observedGeneration": generation,
    }
    for key in ("coreConfigMapHashValue", "horizontalScaler"):
        if key in old:
            status[key] = old[key]
    return {k: v for k, v in status.items() if v is not None}


def cluster_status(
    dc: DorisCluster,
    components: dict[str, Obj],
    findings: Findings,
    old: Obj | None,
    now: str,
) -> Obj:
    generation = dc.metadata.generation
    old = old or {}

    def cond(comp_status: Obj, ctype: str) -> Obj:
        return next(c for c in comp_status["conditions"] if c["type"] == ctype)

    problems = list(findings.degraded.get("", []))
    for comp, st in components.items():
        degraded = cond(st, "Degraded")
        if degraded["status"] == "True":
            problems.append((degraded["reason"], f"{comp.upper()}: {degraded['message']}"))
    ready = (
        not problems
        and bool(components)
        and all(cond(s, "Ready")["status"] == "True" for s in components.values())
    )
    moving = [
        f"{comp.upper()}: {cond(s, 'Progressing')['message']}"
        for comp, s in components.items()
        if cond(s, "Progressing")["status"] == "True"
    ]
    conditions = [
        _condition(
            "Ready",
            ready,
            "ClusterReady" if ready else "ComponentsNotReady",
            ", ".join(f"{c.upper()} {s['ready']}" for c, s in components.items()),
            generation,
        ),
        _condition(
            "Progressing",
            bool(moving),
            "Reconciling" if moving else "Stable",
            "; ".join(moving),
            generation,
        ),
        _condition(
            "Degraded",
            bool(problems),
            problems[0][0] if problems else "AsExpected",
            "; ".join(m for _, m in problems),
            generation,
        ),
    ]
    status: Obj = {
        "phase": "Degraded" if problems else "Ready" if ready else "Progressing",
        "observedGeneration": generation,
        "conditions": _carry_times(conditions, old.get("conditions"), now),
    }
    for comp in ("fe", "be", "cn", "broker"):
        status[f"{comp}Status"] = components.get(comp)  # None removes a component that is gone
    return status


def without_times(status: Any) -> Any:
    """The status with its timestamps removed, to tell a real change from the passing of time."""
    if isinstance(status, dict):
        return {k: without_times(v) for k, v in status.items() if k != "lastTransitionTime"}
    if isinstance(status, list):
        return [without_times(v) for v in status]
    return status
