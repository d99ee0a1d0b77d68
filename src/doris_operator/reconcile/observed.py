"""What the operator keeps in memory of the objects it watches: trimmed copies, enough to compare with
the desired state and to compute status, without asking the API server."""

from __future__ import annotations

from typing import Any

from .. import jsoncodec
from ..builders import names

Obj = dict[str, Any]
ClusterKey = tuple[str, str]
APPLIED_HASH = "doris.apache.org/applied-hash"
ADOPTED_TEMPLATE = "doris.apache.org/adopted-template"
"""On a StatefulSet taken over from another operator: the digest of the pod template this operator
wanted when it took it over.  While that is still what it wants, the pods keep the template they run
(no restart); a change of the spec that changes the template rolls them onto the operator's own."""
_SKIPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
KEPT_PREFIX = "doris.apache.org/"
"""Annotations kept in the cache: the applied hash and the operator's recorded intent (reconcile.intent)."""


def _meta(body: Any, child: bool = False) -> Obj:
    meta = body["metadata"]
    annotations = meta.get("annotations") or {}
    out: Obj = {
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "labels": dict(meta.get("labels") or {}),
        # children: every annotation, so a hand-edited one shows as drift; pods: the applied hash and
        # the operator's recorded intent (reconcile.intent)
        "annotations": {
            k: v
            for k, v in annotations.items()
            if (child and k not in _SKIPPED_ANNOTATIONS) or k.startswith(KEPT_PREFIX)
        },
        "generation": meta.get("generation"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    if child:
        out["ownerReferences"] = [
            {k: r.get(k) for k in ("apiVersion", "kind", "name", "uid", "controller")}
            for r in meta.get("ownerReferences") or []
        ]
    if meta.get("deletionTimestamp"):
        out["deletionTimestamp"] = meta["deletionTimestamp"]
    return out


def trim_resource(body: Any) -> Obj:
    """A custom resource the operator reconciles (DorisCluster, DorisMonitor, DorisClusterAutoscaler), as
    its index keeps it: a copy of all it has but ``managedFields`` and kubectl's last-applied
    annotation (a second copy of the spec), which nothing reads from the cache."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    if any(k in _SKIPPED_ANNOTATIONS for k in meta.get("annotations") or ()):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k not in _SKIPPED_ANNOTATIONS}
    parts = {"metadata": meta, **{k: body[k] for k in ("spec", "status") if k in body}}
    out: Obj = {k: body[k] for k in ("apiVersion", "kind") if k in body}
    out.update(jsoncodec.copy(parts))  # JSON data: a deep copy, faster than copy.deepcopy
    return out


def trim_child(body: Any) -> Obj:
    """StatefulSets, Services, PodDisruptionBudgets and Secrets: from the caches (the ones the operator
    made), or read live when the caches miss one."""
    out: Obj = {"kind": body["kind"], "apiVersion": body["apiVersion"], "metadata": _meta(body, True)}
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
        "nodeName": (body.get("spec") or {}).get("nodeName"),
        "containersReady": conditions.get("ContainersReady") == "True",
        "gated": any(
            g.get("conditionType") == names.MEMBER_ALIVE
            for g in (body.get("spec") or {}).get("readinessGates") or []
        ),
        "memberAlive": conditions.get(names.MEMBER_ALIVE),
        "claims": [
            v["persistentVolumeClaim"]["claimName"]
            for v in (body.get("spec") or {}).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")
        ],
    }


def child_key(body: Any) -> ClusterKey | None:
    labels = body["metadata"].get("labels") or {}
    owner = labels.get(names.LABEL_OWNER)
    return (body["metadata"]["namespace"], owner) if owner else None


def pod_key(body: Any) -> ClusterKey | None:
    cluster = (body["metadata"].get("labels") or {}).get(names.LABEL_CLUSTER)
    return (body["metadata"]["namespace"], cluster) if cluster else None
