"""The simulator's replica model: tablets with a replication number on distinct BEs, Doris's tablet
health over SQL, the tablet scheduler (repair, decommission, balance) and its FE configs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from doris_sim.fe import ManualClock, SimCluster, SimFeServer
from doris_sim.sql import STATISTIC_COLUMNS, TABLET_HEALTH_COLUMNS

pytestmark = pytest.mark.timeout(60)

HOSTS = [f"10.0.0.{i}" for i in range(1, 5)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_722_189_459.0)


@pytest.fixture
def cluster(clock: ManualClock) -> SimCluster:
    cluster = SimCluster("2.1.8", clock=clock, clone_rate=10, balance_rate=5, repair_delay=60)
    for host in HOSTS[:3]:
        cluster.register_backend(host, 9050)
    return cluster


@pytest.fixture
def db(cluster: SimCluster) -> Iterator[Any]:
    with (
        SimFeServer(cluster) as server,
        pymysql.connect(host="127.0.0.1", port=server.port, user="root") as connection,
        connection.cursor() as cursor,
    ):
        yield cursor


def rows(cursor: Any, sql: str) -> list[dict[str, Any]]:
    cursor.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def tablet_nums(cursor: Any) -> dict[str, int]:
    return {r["Host"]: int(r["TabletNum"]) for r in rows(cursor, "SHOW BACKENDS")}


def health(cursor: Any) -> dict[str, str]:
    *_, total = rows(cursor, "SHOW PROC '/cluster_health/tablet_health'")
    return total


def test_replicas_go_to_distinct_backends_and_count_as_tablet_num(db: Any, cluster: SimCluster) -> None:
    tablets = cluster.create_tablets(20)
    assert all(len(cluster.replicas_of(t)) == 3 for t in tablets)
    assert tablet_nums(db) == dict.fromkeys(HOSTS[:3], 20)
    with pytest.raises(Exception, match="Failed to find enough backend"):
        cluster.create_tablets(1, replication_num=4)


def test_tablet_health_and_statistic_columns_and_values(db: Any, cluster: SimCluster) -> None:
    empty = rows(db, "SHOW PROC '/cluster_health/tablet_health'")
    assert list(empty[0]) == list(TABLET_HEALTH_COLUMNS) and len(empty) == 1
    assert (empty[0]["DbId"], empty[0]["DbName"], empty[0]["TabletNum"]) == ("Total", "0", "0")
    cluster.create_tablets(10)
    db_row, total = rows(db, "SHOW PROC '/cluster_health/tablet_health'")
    assert (db_row["DbName"], total["DbId"], total["DbName"]) == ("sim_db", "Total", "1")
    assert (total["TabletNum"], total["HealthyNum"], total["ReplicaMissingNum"]) == ("10", "10", "0")
    stat = rows(db, "SHOW PROC '/statistic'")
    assert list(stat[0]) == list(STATISTIC_COLUMNS)
    assert (stat[-1]["TabletNum"], stat[-1]["ReplicaNum"], stat[-1]["UnhealthyTabletNum"]) == (
        "10",
        "30",
        "0",
    )


def test_dead_backend_replicas_are_missing_then_repaired_after_the_delay(
    db: Any, cluster: SimCluster, clock: ManualClock
) -> None:
    cluster.register_backend(HOSTS[3], 9050)
    cluster.set_rates(balance=0)
    cluster.create_tablets(12)  # on 3 of the 4 backends each, fewest replicas first
    before = tablet_nums(db)
    victim = max(before, key=lambda h: (before[h], h))
    cluster.set_backend_alive(victim, 9050, False)
    missing = before[victim]
    assert health(db)["ReplicaMissingNum"] == str(missing)
    assert rows(db, "SHOW PROC '/statistic'")[-1]["UnhealthyTabletNum"] == str(missing)
    assert cluster.min_healthy_replicas() == 2
    clock.advance(59)
    assert health(db)["CloningNum"] == "0" and tablet_nums(db)[victim] == missing
    clock.advance(1)
    assert health(db)["CloningNum"] == str(missing), "due now: clone tasks scheduled"
    clock.advance(10)  # 10 clones per second
    total = health(db)
    assert (total["ReplicaMissingNum"], total["HealthyNum"]) == ("0", "12")
    # The dead backend's replicas were redundant once cloned elsewhere, and dropped.
    assert tablet_nums(db)[victim] == 0
    assert cluster.lowest_healthy_replicas_seen() == 2


def test_wiped_backend_comes_back_empty_and_is_refilled_over_time(
    db: Any, cluster: SimCluster, clock: ManualClock
) -> None:
    cluster.create_tablets(30)
    cluster.set_backend_alive(HOSTS[0], 9050, False)
    cluster.set_backend_alive(HOSTS[0], 9050, True, wiped=True)  # a new pod on emptyDir
    assert tablet_nums(db)[HOSTS[0]] == 0
    assert health(db)["ReplicaMissingNum"] == "30"
    clock.advance(1)  # no delay: the catalog lost those replicas; 10 per second
    assert tablet_nums(db)[HOSTS[0]] == 10 and health(db)["ReplicaMissingNum"] == "20"
    clock.advance(2)
    assert tablet_nums(db) == dict.fromkeys(HOSTS[:3], 30) and health(db)["HealthyNum"] == "30"
    assert cluster.lowest_healthy_replicas_seen() == 2


def test_two_wiped_backends_before_repair_leave_one_replica_and_the_watermark_shows_it(
    cluster: SimCluster, clock: ManualClock
) -> None:
    cluster.create_tablets(30)
    cluster.set_backend_alive(HOSTS[0], 9050, True, wiped=True)
    cluster.set_backend_alive(HOSTS[1], 9050, True, wiped=True)
    assert cluster.min_healthy_replicas() == 1 and cluster.lowest_healthy_replicas_seen() == 1
    cluster.set_backend_alive(HOSTS[2], 9050, True, wiped=True)
    assert cluster.lowest_healthy_replicas_seen() == 0
    states = set(cluster.tablet_states().values())
    assert states == {"UNRECOVERABLE"}
    clock.advance(100)
    assert set(cluster.tablet_states().values()) == {"UNRECOVERABLE"}, "nothing left to copy from"
    cluster.reset_lowest_seen()
    assert cluster.lowest_healthy_replicas_seen() == 0


def test_decommission_relocates_replicas_and_shows_relocating(
    db: Any, cluster: SimCluster, clock: ManualClock
) -> None:
    cluster.create_tablets(20)
    cluster.register_backend(HOSTS[3], 9050)
    db.execute("""ADMIN SET FRONTEND CONFIG ("disable_balance" = "true")""")
    cluster.set_decommission_rate(5)
    db.execute(f'ALTER SYSTEM DECOMMISSION BACKEND "{HOSTS[0]}:9050"')
    assert health(db)["ReplicaRelocatingNum"] == "20"
    clock.advance(2)
    assert tablet_nums(db)[HOSTS[0]] == 10 and tablet_nums(db)[HOSTS[3]] == 10
    clock.advance(2)
    assert HOSTS[0] not in tablet_nums(db)
    assert health(db)["HealthyNum"] == "20" and cluster.lowest_healthy_replicas_seen() == 3


def test_balance_fills_a_new_backend_unless_disabled(
    db: Any, cluster: SimCluster, clock: ManualClock
) -> None:
    cluster.create_tablets(40)
    db.execute("""ADMIN SET FRONTEND CONFIG ("disable_balance" = "true")""")
    cluster.register_backend(HOSTS[3], 9050)
    clock.advance(100)
    assert tablet_nums(db)[HOSTS[3]] == 0
    db.execute("""admin set frontend config ('disable_balance' = 'false')""")
    clock.advance(100)
    nums = tablet_nums(db)
    assert sum(nums.values()) == 120 and min(nums.values()) >= 27  # within Doris's 10% threshold
    assert cluster.lowest_healthy_replicas_seen() == 3, "balance clones before it deletes"


def test_disable_tablet_scheduler_stops_repair(db: Any, cluster: SimCluster, clock: ManualClock) -> None:
    cluster.create_tablets(10)
    db.execute("""ADMIN SET FRONTEND CONFIG ("disable_tablet_scheduler" = "true")""")
    cluster.wipe_backend(HOSTS[0])
    clock.advance(100)
    assert health(db)["ReplicaMissingNum"] == "10"
    db.execute("""ADMIN SET FRONTEND CONFIG ("disable_tablet_scheduler" = "false")""")
    clock.advance(1)
    assert health(db)["ReplicaMissingNum"] == "0"


def test_admin_show_frontend_config(db: Any, cluster: SimCluster) -> None:
    (row,) = rows(db, "ADMIN SHOW FRONTEND CONFIG LIKE 'disable_balance'")
    assert row == {
        "Key": "disable_balance",
        "Value": "false",
        "Type": "boolean",
        "IsMutable": "true",
        "MasterOnly": "true",
        "Comment": "",
    }
    db.execute("""ADMIN SET FRONTEND CONFIG ("disable_balance" = "TRUE")""")
    keys = {r["Key"]: r["Value"] for r in rows(db, "SHOW FRONTEND CONFIG LIKE 'disable_%balance'")}
    assert keys == {"disable_balance": "true", "disable_colocate_balance": "false"}
    assert cluster.frontend_config("disable_balance") == "true"
    with pytest.raises(pymysql.MySQLError) as info:
        db.execute("""ADMIN SET FRONTEND CONFIG ("no_such_thing" = "1")""")
    assert info.value.args == (
        1105,
        "errCode = 2, detailMessage = Config 'no_such_thing' does not exist or is not mutable",
    )
    with pytest.raises(pymysql.MySQLError) as info:
        db.execute("""ADMIN SET FRONTEND CONFIG ("enable_fqdn_mode" = "true")""")
    assert "is not mutable" in info.value.args[1]


def test_admin_set_config_is_lost_when_the_master_restarts(cluster: SimCluster) -> None:
    cluster.execute("""ADMIN SET FRONTEND CONFIG ("disable_balance" = "true")""")
    assert cluster.frontend_config("disable_balance") == "true"
    cluster.set_frontend_alive(*cluster.master, False)
    cluster.set_frontend_alive(*cluster.master, True)
    assert cluster.frontend_config("disable_balance") == "false", "ADMIN SET is not persisted"
    cluster.set_fe_conf("disable_balance", "true")
    cluster.set_frontend_alive(*cluster.master, False)
    cluster.set_frontend_alive(*cluster.master, True)
    assert cluster.frontend_config("disable_balance") == "true", "fe.conf is"


def test_legacy_single_replica_tablets_are_lost_with_a_dropped_backend(cluster: SimCluster) -> None:
    cluster.set_tablets(HOSTS[0], 9050, 5)
    cluster.unregister_backend(HOSTS[0], 9050)
    assert cluster.lowest_healthy_replicas_seen() == 0
    assert set(cluster.tablet_states().values()) == {"UNRECOVERABLE"}
