"""The simulated FE/BE /metrics follow the simulated cluster (doris_sim.metrics), under Doris's
documented metric names, and are served over HTTP on 127.0.0.1."""

from __future__ import annotations

import urllib.request

from doris_sim.be_http import BeWebServer
from doris_sim.fe import ManualClock, SimCluster
from doris_sim.metrics import DorisMetrics, MetricsHttpServer, Workload, parse_bytes


def sample(text: str | None, series: str) -> float:
    assert text is not None
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in\n{text}")


def setup() -> tuple[SimCluster, ManualClock, DorisMetrics]:
    clock = ManualClock()
    sim = SimCluster(clock=clock, master_host="fe-0", master_edit_log_port=9010)
    sim.register_frontend("fe-1", 9010)
    for i in range(3):
        sim.register_backend(f"be-{i}", 9050, tablets=100)
    return sim, clock, DorisMetrics(sim, Workload(qps=10, query_error_ratio=0.1, load_txn_per_second=1))


def test_only_the_master_writes_the_edit_log() -> None:
    sim, clock, m = setup()
    m.fe_text("fe-0", 9010)
    clock.advance(100)
    master, follower = m.fe_text("fe-0", 9010), m.fe_text("fe-1", 9010)
    writes = sample(master, 'doris_fe_edit_log{type="write"}')
    assert writes == 110  # a timestamp every 10 s and one record per load transaction
    assert sample(follower, 'doris_fe_edit_log{type="write"}') == 0
    assert sample(follower, 'doris_fe_edit_log{type="read"}') == writes
    sim.set_master("fe-1", 9010)
    clock.advance(10)
    assert sample(m.fe_text("fe-1", 9010), 'doris_fe_edit_log{type="write"}') == 11
    assert sample(m.fe_text("fe-0", 9010), 'doris_fe_edit_log{type="write"}') == writes  # counters never drop


def test_queries_spread_over_the_alive_fes_and_a_stopped_fe_answers_nothing() -> None:
    sim, clock, m = setup()
    m.fe_text("fe-0", 9010)
    clock.advance(100)
    assert sample(m.fe_text("fe-0", 9010), "doris_fe_query_total") == 500
    assert sample(m.fe_text("fe-0", 9010), "doris_fe_query_err") == 50
    sim.set_frontend_alive("fe-1", 9010, False)
    assert m.fe_text("fe-1", 9010) is None
    clock.advance(100)
    assert sample(m.fe_text("fe-0", 9010), "doris_fe_query_total") == 1500
    assert m.fe_text("nope", 1) is None


def test_backends_tablets_disks_and_unhealthy_tablets() -> None:
    sim, clock, m = setup()
    fe = m.fe_text("fe-0", 9010)
    assert sample(fe, 'doris_fe_tablet_num{backend="be-1:9050"}') == 100
    be = m.be_text("be-1", 9050)
    total = sample(be, 'doris_be_disks_total_capacity{path="/opt/apache-doris/be/storage"}')
    avail = sample(be, 'doris_be_disks_avail_capacity{path="/opt/apache-doris/be/storage"}')
    assert 0 < avail < total
    assert sample(m.fe_text("fe-0", 9010), 'doris_fe_tablet_status_count{type="unhealthy"}') == 0
    sim.set_backend_alive("be-2", 9050, False)
    assert m.be_text("be-2", 9050) is None
    clock.advance(200)  # ten tablet checker rounds, 100 unhealthy tablets each
    assert sample(m.fe_text("fe-0", 9010), 'doris_fe_tablet_status_count{type="unhealthy"}') == 1000
    sim.execute('ALTER SYSTEM DECOMMISSION BACKEND "be-1:9050"')
    assert sample(m.fe_text("fe-0", 9010), "doris_fe_scheduled_tablet_num") > 0
    assert sample(m.fe_text("fe-1", 9010), "doris_fe_scheduled_tablet_num") == 0


def test_parse_bytes() -> None:
    assert parse_bytes("79.062 GB") == int(79.062 * (1 << 30))
    assert parse_bytes("0.000 ") == 0
    assert parse_bytes("960.000 MB") == 960 << 20


def test_served_over_http_on_loopback() -> None:
    sim, _, m = setup()
    with MetricsHttpServer(lambda: m.fe_text("fe-0", 9010)) as fe, BeWebServer() as be:
        be.metrics = lambda: m.be_text("be-0", 9050)
        with urllib.request.urlopen(f"http://127.0.0.1:{fe.port}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "# TYPE doris_fe_query_total counter" in resp.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{be.port}/metrics", timeout=5) as resp:
            assert "doris_be_tablet_cumulative_max_compaction_score 15" in resp.read().decode()
        sim.set_backend_alive("be-0", 9050, False)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{be.port}/metrics", timeout=5)
        except urllib.error.HTTPError as err:
            assert err.code == 503
        else:
            raise AssertionError("a stopped BE served metrics")
