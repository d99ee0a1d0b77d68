"""The operator's own Kubernetes API calls (lightkube, async): server-side apply with one field
manager, deletes, status patches, Events.  Every call is counted in :data:`metrics.API_REQUESTS`."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import ConfigMap, Event, Pod, Secret, Service
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from .api import doriscluster as dc
from .api import dorisclusterautoscaler as dca
from .api import dorisinitializer as di
from .metrics import API_REQUESTS

FIELD_MANAGER = "doris-operator"
log = logging.getLogger(__name__)

DorisClusterResource = create_namespaced_resource(dc.GROUP, dc.VERSION, dc.KIND, dc.PLURAL)
DorisClusterAutoscalerResource = create_namespaced_resource(dc.GROUP, dc.VERSION, dca.KIND, dca.PLURAL)
PodMetrics = create_namespaced_resource("metrics.k8s.io", "v1beta1", "PodMetrics", "pods")
DorisInitializerResource = create_namespaced_resource(dc.GROUP, dc.VERSION, di.KIND, di.PLURAL)

KINDS: dict[str, Any] = {
    "StatefulSet": StatefulSet,
    "Service": Service,
    "PodDisruptionBudget": PodDisruptionBudget,
    "HorizontalPodAutoscaler": HorizontalPodAutoscaler,
    "Secret": Secret,
    "Pod": Pod,
}


def _count(verb: str, kind: str) -> None:
    API_REQUESTS.labels(verb=verb, kind=kind).inc()


class Kube:
    """A thin, counted wrapper around lightkube's AsyncClient."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply; returns the object as stored."""
        kind = obj["kind"]
        _count("apply", kind)
        result = await self.client.patch(
            KINDS[kind],
            obj["metadata"]["name"],
            obj,
            namespace=obj["metadata"]["namespace"],
            patch_type=PatchType.APPLY,
            field_manager=FIELD_MANAGER,
            force=True,
        )
        return result.to_dict()  # type: ignore[no-any-return]

    async def delete(self, kind: str, name: str, namespace: str) -> None:
        _count("delete", kind)
        try:
            await self.client.delete(KINDS[kind], name, namespace=namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise

    async def config_map(self, name: str, namespace: str) -> dict[str, str] | None:
        _count("get", "ConfigMap")
        try:
            cm = await self.client.get(ConfigMap, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        return dict(cm.data or {})

    async def get_object(self, kind: str | Any, name: str, namespace: str) -> dict[str, Any] | None:
        """One object by name (GET, a live read), or None when it doesn't exist: ``kind`` is a name in
        :data:`KINDS` or a lightkube resource (a custom resource)."""
        resource = KINDS[kind] if isinstance(kind, str) else kind
        _count("get", kind if isinstance(kind, str) else resource.__name__)
        try:
            obj = await self.client.get(resource, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        out: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        if isinstance(kind, str):
            out.setdefault("kind", kind)
            out.setdefault("apiVersion", "v1" if kind in ("Secret", "Service", "Pod") else "")
        return out

    async def secret_exists(self, name: str, namespace: str) -> bool:
        _count("get", "Secret")
        try:
            await self.client.get(Secret, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return False
            raise
        return True

    async def patch_status(
        self, name: str, namespace: str, status: dict[str, Any], resource: Any = DorisClusterResource
    ) -> None:
        """Set the whole status (a JSON patch: nested fields no longer present go too)."""
        _count("patch", f"{resource.__name__}/status")
        await self.client.patch(
            resource.Status,
            name,
            [{"op": "add", "path": "/status", "value": status}],
            namespace=namespace,
            patch_type=PatchType.JSON,
        )

    async def patch_autoscaler_status(self, name: str, namespace: str, status: dict[str, Any]) -> None:
        _count("patch", "DorisClusterAutoscaler/status")
        await self.client.patch(
            DorisClusterAutoscalerResource.Status,
            name,
            [{"op": "add", "path": "/status", "value": status}],
            namespace=namespace,
            patch_type=PatchType.JSON,
        )

    async def apply_cluster_replicas(
        self, name: str, namespace: str, replicas: dict[str, int], field_manager: str
    ) -> None:
        """Server-side apply of only ``spec.<comp>Spec.replicas`` under ``field_manager`` (the
        autoscaler's own, so it owns just those fields)."""
        _count("apply", "DorisCluster")
        body = {
            "apiVersion": dc.API_VERSION,
            "kind": dc.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {comp: {"replicas": n} for comp, n in replicas.items()},
        }
        await self.client.patch(
            DorisClusterResource,
            name,
            body,
            namespace=namespace,
            patch_type=PatchType.APPLY,
            field_manager=field_manager,
            force=True,
        )

    async def pod_metrics(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """metrics.k8s.io PodMetrics of the pods with ``labels`` (an aggregated API: metrics-server)."""
        _count("list", "PodMetrics")
        selector: dict[str, Any] = dict(labels)
        listing = self.client.list(PodMetrics, namespace=namespace, labels=selector)
        return [dict(item.to_dict()) async for item in listing]  # type: ignore[no-untyped-call]

    async def secret_data(self, name: str, namespace: str) -> dict[str, str] | None:
        """A Secret's data (base64), or None when it doesn't exist.  Never logged."""
        _count("get", "Secret")
        try:
            secret = await self.client.get(Secret, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        return dict(secret.data or {})

    async def secret(self, name: str, namespace: str) -> dict[str, Any] | None:
        """A Secret's resourceVersion and data (base64), or None when it doesn't exist.  Never logged."""
        _count("get", "Secret")
        try:
            secret = await self.client.get(Secret, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        meta = secret.metadata
        return {
            "metadata": {"resourceVersion": meta.resourceVersion if meta else None},
            "data": dict(secret.data or {}),
        }

    async def event(self, involved: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event on the DorisCluster, or on the resource ``involved`` names by apiVersion and
        kind (best effort: a failure is logged, never raised)."""
        now = dt.datetime.now(dt.UTC)
        meta = involved["metadata"]
        body = Event(
            metadata=ObjectMeta(generateName=f"{meta['name']}.", namespace=meta["namespace"]),
            involvedObject=ObjectReference(
                apiVersion=involved.get("apiVersion") or dc.API_VERSION,
                kind=involved.get("kind") or dc.KIND,
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
            ),
            type=event_type,
            reason=reason,
            message=message[:1024],
            source=EventSource(component=FIELD_MANAGER),
            firstTimestamp=now,
            lastTimestamp=now,
            count=1,
            reportingComponent=FIELD_MANAGER,
        )
        _count("create", "Event")
        try:
            await self.client.create(body)
        except ApiError as err:
            log.warning("could not record event %s/%s: %s", reason, meta["name"], err.status.message)
