"""Master and non-master FEs of the simulator answer differently (IsMaster, CurrentConnected, a
replayed and possibly lagging catalog, forward_to_master, forwarding of ALTER SYSTEM / ADMIN SET),
running queries per BE, and the faults a test can inject (empty SHOW BACKENDS, unreachable FE)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from doris_sim.fe import EMPTY_BACKENDS, UNREACHABLE, ManualClock, SimCluster, SimFeServer
from doris_sim.sql import BACKEND_ACTIVE_TASKS_COLUMNS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_722_189_459.0)


@pytest.fixture
def cluster(clock: ManualClock) -> SimCluster:
    cluster = SimCluster("2.1.8", clock=clock)
    cluster.register_frontend("127.0.0.1", 9011)
    cluster.register_frontend("127.0.0.1", 9012, role="OBSERVER")
    return cluster


@pytest.fixture
def servers(cluster: SimCluster) -> Iterator[dict[int, SimFeServer]]:
    """One server per FE, keyed by edit log port (9010 is the master)."""
    started = {
        port: SimFeServer(cluster, frontend=("127.0.0.1", port)).start() for port in (9010, 9011, 9012)
    }
    yield started
    for server in started.values():
        server.stop()


def connect(server: SimFeServer) -> Any:
    return pymysql.connect(host="127.0.0.1", port=server.port, user="root", autocommit=True)


def rows(cursor: Any, sql: str) -> list[dict[str, Any]]:
    cursor.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_each_fe_shows_itself_connected_and_the_same_master(servers: dict[int, SimFeServer]) -> None:
    for port, server in servers.items():
        with connect(server) as conn, conn.cursor() as cur:
            frontends = {r["EditLogPort"]: r for r in rows(cur, "SHOW FRONTENDS")}
        assert [p for p, r in frontends.items() if r["CurrentConnected"] == "Yes"] == [str(port)]
        assert [p for p, r in frontends.items() if r["IsMaster"] == "true"] == ["9010"]
        assert {r["QueryPort"] for r in frontends.values()} == {str(s.port) for s in servers.values()}


def test_lagging_follower_answers_from_its_replayed_catalog_unless_forwarded(
    cluster: SimCluster, servers: dict[int, SimFeServer], clock: ManualClock
) -> None:
    cluster.set_replay_lag("127.0.0.1", 9011, 5)
    with connect(servers[9011]) as conn, conn.cursor() as cur:
        cur.execute('ALTER SYSTEM ADD BACKEND "10.0.0.1:9050"')  # forwarded to the master
        assert [r["Host"] for r in cluster.show_backends().dicts()] == ["10.0.0.1"]
        assert rows(cur, "SHOW BACKENDS") == [], "not replayed yet"
        cur.execute("SET forward_to_master = true")
        assert [r["Host"] for r in rows(cur, "SHOW BACKENDS")] == ["10.0.0.1"]
        frontends = rows(cur, "SHOW FRONTENDS")
        assert [r["EditLogPort"] for r in frontends if r["CurrentConnected"] == "Yes"] == ["9011"]
        cur.execute("SET forward_to_master = false")
        clock.advance(5)
        assert [r["Host"] for r in rows(cur, "SHOW BACKENDS")] == ["10.0.0.1"]
    with connect(servers[9011]) as conn, conn.cursor() as cur:
        assert [r["Host"] for r in rows(cur, "SHOW PROC '/backends'")] == ["10.0.0.1"]


def test_paused_replay_freezes_a_non_master_view(
    cluster: SimCluster, servers: dict[int, SimFeServer]
) -> None:
    cluster.register_backend("10.0.0.1", 9050)
    cluster.pause_replay("127.0.0.1", 9012)
    cluster.execute('ALTER SYSTEM DECOMMISSION BACKEND "10.0.0.1:9050"')  # empty: dropped at once
    with connect(servers[9012]) as conn, conn.cursor() as cur:
        (be,) = rows(cur, "SHOW BACKENDS")
        assert be["SystemDecommissioned"] == "false"
    with connect(servers[9010]) as conn, conn.cursor() as cur:
        assert rows(cur, "SHOW BACKENDS") == []
    cluster.resume_replay("127.0.0.1", 9012)
    with connect(servers[9012]) as conn, conn.cursor() as cur:
        assert rows(cur, "SHOW BACKENDS") == []


def test_admin_set_of_a_master_only_config_is_forwarded_and_show_config_is_local(
    cluster: SimCluster, servers: dict[int, SimFeServer]
) -> None:
    with connect(servers[9011]) as conn, conn.cursor() as cur:
        cur.execute("""ADMIN SET FRONTEND CONFIG ("disable_balance" = "true")""")
        (row,) = rows(cur, "ADMIN SHOW FRONTEND CONFIG LIKE 'disable_balance'")
        assert row["Value"] == "false", "the follower's own value: the setting went to the master"
    with connect(servers[9010]) as conn, conn.cursor() as cur:
        (row,) = rows(cur, "ADMIN SHOW FRONTEND CONFIG LIKE 'disable_balance'")
        assert row["Value"] == "true"
    assert cluster.frontend_config("disable_balance") == "true"
    assert cluster.frontend_config("disable_balance", ("127.0.0.1", 9011)) == "false"


def test_without_a_master_forwarded_statements_fail(
    cluster: SimCluster, servers: dict[int, SimFeServer]
) -> None:
    cluster.set_frontend_alive("127.0.0.1", 9010, False)
    with connect(servers[9011]) as conn, conn.cursor() as cur:
        assert len(rows(cur, "SHOW FRONTENDS")) == 3, "a follower answers SHOW itself"
        for sql in (
            'ALTER SYSTEM DECOMMISSION BACKEND "10.0.0.1:9050"',
            """ADMIN SET FRONTEND CONFIG ("disable_balance" = "true")""",
        ):
            with pytest.raises(pymysql.MySQLError) as info:
                cur.execute(sql)
            assert info.value.args == (
                1105,
                "Exception, msg: Node catalog is not ready, please wait for a while.",
            )
        cur.execute("SET forward_to_master = true")
        with pytest.raises(pymysql.MySQLError):
            cur.execute("SHOW BACKENDS")


def test_fault_empty_backends_and_unreachable(cluster: SimCluster, servers: dict[int, SimFeServer]) -> None:
    cluster.register_backend("10.0.0.1", 9050)
    master = servers[9010]
    master.set_fault(EMPTY_BACKENDS)
    with connect(master) as conn, conn.cursor() as cur:
        cur.execute("SHOW BACKENDS")
        assert cur.fetchall() == () and "BackendId" in [d[0] for d in cur.description]
        assert rows(cur, "SHOW PROC '/backends'") == []
        assert len(rows(cur, "SHOW FRONTENDS")) == 3
        master.set_fault(UNREACHABLE)
        with pytest.raises(pymysql.err.OperationalError):
            cur.execute("SHOW FRONTENDS")  # the open connection is dropped
    with pytest.raises(pymysql.err.OperationalError):
        connect(master)
    master.set_fault(None)
    with connect(master) as conn, conn.cursor() as cur:
        assert len(rows(cur, "SHOW BACKENDS")) == 1
    with pytest.raises(ValueError):
        master.set_fault("bogus")


def test_running_queries_per_backend_and_disable_query(
    cluster: SimCluster, servers: dict[int, SimFeServer], clock: ManualClock
) -> None:
    cluster.register_backend("10.0.0.1", 9050)
    cluster.register_backend("10.0.0.2", 9050)
    first = cluster.start_query("10.0.0.1")
    clock.advance(2)
    with connect(servers[9011]) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM information_schema.backend_active_tasks")
        assert [d[0] for d in cur.description] == list(BACKEND_ACTIVE_TASKS_COLUMNS)
        (task,) = rows(cur, "SELECT * FROM information_schema.backend_active_tasks")
        assert (task["BE_ID"], task["QUERY_ID"], task["TASK_TIME_MS"], task["FE_HOST"]) == (
            10002, first, 2000, "127.0.0.1",
        )  # fmt: skip
        cur.execute("""ALTER SYSTEM MODIFY BACKEND "10.0.0.1:9050" SET ("disable_query" = "true")""")
        assert json.loads(rows(cur, "SHOW BACKENDS")[0]["Status"])["isQueryDisabled"] is True
        with pytest.raises(ValueError, match="takes no new queries"):
            cluster.start_query("10.0.0.1")
        others = [cluster.start_query() for _ in range(3)]
        count = "SELECT COUNT(*) FROM information_schema.backend_active_tasks WHERE BE_ID = {}"
        cur.execute(count.format(10003))
        assert cur.fetchall() == ((3,),)
        cur.execute(count.format(10002))
        assert cur.fetchall() == ((1,),), "the running query goes on"
        cluster.finish_query(first)
        assert (
            rows(cur, "SELECT QUERY_ID FROM information_schema.backend_active_tasks WHERE BE_ID = 10002")
            == []
        )
        cluster.set_backend_alive("10.0.0.2", 9050, False)
        assert cluster.running_queries("10.0.0.2") == [] and set(others) - set(
            cluster.running_queries("10.0.0.1")
        ) == set(others)
        cur.execute("SELECT version(), @@version_comment")
        assert cur.fetchall()[0][0] == "5.7.99"
