"""kopf wiring, and nothing else: watches and in-memory indexes of the objects the operator reads,
each event waking the reconcile of the DorisCluster it belongs to."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from .api import doriscluster as dc
from .builders import names
from .reconcile.controller import Controller
from .reconcile.failover import trim_node
from .reconcile.observed import child_key, pod_key, trim_child, trim_pod

registry = kopf.OperatorRegistry()
MANAGED = {names.LABEL_MANAGED_BY: names.MANAGED_BY}


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.index(dc.GROUP, dc.VERSION, dc.PLURAL, registry=registry)
async def dc_clusters(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    fields = ("apiVersion", "kind", "metadata", "spec", "status")
    return {(namespace, name): {k: copy.deepcopy(body[k]) for k in fields if k in body}}


def _child_index(body: kopf.Body) -> dict[Any, Any] | None:
    key = child_key(body)
    return {key: trim_child(body)} if key else None


@kopf.index("apps", "v1", "statefulsets", labels=MANAGED, registry=registry)
async def dc_statefulsets(body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    return _child_index(body)


@kopf.index("v1", "services", labels=MANAGED, registry=registry)
async def dc_services(body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    return _child_index(body)


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=MANAGED, registry=registry)
async def dc_disruption_budgets(body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    return _child_index(body)


@kopf.index("v1", "secrets", labels=MANAGED, registry=registry)
async def dc_secrets(body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    return _child_index(body)


@kopf.index("v1", "pods", labels={names.LABEL_CLUSTER: kopf.PRESENT}, registry=registry)
async def dc_pods(body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    key = pod_key(body)
    return {key: trim_pod(body)} if key else None


@kopf.on.event(dc.GROUP, dc.VERSION, dc.PLURAL, registry=registry)
async def cluster_event(type: str, namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    controller: Controller = memo["controller"]
    controller.attach({k: v for k, v in kwargs.items() if k.startswith("dc_")})
    key = (namespace or "default", name)
    if type == "DELETED":
        controller.forget(key)
    else:
        controller.enqueue(key)


def _wake(memo: kopf.Memo, key: Any) -> None:
    if key is not None:
        memo["controller"].enqueue(key)


@kopf.on.event("apps", "v1", "statefulsets", labels=MANAGED, registry=registry)
async def statefulset_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, child_key(body))


@kopf.on.event("v1", "services", labels=MANAGED, registry=registry)
async def service_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, child_key(body))


@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED, registry=registry)
async def disruption_budget_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, child_key(body))


@kopf.on.event("v1", "secrets", labels=MANAGED, registry=registry)
async def secret_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, child_key(body))


@kopf.on.event("v1", "pods", labels={names.LABEL_CLUSTER: kopf.PRESENT}, registry=registry)
async def pod_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, pod_key(body))


@kopf.index("v1", "nodes", registry=registry)
async def dc_nodes(body: kopf.Body, name: str, **_: Any) -> dict[Any, Any]:
    """Cluster-scoped (watched even when the operator watches some namespaces): failover's view."""
    return {name: trim_node(body)}


@kopf.on.event("v1", "nodes", registry=registry)
async def node_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo["controller"].wake_node(body["metadata"]["name"])
