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
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import ConfigMap, Event, Pod, Secret, Service, ServiceAccount
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding
from lightkube.types import PatchType

from .api import doriscluster as dc
from .api import dorismonitor as dm
from .metrics import API_REQUESTS

FIELD_MANAGER = "doris-operator"
log = logging.getLogger(__name__)

DorisClusterResource = create_namespaced_resource(dc.GROUP, dc.VERSION, dc.KIND, dc.PLURAL)
DorisMonitorResource = create_namespaced_resource(dc.GROUP, dc.VERSION, dm.KIND, dm.PLURAL)
PodMonitorResource = create_namespaced_resource("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors")
PrometheusRuleResource = create_namespaced_resource(
    "monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules"
)

KINDS: dict[str, Any] = {
    "StatefulSet": StatefulSet,
    "Service": Service,
    "PodDisruptionBudget": PodDisruptionBudget,
    "Secret": Secret,
    "Pod": Pod,
    # DorisMonitor's children (reconcile/monitor.py)
    "ConfigMap": ConfigMap,
    "Deployment": Deployment,
    "ServiceAccount": ServiceAccount,
    "Role": Role,
    "RoleBinding": RoleBinding,
    "PodMonitor": PodMonitorResource,
    "PrometheusRule": PrometheusRuleResource,
    dm.KIND: DorisMonitorResource,
    dc.KIND: DorisClusterResource,
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
        self, name: str, namespace: str, status: dict[str, Any], kind: str = dc.KIND
    ) -> None:
        """Set the whole status (a JSON patch: nested fields no longer present go too)."""
        _count("patch", f"{kind}/status")
        await self.client.patch(
            KINDS[kind].Status,
            name,
            [{"op": "add", "path": "/status", "value": status}],
            namespace=namespace,
            patch_type=PatchType.JSON,
        )

    async def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """One object as stored, or None when it doesn't exist."""
        _count("get", kind)
        try:
            obj = await self.client.get(KINDS[kind], name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        return obj.to_dict()  # type: ignore[no-any-return]

    async def list_labelled(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The objects of ``kind`` in ``namespace`` carrying all ``labels``."""
        _count("list", kind)
        return [
            o.to_dict() async for o in self.client.list(KINDS[kind], namespace=namespace, labels=dict(labels))
        ]

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

    async def event(self, involved: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event on the DorisCluster (best effort: a failure is logged, never raised)."""
        now = dt.datetime.now(dt.UTC)
        meta = involved["metadata"]
        body = Event(
            metadata=ObjectMeta(generateName=f"{meta['name']}.", namespace=meta["namespace"]),
            involvedObject=ObjectReference(
                apiVersion=involved.get("apiVersion", dc.API_VERSION),
                kind=involved.get("kind", dc.KIND),
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
