"""Pod-level API calls of fault recovery: the readiness-gate condition (pods/status), force deletion with
a uid precondition, and the claims of a pod on a lost node.  Every call is counted like :mod:`..k8s`, and
every write passes the leadership fence (:class:`..k8s.Fence`; the webhook's Kube has an open one)."""

from __future__ import annotations

import logging
from typing import Any

from lightkube import ApiError
from lightkube.resources.core_v1 import Node, PersistentVolume, PersistentVolumeClaim, Pod
from lightkube.types import PatchType

from ..k8s import Kube
from ..metrics import API_REQUESTS

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def _count(verb: str, kind: str) -> None:
    API_REQUESTS.labels(verb=verb, kind=kind).inc()


async def set_pod_condition(kube: Kube, name: str, namespace: str, condition: Obj) -> None:
    """Strategic-merge one condition (merged by type) into the pod's status; nothing else is touched."""
    kube.fence.check("patch", "Pod/status")
    _count("patch", "Pod/status")
    await kube.client.patch(
        Pod.Status,
        name,
        {"status": {"conditions": [condition]}},
        namespace=namespace,
        patch_type=PatchType.STRATEGIC,
    )


async def patch_pod_annotations(
    kube: Kube, name: str, namespace: str, annotations: dict[str, str | None]
) -> None:
    """Merge-patch annotations (None removes one)."""
    kube.fence.check("patch", "Pod")
    _count("patch", "Pod")
    await kube.client.patch(
        Pod, name, {"metadata": {"annotations": annotations}}, namespace=namespace, patch_type=PatchType.MERGE
    )


async def _delete_with_options(kube: Kube, res: Any, name: str, namespace: str, options: Obj) -> bool:
    """DELETE with a DeleteOptions body (lightkube's delete() sends none); False when it was gone or
    the precondition failed (someone else replaced it meanwhile)."""
    generic = kube.client._client
    request = generic.prepare_request("delete", res=res, name=name, namespace=namespace)
    request.data = {"apiVersion": "v1", "kind": "DeleteOptions", **options}
    response = await generic.send(generic.build_adapter_request(request))  # type: ignore[no-untyped-call]
    try:
        generic.raise_for_status(response)  # type: ignore[no-untyped-call]
    except ApiError as err:
        if err.status.code in (404, 409):
            return False
        raise
    return True


async def force_delete_pod(kube: Kube, name: str, namespace: str, uid: str) -> bool:
    """``kubectl delete --grace-period=0 --force`` for exactly this pod (uid precondition)."""
    kube.fence.check("delete", "Pod")
    _count("delete", "Pod")
    return await _delete_with_options(
        kube, Pod, name, namespace, {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
    )


async def delete_claim(kube: Kube, name: str, namespace: str, uid: str) -> bool:
    kube.fence.check("delete", "PersistentVolumeClaim")
    _count("delete", "PersistentVolumeClaim")
    return await _delete_with_options(
        kube, PersistentVolumeClaim, name, namespace, {"preconditions": {"uid": uid}}
    )


async def claim_nodes(kube: Kube, claims: list[str], namespace: str) -> dict[str, tuple[str, set[str]]]:
    """For each bound claim: (its uid, the nodes its volume is pinned to by node affinity on
    ``kubernetes.io/hostname``; empty when it is reachable from anywhere)."""
    out: dict[str, tuple[str, set[str]]] = {}
    for claim in claims:
        _count("get", "PersistentVolumeClaim")
        try:
            pvc = await kube.client.get(PersistentVolumeClaim, claim, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                continue
            raise
        uid = (pvc.metadata.uid if pvc.metadata else None) or ""
        volume = pvc.spec.volumeName if pvc.spec else None
        nodes: set[str] = set()
        if volume:
            _count("get", "PersistentVolume")
            try:
                pv = await kube.client.get(PersistentVolume, volume)
            except ApiError as err:
                if err.status.code != 404:
                    raise
            else:
                required = pv.spec.nodeAffinity.required if pv.spec and pv.spec.nodeAffinity else None
                for term in (required.nodeSelectorTerms if required else None) or []:
                    for expr in term.matchExpressions or []:
                        if expr.key == "kubernetes.io/hostname" and expr.operator == "In":
                            nodes.update(expr.values or [])
        out[claim] = (uid, nodes)
    return out


async def node_exists(kube: Kube, name: str) -> bool | None:
    """A live read for a node the cache does not hold (None: the apiserver did not say)."""
    _count("get", "Node")
    try:
        await kube.client.get(Node, name)
    except ApiError as err:
        if err.status.code == 404:
            return False
        return None
    return True
