"""The watches, and nothing else: which kinds the operator lists and watches (informers.py), the
in-memory indexes each fills, and whose work queue each change wakes.  Secrets are not watched (the
operator may not list them): the reconcile reads the few it needs by name."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .api import doriscluster as dc
from .api import dorisclusterautoscaler as dca
from .api import dorisinitializer as di
from .api import dorismonitor as dm
from .builders import monitor as mb
from .builders import names
from .informers import Index, IndexFn, Kind, Obj, Watch
from .k8s import KINDS
from .reconcile.autoscaler import AutoscalerLoop
from .reconcile.controller import Controller
from .reconcile.failover import trim_node
from .reconcile.initializer import InitializerController
from .reconcile.monitor import OPTIONAL_KINDS, OWNED_KINDS, MonitorController, child_entries, child_index
from .reconcile.observed import ClusterKey, child_key, pod_key, trim_child, trim_pod, trim_resource

MANAGED = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
SHARED_WATCHES = ("StatefulSet", "Service")
"""A DorisMonitor's children of these kinds carry the managed-by label too: the DorisClusters'
children's watches index them, no watch of their own."""
PODS = names.LABEL_CLUSTER
"""Pods with the cluster label, whoever made them (the selector "has the label")."""
INDEXES = (
    "dc_clusters",
    "dc_statefulsets",
    "dc_services",
    "dc_disruption_budgets",
    "dc_hpas",
    "dc_cluster_autoscalers",
    "dc_pods",
    "dc_initializers",
    "di_versions",
    "dmon_monitors",
    *(child_index(kind) for kind in OWNED_KINDS),
    "dc_nodes",
)


def _key(obj: Obj) -> ClusterKey:
    meta = obj["metadata"]
    return (meta.get("namespace") or "default", meta["name"])


def _resource(obj: Obj) -> Mapping[Hashable, Any]:
    meta = obj["metadata"]
    return {(meta.get("namespace"), meta["name"]): trim_resource(obj)}


def _child(obj: Obj) -> Mapping[Hashable, Any]:
    """An object whose owner label went (a hand edit) is indexed under no key."""
    key = child_key(obj)
    return {key: trim_child(obj)} if key else {}


def _pod(obj: Obj) -> Mapping[Hashable, Any]:
    key = pod_key(obj)
    return {key: trim_pod(obj)} if key else {}


def _cluster_of(obj: Obj) -> str | None:
    cluster = (obj.get("spec") or {}).get("cluster")
    return str(cluster) if cluster else None


def _autoscaler(obj: Obj) -> Mapping[Hashable, Any]:
    """DorisClusterAutoscalers by their DorisCluster's key."""
    cluster = _cluster_of(obj)
    return {(obj["metadata"].get("namespace"), cluster): trim_resource(obj)} if cluster else {}


def _initializer(obj: Obj) -> Mapping[Hashable, Any]:
    """(namespace, cluster) -> the names of the DorisInitializers naming that DorisCluster."""
    meta = obj["metadata"]
    return {(meta.get("namespace"), _cluster_of(obj)): meta["name"]}


def _version(obj: Obj) -> Mapping[Hashable, Any]:
    """(namespace, name) -> the DorisInitializer's resourceVersion as last watched: whether the body
    its controller last read or wrote is still the current one."""
    return {_key(obj): obj["metadata"].get("resourceVersion")}


def _ready_condition(obj: Obj) -> tuple[Any, ...]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return (c.get("status"), c.get("reason"), c.get("lastTransitionTime"))
    return ()


def _node(obj: Obj) -> Mapping[Hashable, Any]:
    """Cluster-scoped (watched even when the operator watches some namespaces): failover's view."""
    return {obj["metadata"]["name"]: trim_node(obj)}


def _forget_or_enqueue(queue: InitializerController | MonitorController, type: str, obj: Obj) -> None:
    if type == "DELETED":
        queue.forget(_key(obj))
    else:
        queue.enqueue(_key(obj))


