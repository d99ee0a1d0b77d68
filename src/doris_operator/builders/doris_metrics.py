"""The metric names our alerts and dashboards use, and where each comes from.  No I/O.

Doris's metrics are named only as Doris's own documentation names them: the page "Monitoring Metrics"
of the Doris docs (apache/doris-website, ``docs/admin-manual/maint-monitor/metrics.md``; FE process, JVM
and machine metrics, BE process and machine metrics).  Counters there carry no ``_total`` suffix unless
the name in the docs has one; quantile metrics (``doris_fe_query_latency_ms`` ...) are summaries with a
``quantile`` label.  One row of the docs names no metric (``<GarbageCollector>``, GC count and time):
the FE exposes it as ``jvm_gc`` with the collector in a ``name`` label and ``type`` = count|time.

``up`` is Prometheus's own (one per scrape target) and ``doris_operator_*`` are this operator's
(:mod:`doris_operator.metrics`).  tests/test_monitor_builders.py fails when a rule or a dashboard panel
uses a name that is not listed here.
"""

from __future__ import annotations

DOCS_SOURCE = "apache/doris-website docs/admin-manual/maint-monitor/metrics.md (Monitoring Metrics)"

FE_METRICS: frozenset[str] = frozenset(
    {
        "doris_fe_connection_total",
        "doris_fe_edit_log",
        "doris_fe_editlog_write_latency_ms",
        "doris_fe_image_write",
        "doris_fe_job",
        "doris_fe_max_journal_id",
        "doris_fe_max_tablet_compaction_score",
        "doris_fe_qps",
        "doris_fe_query_err",
        "doris_fe_query_err_rate",
        "doris_fe_query_latency_ms",
        "doris_fe_query_total",
        "doris_fe_report_queue_size",
        "doris_fe_request_total",
        "doris_fe_routine_load_error_rows",
        "doris_fe_routine_load_rows",
        "doris_fe_rps",
        "doris_fe_scheduled_tablet_num",
        "doris_fe_tablet_max_compaction_score",
        "doris_fe_tablet_num",
        "doris_fe_tablet_status_count",
        "doris_fe_txn_counter",
        "doris_fe_txn_status",
        "jvm_heap_size_bytes",
        "jvm_non_heap_size_bytes",
        "jvm_old_size_bytes",
        "jvm_young_size_bytes",
        "jvm_thread",
        "jvm_gc",
    }
)

BE_METRICS: frozenset[str] = frozenset(
    {
        "doris_be_all_rowsets_num",
        "doris_be_all_segments_num",
        "doris_be_compaction_bytes_total",
        "doris_be_cpu",
        "doris_be_disks_avail_capacity",
        "doris_be_disks_local_used_capacity",
        "doris_be_disks_state",
        "doris_be_disks_total_capacity",
        "doris_be_fragment_instance_count",
        "doris_be_load_bytes",
        "doris_be_load_channel_count",
        "doris_be_load_rows",
        "doris_be_memory_allocated_bytes",
        "doris_be_process_thread_num",
        "doris_be_query_scan_rows",
        "doris_be_stream_load",
        "doris_be_stream_load_txn_request",
        "doris_be_tablet_base_max_compaction_score",
        "doris_be_tablet_cumulative_max_compaction_score",
    }
)

PROMETHEUS_METRICS: frozenset[str] = frozenset({"up"})

OPERATOR_METRICS: frozenset[str] = frozenset(
    {
        "doris_operator_reconciles_total",
        "doris_operator_reconcile_duration_seconds_bucket",
        "doris_operator_api_requests_total",
        "doris_operator_clusters",
        "doris_operator_queue_depth",
        "doris_operator_leader",
        "doris_operator_decommission_tablets",
    }
)

KNOWN: frozenset[str] = FE_METRICS | BE_METRICS | PROMETHEUS_METRICS | OPERATOR_METRICS
