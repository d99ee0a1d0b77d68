"""Simulated ``/metrics`` of Doris FEs and BEs (Prometheus text format), following a SimCluster's state.

Names, labels and meanings are those of Doris's documentation page "Monitoring Metrics"
(apache/doris-website ``docs/admin-manual/maint-monitor/metrics.md``): FE process and JVM metrics on the
FE's ``http_port``, BE process and machine metrics on the BE's ``webserver_port``.  The GC row of that
page (``<GarbageCollector>``) is served as ``jvm_gc{name=<collector>, type="count"|"time"}``.

What follows the state (read through :meth:`SimCluster.show_frontends` / :meth:`show_backends` only):

* an FE or BE that is not alive answers nothing (:meth:`DorisMetrics.fe_text` returns None);
* only the master FE writes the edit log (``doris_fe_edit_log{type="write"}``: the master's timestamp
  record every 10 seconds, plus one per load transaction); the others replay it (``type="read"``);
* tablets per BE and the BE disks come from SHOW BACKENDS; tablets on a BE that is down count as
  unhealthy in the master's tablet checker, which runs every 20 seconds; tablets on decommissioning BEs
  are scheduled (``doris_fe_scheduled_tablet_num``);
* the workload (:class:`Workload`: queries/s, error share, load transactions/s, failure share, compaction
  score) is spread over the alive FEs and BEs and integrated into the counters, which only grow.

This module shares no code with the operator.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from .fe import SimCluster

TIMESTAMP_PERIOD = 10.0
"""The master FE writes a timestamp to the edit log every 10 seconds."""
TABLET_CHECK_PERIOD = 20.0
"""The master FE's tablet checker round."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GIB = 1 << 30


@dataclass
class Workload:
    qps: float = 20.0
    query_error_ratio: float = 0.01
    load_txn_per_second: float = 0.5
    load_failure_ratio: float = 0.02
    compaction_score: int = 15
    connections: int = 8
    heap_used_ratio: float = 0.45
    heap_max_bytes: int = 8 * GIB
    be_memory_bytes: int = 6 * GIB
    be_cores: int = 4
    be_cpu_busy: float = 0.3


_UNITS = {"TB": 1 << 40, "GB": 1 << 30, "MB": 1 << 20, "KB": 1 << 10, "B": 1, "": 1}


def parse_bytes(text: str) -> int:
    """SHOW BACKENDS capacities: ``"79.062 GB"``, ``"0.000 "``."""
    m = re.match(r"^\s*([0-9.]+)\s*([A-Z]*)\s*$", text or "")
    if not m:
        return 0
    return int(float(m.group(1)) * _UNITS.get(m.group(2), 1))


