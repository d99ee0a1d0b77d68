# ruff: noqa: E501  (a table of panel queries: one panel per line reads best)
"""The Grafana dashboards of a DorisMonitor, built in code with grafana-foundation-sdk's typed builders
(never hand-written JSON).  No I/O.

Five dashboards: cluster overview, FE, BE, loads, and the operator.  Every query carries this cluster's
label matchers (see :mod:`.alerts` for the target labels); the datasource is a dashboard variable
(``${datasource}``, of type prometheus), so the same JSON works with Grafana's dashboard sidecar and
with the bundled Grafana (whose provisioned datasource is the default).  Metric names:
:mod:`.doris_metrics`.  The FE's ``doris_fe_job`` has a label ``job`` of its own, which Prometheus keeps
as ``exported_job`` (the target's ``job`` wins unless honor_labels).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from ..api.dorismonitor import DorisMonitor

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelDef:
    title: str
    unit: str
    queries: tuple[Query, ...]
    kind: Literal["timeseries", "stat"] = "timeseries"
    description: str = ""


@dataclass(frozen=True)
class DashboardDef:
    slug: str
    title: str
    panels: tuple[PanelDef, ...]


def _panels(dm: DorisMonitor) -> list[DashboardDef]:
    ns, c = dm.namespace, dm.spec.cluster
    s = f'namespace="{ns}", doris_cluster="{c}"'
    fe = f'{{{s}, component="fe"}}'
    be = f'{{{s}, component=~"be|cn"}}'
    any_ = f"{{{s}}}"
    op = f'{{doris_namespace="{ns}", doris_cluster="{c}"}}'

    def q(expr: str, legend: str = "") -> Query:
        return Query(expr, legend)

    overview = DashboardDef(
        "overview",
        f"Doris {ns}/{c}: overview",
        (
            PanelDef("FE up", "none", (q(f"sum(up{fe})", "up"),), "stat"),
            PanelDef("BE/CN up", "none", (q(f"sum(up{be})", "up"),), "stat"),
            PanelDef(
                "FE master writing",
                "none",
                (q(f'sum(rate(doris_fe_edit_log{{{s}, type="write"}}[5m]))', "edit log writes/s"),),
                "stat",
            ),
            PanelDef("Members up", "none", (q(f"up{any_}", "{{component}} {{pod}}"),)),
            PanelDef(
                "QPS",
                "reqps",
                (q(f"sum(doris_fe_qps{fe})", "queries/s"), q(f"sum(doris_fe_rps{fe})", "requests/s")),
            ),
            PanelDef(
                "Query latency p99",
                "ms",
                (q(f'max by (pod) (doris_fe_query_latency_ms{{{s}, quantile="0.99"}})', "{{pod}}"),),
            ),
            PanelDef(
                "Query errors",
                "percentunit",
                (
                    q(
                        f"sum(rate(doris_fe_query_err{fe}[5m])) / sum(rate(doris_fe_query_total{fe}[5m]))",
                        "error ratio",
                    ),
                ),
            ),
            PanelDef(
                "Query errors/s", "short", (q(f"sum by (pod) (doris_fe_query_err_rate{fe})", "{{pod}}"),)
            ),
        ),
    )
    fe_dash = DashboardDef(
        "fe",
        f"Doris {ns}/{c}: FE",
        (
            PanelDef(
                "JVM heap used",
                "bytes",
                (
                    q(f'jvm_heap_size_bytes{{{s}, type="used"}}', "{{pod}} used"),
                    q(f'jvm_heap_size_bytes{{{s}, type="max"}}', "{{pod}} max"),
                ),
            ),
            PanelDef(
                "JVM heap used %",
                "percentunit",
                (
                    q(
                        f'jvm_heap_size_bytes{{{s}, type="used"}} / ignoring(type) jvm_heap_size_bytes{{{s}, type="max"}}',
                        "{{pod}}",
                    ),
                ),
            ),
            PanelDef(
                "JVM old generation", "bytes", (q(f'jvm_old_size_bytes{{{s}, type="used"}}', "{{pod}}"),)
            ),
            PanelDef(
                "GC count/s",
                "short",
                (q(f'sum by (pod, name) (rate(jvm_gc{{{s}, type="count"}}[5m]))', "{{pod}} {{name}}"),),
            ),
            PanelDef(
                "GC time",
                "ms",
                (q(f'sum by (pod, name) (rate(jvm_gc{{{s}, type="time"}}[5m]))', "{{pod}} {{name}}"),),
            ),
            PanelDef("JVM threads", "short", (q(f'jvm_thread{{{s}, type="count"}}', "{{pod}}"),)),
            PanelDef(
                "Edit log writes/s",
                "short",
                (q(f'rate(doris_fe_edit_log{{{s}, type="write"}}[5m])', "{{pod}}"),),
            ),
            PanelDef(
                "Edit log reads/s",
                "short",
                (q(f'rate(doris_fe_edit_log{{{s}, type="read"}}[5m])', "{{pod}}"),),
            ),
            PanelDef(
                "Edit log write latency p99",
                "ms",
                (q(f'doris_fe_editlog_write_latency_ms{{{s}, quantile="0.99"}}', "{{pod}}"),),
            ),
            PanelDef("Max journal id", "none", (q(f"doris_fe_max_journal_id{fe}", "{{pod}}"),)),
            PanelDef("Connections", "short", (q(f"doris_fe_connection_total{fe}", "{{pod}}"),)),
            PanelDef("Report queue", "short", (q(f"doris_fe_report_queue_size{fe}", "{{pod}}"),)),
        ),
    )
    be_dash = DashboardDef(
        "be",
        f"Doris {ns}/{c}: BE",
        (
            PanelDef(
                "CPU busy",
                "percentunit",
                (
                    q(
                        f'1 - sum by (pod) (rate(doris_be_cpu{{{s}, mode="idle"}}[5m])) / sum by (pod) (rate(doris_be_cpu{be}[5m]))',
                        "{{pod}}",
                    ),
                ),
            ),
            PanelDef("Memory allocated", "bytes", (q(f"doris_be_memory_allocated_bytes{be}", "{{pod}}"),)),
            PanelDef(
                "Disk used %",
                "percentunit",
                (
                    q(
                        f"1 - doris_be_disks_avail_capacity{be} / doris_be_disks_total_capacity{be}",
                        "{{pod}} {{path}}",
                    ),
                ),
            ),
            PanelDef(
                "Data on disk", "bytes", (q(f"doris_be_disks_local_used_capacity{be}", "{{pod}} {{path}}"),)
            ),
            PanelDef("Disk state", "none", (q(f"doris_be_disks_state{be}", "{{pod}} {{path}}"),)),
            PanelDef(
                "Compaction score",
                "none",
                (
                    q(f"doris_be_tablet_cumulative_max_compaction_score{be}", "{{pod}} cumulative"),
                    q(f"doris_be_tablet_base_max_compaction_score{be}", "{{pod}} base"),
                ),
            ),
            PanelDef(
                "Compaction bytes/s",
                "Bps",
                (
                    q(
                        f"sum by (pod, type) (rate(doris_be_compaction_bytes_total{be}[5m]))",
                        "{{pod}} {{type}}",
                    ),
                ),
            ),
            PanelDef("Tablets per BE", "short", (q(f"doris_fe_tablet_num{fe}", "{{backend}} (by {{pod}})"),)),
            PanelDef(
                "Rowsets / segments",
                "short",
                (
                    q(f"doris_be_all_rowsets_num{be}", "{{pod}} rowsets"),
                    q(f"doris_be_all_segments_num{be}", "{{pod}} segments"),
                ),
            ),
            PanelDef("Threads", "short", (q(f"doris_be_process_thread_num{be}", "{{pod}}"),)),
            PanelDef("Fragment instances", "short", (q(f"doris_be_fragment_instance_count{be}", "{{pod}}"),)),
            PanelDef(
                "Rows scanned/s",
                "short",
                (q(f"sum by (pod) (rate(doris_be_query_scan_rows{be}[5m]))", "{{pod}}"),),
            ),
        ),
    )
    loads = DashboardDef(
        "loads",
        f"Doris {ns}/{c}: loads",
        (
            PanelDef(
                "Load transactions/s",
                "short",
                (q(f"sum by (type) (rate(doris_fe_txn_counter{fe}[5m]))", "{{type}}"),),
            ),
            PanelDef(
                "Transactions by state", "short", (q(f"sum by (type) (doris_fe_txn_status{fe})", "{{type}}"),)
            ),
            PanelDef(
                "Load jobs",
                "short",
                (
                    q(
                        f'sum by (type, state) (doris_fe_job{{{s}, exported_job="load"}})',
                        "{{type}} {{state}}",
                    ),
                ),
            ),
            PanelDef(
                "Stream load rows/s",
                "short",
                (q(f'sum by (pod) (rate(doris_be_stream_load{{{s}, type="load_rows"}}[5m]))', "{{pod}}"),),
            ),
            PanelDef(
                "Stream load bytes/s",
                "Bps",
                (
                    q(
                        f'sum by (pod) (rate(doris_be_stream_load{{{s}, type="receive_bytes"}}[5m]))',
                        "{{pod}}",
                    ),
                ),
            ),
            PanelDef(
                "Stream load transactions/s",
                "short",
                (q(f"sum by (type) (rate(doris_be_stream_load_txn_request{be}[5m]))", "{{type}}"),),
            ),
            PanelDef(
                "Rows written (tablet sink)/s",
                "short",
                (q(f"sum by (pod) (rate(doris_be_load_rows{be}[5m]))", "{{pod}}"),),
            ),
            PanelDef(
                "Bytes written (tablet sink)/s",
                "Bps",
                (q(f"sum by (pod) (rate(doris_be_load_bytes{be}[5m]))", "{{pod}}"),),
            ),
            PanelDef("Load channels", "short", (q(f"doris_be_load_channel_count{be}", "{{pod}}"),)),
            PanelDef(
                "Routine load rows/s",
                "short",
                (
                    q(f"sum(rate(doris_fe_routine_load_rows{fe}[5m]))", "rows"),
                    q(f"sum(rate(doris_fe_routine_load_error_rows{fe}[5m]))", "error rows"),
                ),
            ),
        ),
    )
    operator = DashboardDef(
        "operator",
        f"Doris {ns}/{c}: operator",
        (
            PanelDef(
                "Reconciles/s",
                "short",
                (q("sum by (result) (rate(doris_operator_reconciles_total[5m]))", "{{result}}"),),
            ),
            PanelDef(
                "Reconcile duration p99",
                "s",
                (
                    q(
                        "histogram_quantile(0.99, sum by (le) (rate(doris_operator_reconcile_duration_seconds_bucket[5m])))",
                        "p99",
                    ),
                ),
            ),
            PanelDef(
                "API requests/s",
                "short",
                (q("sum by (verb) (rate(doris_operator_api_requests_total[5m]))", "{{verb}}"),),
            ),
            PanelDef("Queue depth", "short", (q("max(doris_operator_queue_depth)", "queued"),)),
            PanelDef(
                "Clusters by phase", "short", (q("max by (phase) (doris_operator_clusters)", "{{phase}}"),)
            ),
            PanelDef("Leader", "none", (q("max(doris_operator_leader)", "leader"),), "stat"),
            PanelDef(
                "Decommissioning tablets",
                "short",
                (q(f"doris_operator_decommission_tablets{op}", "{{be_pod}}"),),
            ),
        ),
    )
    return [overview, fe_dash, be_dash, loads, operator]


def definitions(dm: DorisMonitor) -> list[DashboardDef]:
    return _panels(dm)


def _panel(p: PanelDef, x: int, y: int) -> Any:
    builder: Any = stat.Panel() if p.kind == "stat" else timeseries.Panel()
    width = 8 if p.kind == "stat" else 12
    builder = builder.title(p.title).unit(p.unit).datasource(DATASOURCE).height(4 if p.kind == "stat" else 8)
    builder = builder.span(width)
    if p.description:
        builder = builder.description(p.description)
    for i, query in enumerate(p.queries):
        target = prometheus.Dataquery().expr(query.expr).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
        if query.legend:
            target = target.legend_format(query.legend)
        builder = builder.with_target(target)
    return builder


def uid(dm: DorisMonitor, slug: str) -> str:
    return _uid(dm.namespace, dm.spec.cluster, slug)


def _uid(namespace: str, cluster: str, slug: str) -> str:
    raw = f"doris-{namespace}-{cluster}-{slug}"
    return re.sub(r"[^a-zA-Z0-9_-]", "-", raw)[:40]


def build_dashboard(dm: DorisMonitor, d: DashboardDef) -> dict[str, Any]:
    builder = (
        dashboard.Dashboard(d.title)
        .uid(uid(dm, d.slug))
        .tags(["doris", dm.spec.cluster])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .editable()
        .with_variable(dashboard.DatasourceVariable("datasource").label("Datasource").type("prometheus"))
    )
    for i, p in enumerate(d.panels):
        builder = builder.with_panel(_panel(p, (i % 2) * 12, (i // 2) * 8))
    encoded: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))
    return encoded


def dashboards(dm: DorisMonitor) -> dict[str, dict[str, Any]]:
    """File name (``doris-<slug>.json``) -> dashboard model."""
    return {f"doris-{d.slug}.json": build_dashboard(dm, d) for d in definitions(dm)}


def queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of a dashboard model."""
    out: list[tuple[str, str]] = []
    for panel in model.get("panels") or []:
        for target in panel.get("targets") or []:
            if target.get("expr"):
                out.append((str(panel.get("title", "")), str(target["expr"])))
    return out


_NS, _CLUSTER = "nstoken7q3x", "cltoken7q3x"
"""The namespace and cluster of :func:`_template`: in no dashboard text but where they are put."""


@functools.cache
def _template() -> dict[str, str]:
    dm = DorisMonitor.model_validate(
        {"metadata": {"name": "m", "namespace": _NS}, "spec": {"cluster": _CLUSTER}}
    )
    return {
        file: json.dumps(model, sort_keys=True, separators=(",", ":"))
        for file, model in dashboards(dm).items()
    }


def texts(dm: DorisMonitor) -> dict[str, str]:
    """File name -> the JSON of :func:`dashboards` (keys sorted, compact), without building them: the
    dashboards differ between clusters only by the namespace and cluster, which are put into the texts
    of one build (building them was 12% of the operator's CPU converging 200 DorisMonitors)."""
    ns, cluster = dm.namespace, dm.spec.cluster
    out: dict[str, str] = {}
    for file, text in _template().items():
        slug = file.removeprefix("doris-").removesuffix(".json")
        text = text.replace(json.dumps(_uid(_NS, _CLUSTER, slug)), json.dumps(_uid(ns, cluster, slug)))
        out[file] = text.replace(_NS, ns).replace(_CLUSTER, cluster)
    return out
