"""kopf wiring, and nothing else: watches and in-memory indexes of the objects the operator reads,
each event waking the reconcile of the DorisCluster it belongs to.  Secrets are not watched (the operator
may not list them): the reconcile reads the few it needs by name."""

from __future__ import annotations

from typing import Any

import kopf

from .api import doriscluster as dc
from .api import dorisclusterautoscaler as dca
from .api import dorisinitializer as di
from .api import dorismonitor as dm
from .builders import names
from .reconcile.controller import Controller
from .reconcile.failover import trim_node
from .reconcile.observed import child_key, pod_key, trim_child, trim_pod, trim_resource

registry = kopf.OperatorRegistry()
MANAGED = {names.LABEL_MANAGED_BY: names.MANAGED_BY}


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.index(dc.GROUP, dc.VERSION, dc.PLURAL, registry=registry)
async def dc_clusters(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): trim_resource(body)}


def _child_index(body: kopf.Body) -> dict[Any, Any]:
    """An object whose owner label went (a hand edit) is indexed under no key: ``{}``, not None, which
    would leave its old entry in place (kopf keeps the last result of a handler returning None)."""
    key = child_key(body)
    return {key: trim_child(body)} if key else {}


@kopf.index("apps", "v1", "statefulsets", labels=MANAGED, registry=registry)
async def dc_statefulsets(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return _child_index(body)


@kopf.index("v1", "services", labels=MANAGED, registry=registry)
async def dc_services(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return _child_index(body)


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=MANAGED, registry=registry)
async def dc_disruption_budgets(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return _child_index(body)


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED, registry=registry)
async def dc_hpas(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return _child_index(body)


@kopf.index(dc.GROUP, dc.VERSION, dca.PLURAL, registry=registry)
async def dc_cluster_autoscalers(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any]:
    """DorisClusterAutoscalers by their DorisCluster's key."""
    cluster = (body.get("spec") or {}).get("cluster")
    if not cluster:
        return {}
    return {(namespace, cluster): trim_resource(body)}


@kopf.index("v1", "pods", labels={names.LABEL_CLUSTER: kopf.PRESENT}, registry=registry)
async def dc_pods(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    key = pod_key(body)
    return {key: trim_pod(body)} if key else {}


@kopf.on.event(dc.GROUP, dc.VERSION, dc.PLURAL, registry=registry)
async def cluster_event(type: str, namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    controller: Controller = memo["controller"]
    controller.attach({k: v for k, v in kwargs.items() if k.startswith("dc_")})
    key = (namespace or "default", name)
    if type == "DELETED":
        controller.forget(key)
    else:
        controller.enqueue(key)
    if "monitors" in memo:
        memo["monitors"].cluster_changed(key)
    if "initializers" in memo:
        memo["initializers"].wake_cluster(key)


@kopf.index(dc.GROUP, dc.VERSION, di.PLURAL, registry=registry)
async def dc_initializers(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    """(namespace, cluster) -> the DorisInitializers naming that DorisCluster."""
    return {(namespace, (body.get("spec") or {}).get("cluster")): name}


@kopf.on.event(dc.GROUP, dc.VERSION, di.PLURAL, registry=registry)
async def initializer_event(
    type: str, namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    initializers = memo["initializers"]
    initializers.attach({k: v for k, v in kwargs.items() if k.startswith("dc_")})
    key = (namespace or "default", name)
    if type == "DELETED":
        initializers.forget(key)
    else:
        initializers.enqueue(key)


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


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED, registry=registry)
async def hpa_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, child_key(body))


@kopf.on.event(dc.GROUP, dc.VERSION, dca.PLURAL, registry=registry)
async def cluster_autoscaler_event(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    cluster = (body.get("spec") or {}).get("cluster")
    if cluster:
        memo["autoscaler"].wake((namespace or "default", str(cluster)))


@kopf.on.event("v1", "pods", labels={names.LABEL_CLUSTER: kopf.PRESENT}, registry=registry)
async def pod_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, pod_key(body))


# DorisMonitor (reconcile/monitor.py): its own index and work loop; children are read live per reconcile.
@kopf.index(dc.GROUP, dc.VERSION, dm.PLURAL, registry=registry)
async def dmon_monitors(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): trim_resource(body)}


@kopf.on.event(dc.GROUP, dc.VERSION, dm.PLURAL, registry=registry)
async def monitor_event(type: str, namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    monitors = memo["monitors"]
    monitors.attach({k: v for k, v in kwargs.items() if k.startswith("dmon_")})
    key = (namespace or "default", name)
    if type == "DELETED":
        monitors.forget(key)
    else:
        monitors.enqueue(key)


@kopf.index("v1", "nodes", registry=registry)
async def dc_nodes(body: kopf.Body, name: str, **_: Any) -> dict[Any, Any]:
    """Cluster-scoped (watched even when the operator watches some namespaces): failover's view."""
    return {name: trim_node(body)}


@kopf.on.event("v1", "nodes", registry=registry)
async def node_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo["controller"].wake_node(body["metadata"]["name"])
