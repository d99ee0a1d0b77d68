"""What the operator keeps in memory of the objects it watches: trimmed copies, enough to compare with
the desired state and to compute status, without asking the API server."""

from __future__ import annotations

from typing import Any

from ..builders import names

Obj = dict[str, Any]
ClusterKey = tuple[str, str]
APPLIED_HASH = "doris.apache.org/applied-hash"


def _meta(body: Any) -> Obj:
    meta = body["metadata"]
    out: Obj = {
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "labels": dict(meta.get("labels") or {}),
        "annotations": {k: v for k, v in (meta.get("annotations") or {}).items() if k == APPLIED_HASH},
        "generation": meta.get("generation"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    if meta.get("deletionTimestamp"):
        out["deletionTimestamp"] = meta["deletionTimestamp"]
    return out


def trim_child(body: Any) -> Obj:
    """StatefulSets, Services, PodDisruptionBudgets and Secrets the operator made."""
    out: Obj = {"kind": body["kind"], "apiVersion": body["apiVersion"], "metadata": _meta(body)}
    spec = body.get("spec") or {}
    if body["kind"] == "StatefulSet":
        out["spec"] = {
            "replicas": spec.get("replicas"),
            "volumeClaimTemplates": [dict(v) for v in spec.get("volumeClaimTemplates") or []],
            "updateStrategy": dict(spec.get("updateStrategy") or {}),
            "replicasManagers": replicas_managers(body),
        }
        out["status"] = dict(body.get("status") or {})
    elif body["kind"] == "Service":
        out["spec"] = {
            "type": spec.get("type"),
            "clusterIP": spec.get("clusterIP"),
            "ports": [dict(p) for p in spec.get("ports") or []],
        }
        out["status"] = dict(body.get("status") or {})
    return out


def replicas_managers(body: Any) -> list[str]:
    """The field managers that own ``spec.replicas`` (an HPA's writes through the scale subresource
    show up here as kube-controller-manager's)."""
    out = []
    for entry in body["metadata"].get("managedFields") or []:
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:replicas" in fields and entry.get("manager"):
            out.append(str(entry["manager"]))
    return out


def trim_pod(body: Any) -> Obj:
    status = body.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    unschedulable = next(
        (
            c.get("message") or "unschedulable"
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "False"
        ),
        None,
    )
    waiting = [
        (cs.get("state") or {}).get("waiting", {}).get("reason")
        for cs in status.get("containerStatuses") or []
        if (cs.get("state") or {}).get("waiting")
    ]
    return {
        "metadata": _meta(body),
        "phase": status.get("phase"),
        "ready": conditions.get("Ready") == "True",
        "unschedulable": unschedulable,
        "reason": status.get("reason") or next((w for w in waiting if w), None),
        "message": status.get("message"),
        "revision": (body["metadata"].get("labels") or {}).get("controller-revision-hash"),
        "podIP": status.get("podIP"),
    }


def child_key(body: Any) -> ClusterKey | None:
    labels = body["metadata"].get("labels") or {}
    owner = labels.get(names.LABEL_OWNER)
    return (body["metadata"]["namespace"], owner) if owner else None


def pod_key(body: Any) -> ClusterKey | None:
    cluster = (body["metadata"].get("labels") or {}).get(names.LABEL_CLUSTER)
    return (body["metadata"]["namespace"], cluster) if cluster else None
