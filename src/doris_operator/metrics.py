"""Operator metrics in Prometheus format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter("doris_operator_reconciles", "Reconciles run, by result", ["result"], registry=REGISTRY)
RECONCILE_ERRORS = Counter(
    "doris_operator_reconcile_errors", "Reconciles that failed with an error", ["reason"], registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "doris_operator_reconcile_duration_seconds",
    "Time one reconcile took",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "doris_operator_api_requests",
    "Kubernetes API requests the reconciler sent (watches excluded), by verb and kind",
    ["verb", "kind"],
    registry=REGISTRY,
)
CLUSTERS = Gauge("doris_operator_clusters", "DorisClusters by phase", ["phase"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("doris_operator_queue_depth", "Clusters waiting to be reconciled", registry=REGISTRY)
LEADER = Gauge("doris_operator_leader", "1 while this replica is the leader", registry=REGISTRY)

READ_VERBS = frozenset({"get", "list"})
FENCED_WRITES = Counter(
    "doris_operator_fenced_writes",
    "Writes refused because this replica's leadership had lapsed (renew deadline passed), by verb and kind",
    ["verb", "kind"],
    registry=REGISTRY,
)

MONITORS = Gauge("doris_operator_monitors", "DorisMonitors by phase", ["phase"], registry=REGISTRY)
DECOMMISSION_TABLETS = Gauge(
    "doris_operator_decommission_tablets",
    "Tablets still on a BE or CN being decommissioned for a scale-in, by pod (the DorisDecommissionStuck "
    "alert watches it move)",
    ["doris_namespace", "doris_cluster", "component", "be_pod"],
    registry=REGISTRY,
)
_DRAINING: dict[tuple[str, str], set[tuple[str, str, str, str]]] = {}

# Series that exist from the start, so that rate() over them answers 0 rather than nothing.
for _result in ("changed", "unchanged", "error"):
    RECONCILES.labels(result=_result)
for _phase in ("Ready", "Progressing", "Degraded", "Paused"):
    CLUSTERS.labels(phase=_phase)


def export_draining(namespace: str, cluster: str, draining: dict[str, dict[str, int]]) -> None:
    """Set the tablets left per draining pod of one cluster (``{component: {pod: tablets}}``); pods no
    longer draining lose their series."""
    current = {
        (namespace, cluster, comp, pod): tablets
        for comp, pods in draining.items()
        for pod, tablets in pods.items()
    }
    for gone in _DRAINING.get((namespace, cluster), set()) - set(current):
        DECOMMISSION_TABLETS.remove(*gone)
    for labels, tablets in current.items():
        DECOMMISSION_TABLETS.labels(*labels).set(tablets)
    _DRAINING[(namespace, cluster)] = set(current)
