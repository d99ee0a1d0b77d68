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