@dataclass
class Wiring:
    controller: Controller
    initializers: InitializerController
    autoscaler: AutoscalerLoop
    monitors: MonitorController
    indexes: dict[str, Index] = field(default_factory=lambda: {name: Index() for name in INDEXES})
    node_ready: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Per node, its Ready condition as last handled, without the heartbeat time."""
    cluster_generations: dict[ClusterKey, Any] = field(default_factory=dict)
    """Per DorisCluster, its generation as last handled: what a DorisMonitor reads of it (the spec)."""
    autoscaler_generations: dict[tuple[str, str], Any] = field(default_factory=dict)
    """Per DorisClusterAutoscaler, its generation as last handled."""
    unserved: set[str] = field(default_factory=set)
    """The optional kinds (the Prometheus Operator's) the API server does not serve, as last listed."""

    def watches(self) -> list[Watch]:
        ix = self.indexes

        def crd(plural: str) -> Kind:
            return Kind(dc.GROUP, dc.VERSION, plural)

        def owned(group: str, version: str, plural: str, index: str, monitor_kind: str = "") -> Watch:
            kind = Kind(group, version, plural, selector=MANAGED)
            indexes: list[tuple[Index, IndexFn]] = [(ix[index], _child)]
            if monitor_kind:
                indexes.append((ix[child_index(monitor_kind)], child_entries(monitor_kind)))
            return Watch(kind, indexes, self.child_event)

        def monitor_child(kind: str) -> Watch:
            info = KINDS[kind]._api_info
            watched = Kind(info.resource.group, info.resource.version, info.plural, selector=mb.LABEL_MONITOR)
            served = self._served(kind) if kind in OPTIONAL_KINDS else None
            return Watch(
                watched, [(ix[child_index(kind)], child_entries(kind))], self.monitor_child_event, served
            )

        return [
            Watch(crd(dc.PLURAL), [(ix["dc_clusters"], _resource)], self.cluster_event),
            Watch(
                crd(di.PLURAL),
                [(ix["dc_initializers"], _initializer), (ix["di_versions"], _version)],
                self.initializer_event,
            ),
            Watch(crd(dm.PLURAL), [(ix["dmon_monitors"], _resource)], self.monitor_event),
            Watch(crd(dca.PLURAL), [(ix["dc_cluster_autoscalers"], _autoscaler)], self.autoscaler_event),
            owned("apps", "v1", "statefulsets", "dc_statefulsets", "StatefulSet"),
            owned("", "v1", "services", "dc_services", "Service"),
            owned("policy", "v1", "poddisruptionbudgets", "dc_disruption_budgets"),
            owned("autoscaling", "v2", "horizontalpodautoscalers", "dc_hpas"),
            Watch(Kind("", "v1", "pods", selector=PODS), [(ix["dc_pods"], _pod)], self.pod_event),
            Watch(Kind("", "v1", "nodes", namespaced=False), [(ix["dc_nodes"], _node)], self.node_event),
            *(monitor_child(kind) for kind in OWNED_KINDS if kind not in SHARED_WATCHES),
        ]

    def _served(self, kind: str) -> Callable[[bool], None]:
        def served(yes: bool) -> None:
            if yes:
                self.unserved.discard(kind)
            else:
                self.unserved.add(kind)

        return served

    def synced(self) -> None:
        """Every informer has its first listing: hand the indexes over and wake everything once."""
        self.controller.attach(self.indexes)
        self.initializers.attach(self.indexes)
        self.monitors.attach(self.indexes, self.unserved.copy)
        for key in list(self.indexes["dc_clusters"]):
            self.controller.enqueue(key)
        for (namespace, _), initializers in list(self.indexes["dc_initializers"].items()):
            for name in initializers:
                self.initializers.enqueue((namespace or "default", name))
        for key in list(self.indexes["dmon_monitors"]):
            self.monitors.enqueue((key[0] or "default", key[1]))
        self.autoscaler.wake(("", ""))

    async def cluster_event(self, type: str, obj: Obj) -> None:
        key = _key(obj)
        if type == "DELETED":
            self.controller.forget(key)
        elif not self.controller.ctx.memory.returned(obj):  # not the echo of its own status write
            self.controller.enqueue(key)
        generation = obj["metadata"].get("generation")
        if type != "MODIFIED" or self.cluster_generations.get(key) != generation:  # its spec, not status
            self.monitors.cluster_changed(key)
        if type == "DELETED":
            self.cluster_generations.pop(key, None)
        else:
            self.cluster_generations[key] = generation
        self.initializers.wake_cluster(key)

    async def initializer_event(self, type: str, obj: Obj) -> None:
        _forget_or_enqueue(self.initializers, type, obj)

    async def monitor_event(self, type: str, obj: Obj) -> None:
        if type != "DELETED" and self.monitors.ctx.memory.returned(obj):
            return  # the echo of its own status write
        _forget_or_enqueue(self.monitors, type, obj)

    async def autoscaler_event(self, type: str, obj: Obj) -> None:
        """A new, edited or deleted autoscaler is evaluated at once; a status change (its own write
        above all) waits for the pass: the index holds it."""
        meta = obj["metadata"]
        key, generation = (meta.get("namespace") or "default", meta["name"]), meta.get("generation")
        if type == "DELETED":
            self.autoscaler_generations.pop(key, None)
        elif self.autoscaler_generations.get(key) == generation:
            return
        else:
            self.autoscaler_generations[key] = generation
        cluster = _cluster_of(obj)
        if cluster:
            self.autoscaler.wake((key[0], cluster))

    async def child_event(self, type: str, obj: Obj) -> None:
        """A child changed or went: its cluster, unless the change only echoes the cluster's own apply
        (a StatefulSet's status, the pods, another's edit come at versions of their own)."""
        if type == "DELETED" or not self.controller.ctx.memory.returned(obj):
            self._wake(child_key(obj))
        self.monitors.child_changed(type, obj)

    async def monitor_child_event(self, type: str, obj: Obj) -> None:
        self.monitors.child_changed(type, obj)

    async def pod_event(self, type: str, obj: Obj) -> None:
        self._wake(pod_key(obj))

    def _wake(self, key: ClusterKey | None) -> None:
        if key is not None:
            self.controller.enqueue(key)

    async def node_event(self, type: str, obj: Obj) -> None:
        """A node's Ready condition changed, or the node went: the clusters with a pod on it.  A
        kubelet's status report that changes nothing the controller reads (heartbeat times, images,
        capacity) wakes nothing."""
        name = obj["metadata"]["name"]
        if type == "DELETED":
            self.node_ready.pop(name, None)
        else:
            ready = _ready_condition(obj)
            if self.node_ready.get(name) == ready:
                return
            self.node_ready[name] = ready
        self.controller.wake_node(name)