class _Counters:
    """Monotonic counters integrated from rates."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, ...], float] = {}

    def add(self, key: tuple[str, ...], amount: float) -> None:
        self.values[key] = self.values.get(key, 0.0) + max(amount, 0.0)

    def get(self, key: tuple[str, ...]) -> float:
        return self.values.get(key, 0.0)


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._typed: set[str] = set()

    def metric(self, metric: str, kind: str, value: float, **labels: str) -> None:
        name = metric
        family = re.sub(r"_(sum|count)$", "", name)
        if family in self._typed:
            pass
        elif name not in self._typed:
            self._typed.add(name)
            self.lines.append(f"# TYPE {name} {kind}")
        if labels:
            body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{body}}} {_num(value)}")
        else:
            self.lines.append(f"{name} {_num(value)}")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


class DorisMetrics:
    """The metrics of every FE and BE of one SimCluster.  Thread-safe."""

    def __init__(self, cluster: SimCluster, workload: Workload | None = None) -> None:
        self.cluster = cluster
        self.workload = workload or Workload()
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._started = cluster.clock.now()
        self._last = self._started

    # -- state ---------------------------------------------------------------------------------------

    def _frontends(self) -> list[dict[str, str]]:
        return [{k: str(v) for k, v in row.items()} for row in self.cluster.show_frontends().dicts()]

    def _backends(self) -> list[dict[str, str]]:
        return [{k: str(v) for k, v in row.items()} for row in self.cluster.show_backends().dicts()]

    def _advance(self, frontends: list[dict[str, str]], backends: list[dict[str, str]]) -> None:
        now = self.cluster.clock.now()
        dt = max(now - self._last, 0.0)
        self._last = now
        if dt == 0:
            return
        w = self.workload
        alive_fes = [f for f in frontends if f["Alive"] == "true"]
        master = [f for f in alive_fes if f["IsMaster"] == "true"]
        alive_bes = [b for b in backends if b["Alive"] == "true"]
        c = self._counters
        if alive_fes:
            share = dt / len(alive_fes)
            for fe in alive_fes:
                key = _fe_key(fe)
                c.add(("query_total", *key), w.qps * share)
                c.add(("query_err", *key), w.qps * w.query_error_ratio * share)
                c.add(("request_total", *key), w.qps * 1.2 * share)
                c.add(("gc_count", *key), 0.2 * dt)
                c.add(("gc_time", *key), 4.0 * dt)
        if master:
            key = _fe_key(master[0])
            writes = (1.0 / TIMESTAMP_PERIOD + w.load_txn_per_second) * dt
            c.add(("edit_log_write", *key), writes)
            c.add(("journal",), writes)
            c.add(("txn_begin", *key), w.load_txn_per_second * dt)
            c.add(("txn_failed", *key), w.load_txn_per_second * w.load_failure_ratio * dt)
            c.add(("txn_success", *key), w.load_txn_per_second * (1 - w.load_failure_ratio) * dt)
            c.add(("routine_rows", *key), w.load_txn_per_second * 1000 * dt)
            unhealthy = sum(int(b["TabletNum"] or 0) for b in backends if b["Alive"] != "true")
            c.add(
                ("tablets_checked", *key),
                sum(int(b["TabletNum"] or 0) for b in backends) * dt / TABLET_CHECK_PERIOD,
            )
            c.add(("tablets_unhealthy", *key), unhealthy * dt / TABLET_CHECK_PERIOD)
            for fe in alive_fes:
                if fe is not master[0]:
                    c.add(("edit_log_read", *_fe_key(fe)), writes)
        if alive_bes:
            share = dt / len(alive_bes)
            for be in alive_bes:
                key = _be_key(be)
                c.add(("load_rows", *key), w.load_txn_per_second * 1000 * share)
                c.add(("load_bytes", *key), w.load_txn_per_second * 100_000 * share)
                c.add(("stream_rows", *key), w.load_txn_per_second * 800 * share)
                c.add(("stream_bytes", *key), w.load_txn_per_second * 80_000 * share)
                c.add(("stream_begin", *key), w.load_txn_per_second * share)
                c.add(("stream_commit", *key), w.load_txn_per_second * (1 - w.load_failure_ratio) * share)
                c.add(("stream_rollback", *key), w.load_txn_per_second * w.load_failure_ratio * share)
                c.add(("scan_rows", *key), w.qps * 10_000 * share)
                c.add(("compaction_base", *key), 50_000 * dt)
                c.add(("compaction_cumulative", *key), 200_000 * dt)
                for cpu in range(w.be_cores):
                    c.add(("cpu_busy", *key, str(cpu)), 100 * w.be_cpu_busy * dt)
                    c.add(("cpu_idle", *key, str(cpu)), 100 * (1 - w.be_cpu_busy) * dt)

    # -- rendering -----------------------------------------------------------------------------------

    def fe_text(self, host: str, edit_log_port: int) -> str | None:
        """The FE's /metrics, or None when that FE is not running."""
        with self._lock:
            frontends = self._frontends()
            backends = self._backends()
            self._advance(frontends, backends)
            me = next((f for f in frontends if _fe_key(f) == (host, str(edit_log_port))), None)
            if me is None or me["Alive"] != "true":
                return None
            return self._render_fe(me, frontends, backends)

    def be_text(self, host: str, heartbeat_port: int) -> str | None:
        """The BE's /metrics, or None when that BE is not running."""
        with self._lock:
            frontends = self._frontends()
            backends = self._backends()
            self._advance(frontends, backends)
            me = next((b for b in backends if _be_key(b) == (host, str(heartbeat_port))), None)
            if me is None or me["Alive"] != "true":
                return None
            return self._render_be(me)

    def _render_fe(
        self, me: dict[str, str], frontends: list[dict[str, str]], backends: list[dict[str, str]]
    ) -> str:
        w, c, key = self.workload, self._counters, _fe_key(me)
        is_master = me["IsMaster"] == "true"
        alive = max(1, sum(1 for f in frontends if f["Alive"] == "true"))
        t = _Text()
        t.metric("doris_fe_connection_total", "gauge", w.connections)
        t.metric("doris_fe_qps", "gauge", w.qps / alive)
        t.metric("doris_fe_rps", "gauge", w.qps * 1.2 / alive)
        t.metric("doris_fe_query_err_rate", "gauge", w.qps * w.query_error_ratio / alive)
        t.metric("doris_fe_query_total", "counter", round(c.get(("query_total", *key))))
        t.metric("doris_fe_query_err", "counter", round(c.get(("query_err", *key))))
        t.metric("doris_fe_request_total", "counter", round(c.get(("request_total", *key))))
        for q, ms in (("0.75", 12), ("0.95", 40), ("0.98", 70), ("0.99", 120), ("0.999", 400)):
            t.metric("doris_fe_query_latency_ms", "summary", ms, quantile=q)
        t.metric("doris_fe_query_latency_ms_sum", "untyped", round(c.get(("query_total", *key)) * 15))
        t.metric("doris_fe_query_latency_ms_count", "untyped", round(c.get(("query_total", *key))))
        writes = c.get(("edit_log_write", *key))
        t.metric("doris_fe_edit_log", "counter", round(writes), type="write")
        t.metric("doris_fe_edit_log", "counter", round(c.get(("edit_log_read", *key))), type="read")
        t.metric("doris_fe_edit_log", "counter", round(writes) * 180, type="accumulated_bytes")
        t.metric("doris_fe_edit_log", "counter", 4096, type="current_bytes")
        t.metric("doris_fe_edit_log", "counter", 12, type="current")
        for q, ms in (("0.75", 1), ("0.95", 2), ("0.99", 4), ("0.999", 9)):
            t.metric("doris_fe_editlog_write_latency_ms", "summary", ms, quantile=q)
        t.metric("doris_fe_max_journal_id", "gauge", 1000 + round(c.get(("journal",))))
        t.metric("doris_fe_image_write", "counter", 1, type="success")
        t.metric("doris_fe_image_write", "counter", 0, type="failed")
        t.metric("doris_fe_report_queue_size", "gauge", 0)
        scores = [w.compaction_score for b in backends if b["Alive"] == "true"]
        t.metric("doris_fe_max_tablet_compaction_score", "gauge", max(scores, default=0))
        for b in backends:
            address = f"{b['Host']}:{b['HeartbeatPort']}"
            t.metric("doris_fe_tablet_num", "gauge", int(b["TabletNum"] or 0), backend=address)
            t.metric("doris_fe_tablet_max_compaction_score", "gauge", w.compaction_score, backend=address)
        scheduled = sum(int(b["TabletNum"] or 0) for b in backends if b["SystemDecommissioned"] == "true")
        t.metric("doris_fe_scheduled_tablet_num", "gauge", scheduled if is_master else 0)
        for kind, counter in (("total", "tablets_checked"), ("unhealthy", "tablets_unhealthy")):
            t.metric("doris_fe_tablet_status_count", "counter", round(c.get((counter, *key))), type=kind)
        for kind in ("begin", "success", "failed"):
            t.metric("doris_fe_txn_counter", "counter", round(c.get((f"txn_{kind}", *key))), type=kind)
        t.metric("doris_fe_txn_counter", "counter", 0, type="reject")
        running = round(w.load_txn_per_second * 2) if is_master else 0
        for state, value in (
            ("prepare", running),
            ("committed", 0),
            ("visible", round(c.get(("txn_success", *key)))),
        ):
            t.metric("doris_fe_txn_status", "gauge", value, type=state)
        for load_type in ("INSERT", "BROKER"):
            for state, value in (("LOADING", running if load_type == "INSERT" else 0), ("FINISHED", 0)):
                t.metric("doris_fe_job", "gauge", value, job="load", type=load_type, state=state)
        t.metric("doris_fe_routine_load_rows", "counter", round(c.get(("routine_rows", *key))))
        t.metric("doris_fe_routine_load_error_rows", "counter", 0)
        heap_used = int(w.heap_max_bytes * w.heap_used_ratio)
        for kind, value in (
            ("max", w.heap_max_bytes),
            ("committed", w.heap_max_bytes // 2),
            ("used", heap_used),
        ):
            t.metric("jvm_heap_size_bytes", "gauge", value, type=kind)
        t.metric("jvm_non_heap_size_bytes", "gauge", 256 << 20, type="used")
        t.metric("jvm_old_size_bytes", "gauge", heap_used * 2 // 3, type="used")
        t.metric("jvm_old_size_bytes", "gauge", w.heap_max_bytes, type="max")
        t.metric("jvm_young_size_bytes", "gauge", heap_used // 3, type="used")
        t.metric("jvm_thread", "gauge", 220, type="count")
        t.metric(
            "jvm_gc", "counter", round(c.get(("gc_count", *key))), name="G1 Young Generation", type="count"
        )
        t.metric(
            "jvm_gc", "counter", round(c.get(("gc_time", *key))), name="G1 Young Generation", type="time"
        )
        return t.render()

    def _render_be(self, me: dict[str, str]) -> str:
        w, c, key = self.workload, self._counters, _be_key(me)
        total = parse_bytes(me["TotalCapacity"])
        avail = parse_bytes(me["AvailCapacity"])
        used = parse_bytes(me["DataUsedCapacity"])
        path = "/opt/apache-doris/be/storage"
        t = _Text()
        t.metric("doris_be_disks_total_capacity", "gauge", total, path=path)
        t.metric("doris_be_disks_avail_capacity", "gauge", avail, path=path)
        t.metric("doris_be_disks_local_used_capacity", "gauge", used, path=path)
        t.metric("doris_be_disks_state", "gauge", 1, path=path)
        t.metric("doris_be_tablet_base_max_compaction_score", "gauge", max(1, w.compaction_score // 4))
        t.metric("doris_be_tablet_cumulative_max_compaction_score", "gauge", w.compaction_score)
        t.metric(
            "doris_be_compaction_bytes_total", "counter", round(c.get(("compaction_base", *key))), type="base"
        )
        t.metric(
            "doris_be_compaction_bytes_total",
            "counter",
            round(c.get(("compaction_cumulative", *key))),
            type="cumulative",
        )
        tablets = int(me["TabletNum"] or 0)
        t.metric("doris_be_all_rowsets_num", "gauge", tablets * 3)
        t.metric("doris_be_all_segments_num", "gauge", tablets * 4)
        t.metric("doris_be_memory_allocated_bytes", "gauge", w.be_memory_bytes)
        t.metric("doris_be_process_thread_num", "gauge", 900)
        t.metric("doris_be_fragment_instance_count", "gauge", round(w.qps / 10))
        t.metric("doris_be_load_channel_count", "gauge", round(w.load_txn_per_second * 2))
        t.metric("doris_be_query_scan_rows", "counter", round(c.get(("scan_rows", *key))))
        t.metric("doris_be_load_rows", "counter", round(c.get(("load_rows", *key))))
        t.metric("doris_be_load_bytes", "counter", round(c.get(("load_bytes", *key))))
        t.metric("doris_be_stream_load", "counter", round(c.get(("stream_rows", *key))), type="load_rows")
        t.metric(
            "doris_be_stream_load", "counter", round(c.get(("stream_bytes", *key))), type="receive_bytes"
        )
        for kind in ("begin", "commit", "rollback"):
            t.metric(
                "doris_be_stream_load_txn_request",
                "counter",
                round(c.get((f"stream_{kind}", *key))),
                type=kind,
            )
        for cpu in range(w.be_cores):
            device = f"cpu{cpu}"
            busy = c.get(("cpu_busy", *key, str(cpu)))
            for mode, share in (("user", 0.7), ("system", 0.3)):
                t.metric("doris_be_cpu", "counter", round(busy * share), device=device, mode=mode)
            t.metric(
                "doris_be_cpu",
                "counter",
                round(c.get(("cpu_idle", *key, str(cpu)))),
                device=device,
                mode="idle",
            )
        return t.render()


def _fe_key(fe: dict[str, str]) -> tuple[str, str]:
    return fe["Host"], fe["EditLogPort"]


def _be_key(be: dict[str, str]) -> tuple[str, str]:
    return be["Host"], be["HeartbeatPort"]


class MetricsHttpServer:
    """An HTTP server on 127.0.0.1 answering ``GET /metrics`` with ``render()`` (503 when it returns
    None: the process is down).  The FE's ``http_port`` in tests; BEs use :class:`BeWebServer`."""

    def __init__(self, render: Callable[[], str | None], host: str = "127.0.0.1", port: int = 0) -> None:
        self.render = render
        self.host = host
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.scrapes = 0

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_address[1])

    def start(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "Doris-FE-sim"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    body, code, ctype = b"Not Found\n", 404, "text/plain"
                else:
                    owner.scrapes += 1
                    text = owner.render()
                    if text is None:
                        body, code, ctype = b"unavailable\n", 503, "text/plain"
                    else:
                        body, code, ctype = text.encode(), 200, CONTENT_TYPE
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((self.host, self._requested_port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fe-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
