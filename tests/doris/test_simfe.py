"""The simulated Doris FE, spoken to with PyMySQL over loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from doris_sim.fe import ManualClock, SimCluster, SimFeServer, SimSqlError

pytestmark = pytest.mark.timeout(60)

FE_COLUMNS_2_0 = [
    "Name", "Host", "EditLogPort", "HttpPort", "QueryPort", "RpcPort", "Role", "IsMaster", "ClusterId",
    "Join", "Alive", "ReplayedJournalId", "LastHeartbeat", "IsHelper", "ErrMsg", "Version",
    "CurrentConnected",
]  # fmt: skip
FE_COLUMNS_2_1 = [
    "Name", "Host", "EditLogPort", "HttpPort", "QueryPort", "RpcPort", "ArrowFlightSqlPort", "Role",
    "IsMaster", "ClusterId", "Join", "Alive", "ReplayedJournalId", "LastStartTime", "LastHeartbeat",
    "IsHelper", "ErrMsg", "Version", "CurrentConnected",
]  # fmt: skip
BE_COLUMNS_2_0 = [
    "BackendId", "Host", "HeartbeatPort", "BePort", "HttpPort", "BrpcPort", "LastStartTime",
    "LastHeartbeat", "Alive", "SystemDecommissioned", "TabletNum", "DataUsedCapacity",
    "TrashUsedCapcacity", "AvailCapacity", "TotalCapacity", "UsedPct", "MaxDiskUsedPct",
    "RemoteUsedCapacity", "Tag", "ErrMsg", "Version", "Status", "HeartbeatFailureCounter", "NodeRole",
]  # fmt: skip
BE_COLUMNS_2_1_0 = [
    "BackendId", "Host", "HeartbeatPort", "BePort", "HttpPort", "BrpcPort", "ArrowFlightSqlPort",
    "LastStartTime", "LastHeartbeat", "Alive", "SystemDecommissioned", "TabletNum", "DataUsedCapacity",
    "TrashUsedCapcacity", "AvailCapacity", "TotalCapacity", "UsedPct", "MaxDiskUsedPct",
    "RemoteUsedCapacity", "Tag", "ErrMsg", "Version", "Status", "HeartbeatFailureCounter", "NodeRole",
]  # fmt: skip
BE_COLUMNS_2_1_5 = [
    "BackendId", "Host", "HeartbeatPort", "BePort", "HttpPort", "BrpcPort", "ArrowFlightSqlPort",
    "LastStartTime", "LastHeartbeat", "Alive", "SystemDecommissioned", "TabletNum", "DataUsedCapacity",
    "TrashUsedCapacity", "AvailCapacity", "TotalCapacity", "UsedPct", "MaxDiskUsedPct",
    "RemoteUsedCapacity", "Tag", "ErrMsg", "Version", "Status", "HeartbeatFailureCounter", "NodeRole",
]  # fmt: skip
BROKER_COLUMNS = ["Name", "Host", "Port", "Alive", "LastStartTime", "LastUpdateTime", "ErrMsg"]
DROP_REFUSED = (
    "errCode = 2, detailMessage = It is highly NOT RECOMMENDED to use DROP BACKEND stmt.It is not safe "
    "to directly drop a backend. All data on this backend will be discarded permanently. If you "
    "insist, use DROPP instead of DROP"
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_722_189_459.0)  # 2024-07-28 17:57:39 UTC


@pytest.fixture
def cluster(clock: ManualClock) -> SimCluster:
    return SimCluster("2.1.8", clock=clock, users={"root": "", "admin": "s3cret"})


@pytest.fixture
def server(cluster: SimCluster) -> Iterator[SimFeServer]:
    with SimFeServer(cluster) as server:
        yield server


@pytest.fixture
def db(server: SimFeServer) -> Iterator[Any]:
    connection = pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="")
    with connection, connection.cursor() as cursor:
        yield cursor


def rows(cursor: Any, sql: str) -> list[dict[str, Any]]:
    cursor.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def backend(cursor: Any, host: str) -> dict[str, Any]:
    (row,) = [r for r in rows(cursor, "SHOW BACKENDS") if r["Host"] == host]
    return row


def error_of(cursor: Any, sql: str) -> tuple[int, str]:
    with pytest.raises(pymysql.MySQLError) as info:
        cursor.execute(sql)
    return info.value.args[0], info.value.args[1]


# --- columns and value formats ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "fe_columns", "be_columns"),
    [
        ("2.0.12", FE_COLUMNS_2_0, BE_COLUMNS_2_0),
        ("2.1.0", FE_COLUMNS_2_1, BE_COLUMNS_2_1_0),
        ("2.1.5", FE_COLUMNS_2_1, BE_COLUMNS_2_1_5),
        ("2.1.8", FE_COLUMNS_2_1, BE_COLUMNS_2_1_5),
        ("3.0.3", FE_COLUMNS_2_1, BE_COLUMNS_2_1_5),
    ],
)
def test_columns_per_version(version: str, fe_columns: list[str], be_columns: list[str]) -> None:
    cluster = SimCluster(version, clock=ManualClock())
    cluster.register_backend("10.0.0.1", 9050)
    with (
        SimFeServer(cluster) as server,
        pymysql.connect(host="127.0.0.1", port=server.port, user="root") as connection,
        connection.cursor() as cursor,
    ):
        for sql, expected in [
            ("SHOW FRONTENDS", fe_columns),
            ("SHOW PROC '/frontends'", fe_columns),
            ("SHOW BACKENDS", be_columns),
            ("SHOW PROC '/backends'", be_columns),
            ("SHOW BROKER", BROKER_COLUMNS),
            ("SHOW PROC '/brokers'", BROKER_COLUMNS),
        ]:
            cursor.execute(sql)
            assert [d[0] for d in cursor.description] == expected, sql
        row = backend(cursor, "10.0.0.1")
        assert row["Version"] == f"doris-{version}-" + row["Version"].rsplit("-", 1)[1]


@pytest.mark.parametrize("version", ["1.2.4", "4.0.0", "latest"])
def test_unsupported_versions_are_rejected(version: str) -> None:
    with pytest.raises(ValueError):
        SimCluster(version)


def test_master_row_as_doris_prints_it(db: Any, server: SimFeServer, clock: ManualClock) -> None:
    (row,) = rows(db, "SHOW FRONTENDS")
    assert row["Name"].startswith("fe_") and "-" not in row["Name"]
    assert (row["Host"], row["EditLogPort"], row["HttpPort"], row["RpcPort"]) == (
        "127.0.0.1",
        "9010",
        "8030",
        "9020",
    )
    assert row["QueryPort"] == str(server.port)
    assert row["ArrowFlightSqlPort"] == "-1"
    assert (row["Role"], row["IsMaster"], row["Join"], row["Alive"], row["IsHelper"]) == (
        "FOLLOWER", "true", "true", "true", "true",
    )  # fmt: skip
    assert row["ClusterId"].isdigit()
    assert row["LastStartTime"] == "2024-07-28 17:57:39"
    clock.advance(61)
    (row,) = rows(db, "SHOW FRONTENDS")
    assert row["LastHeartbeat"] == "2024-07-28 17:58:40"
    assert (row["ErrMsg"], row["CurrentConnected"]) == ("", "Yes")
    assert row["Version"].startswith("doris-2.1.8-")


def test_added_backend_before_first_heartbeat(db: Any) -> None:
    db.execute('ALTER SYSTEM ADD BACKEND "10.0.0.1:9050"')
    row = backend(db, "10.0.0.1")
    assert row["BackendId"] == "10002"
    assert (row["HeartbeatPort"], row["BePort"], row["HttpPort"], row["BrpcPort"]) == (
        "9050",
        "-1",
        "-1",
        "-1",
    )
    assert (row["LastStartTime"], row["LastHeartbeat"]) == ("\\N", "\\N")
    assert (row["Alive"], row["SystemDecommissioned"], row["TabletNum"]) == ("false", "false", "0")
    assert (row["DataUsedCapacity"], row["AvailCapacity"], row["TotalCapacity"]) == (
        "0.000 ",
        "1.000 B",
        "0.000 ",
    )
    assert (row["UsedPct"], row["MaxDiskUsedPct"]) == ("0.00 %", "0.00 %")
    assert row["Tag"] == '{"location" : "default"}'
    assert (row["Version"], row["ErrMsg"], row["HeartbeatFailureCounter"], row["NodeRole"]) == (
        "",
        "",
        "0",
        "mix",
    )
    assert row["Status"] == (
        '{"lastSuccessReportTabletsTime":"N/A","lastStreamLoadTime":-1,'
        '"isQueryDisabled":false,"isLoadDisabled":false}'
    )


def test_running_backend_values(db: Any, cluster: SimCluster, clock: ManualClock) -> None:
    cluster.register_backend("10.0.0.1", 9050, tablets=10)
    row = backend(db, "10.0.0.1")
    assert (row["Alive"], row["BePort"], row["HttpPort"], row["BrpcPort"]) == ("true", "9060", "8040", "8060")
    assert row["TabletNum"] == "10"
    # 10 tablets of 8 MiB on a 100 GiB disk with 20 GiB used by other files.
    assert (row["DataUsedCapacity"], row["TotalCapacity"], row["AvailCapacity"]) == (
        "80.000 MB", "100.000 GB", "79.922 GB",
    )  # fmt: skip
    assert (row["UsedPct"], row["TrashUsedCapacity"], row["RemoteUsedCapacity"]) == (
        "20.08 %",
        "0.000 ",
        "0.000 ",
    )
    assert row["LastStartTime"] == "2024-07-28 17:57:39"

    clock.advance(30)
    cluster.set_backend_alive(
        "10.0.0.1", 9050, False, err_msg="java.net.ConnectException: Connection refused"
    )
    clock.advance(30)
    row = backend(db, "10.0.0.1")
    assert (row["Alive"], row["HeartbeatFailureCounter"]) == ("false", "1")
    assert row["ErrMsg"] == "java.net.ConnectException: Connection refused"
    assert row["LastHeartbeat"] == "2024-07-28 17:58:09"

    cluster.set_backend_alive("10.0.0.1", 9050, True, node_role="computation")
    row = backend(db, "10.0.0.1")
    assert (row["Alive"], row["HeartbeatFailureCounter"], row["ErrMsg"], row["NodeRole"]) == (
        "true", "0", "", "computation",
    )  # fmt: skip
    assert row["LastStartTime"] == "2024-07-28 17:58:39"


def test_show_backends_sorted_by_id_and_proc_by_host(db: Any) -> None:
    db.execute('ALTER SYSTEM ADD BACKEND "zz:9050", "aa:9050"')
    assert [r["Host"] for r in rows(db, "SHOW BACKENDS")] == ["zz", "aa"]
    assert [r["Host"] for r in rows(db, "SHOW PROC '/backends'")] == ["aa", "zz"]


# --- backend statements -----------------------------------------------------------------------


def test_add_backend_errors(db: Any) -> None:
    db.execute('ALTER SYSTEM ADD BACKEND "10.0.0.1:9050"')
    assert error_of(db, 'ALTER SYSTEM ADD BACKEND "10.0.0.2:9050", "10.0.0.1:9050"') == (
        1105,
        "errCode = 2, detailMessage = Same backend already exists[10.0.0.1:9050]",
    )
    assert [r["Host"] for r in rows(db, "SHOW BACKENDS")] == ["10.0.0.1"]  # checked before adding
    assert error_of(db, 'ALTER SYSTEM ADD BACKEND "nocolon"') == (
        1105,
        "errCode = 2, detailMessage = Invalid host port: nocolon",
    )
    assert error_of(db, 'ALTER SYSTEM ADD BACKEND "h:70000"') == (
        1105,
        "errCode = 2, detailMessage = Encounter unknown exception: Port is out of range: 70000",
    )


def test_add_backend_with_tag_property(db: Any) -> None:
    db.execute("""ALTER SYSTEM ADD BACKEND "10.0.0.1:9050" PROPERTIES ("tag.location" = "group_a")""")
    assert backend(db, "10.0.0.1")["Tag"] == '{"location" : "group_a"}'


def test_plain_drop_backend_is_always_refused(db: Any) -> None:
    db.execute('ALTER SYSTEM ADD BACKEND "10.0.0.1:9050"')
    assert error_of(db, 'ALTER SYSTEM DROP BACKEND "10.0.0.1:9050"') == (1105, DROP_REFUSED)
    assert error_of(db, 'ALTER SYSTEM DROP BACKEND "unknown:9050"') == (1105, DROP_REFUSED)
    assert len(rows(db, "SHOW BACKENDS")) == 1


def test_dropp_backend(db: Any) -> None:
    db.execute('ALTER SYSTEM ADD BACKEND "10.0.0.1:9050", "10.0.0.2:9050", "10.0.0.3:9050"')
    db.execute('ALTER SYSTEM DROPP BACKEND "10.0.0.1:9050"')
    db.execute('ALTER SYSTEM DROPP BACKEND "10003"')  # by id
    assert [r["Host"] for r in rows(db, "SHOW BACKENDS")] == ["10.0.0.3"]
    assert error_of(db, 'ALTER SYSTEM DROPP BACKEND "10.0.0.3:9050", "x:9050"') == (
        1105,
        "errCode = 2, detailMessage = backend does not exists[x:9050]",
    )
    assert error_of(db, 'ALTER SYSTEM DROPP BACKEND "42"') == (
        1105,
        "errCode = 2, detailMessage = backend does not exists[42]",
    )
    assert [r["Host"] for r in rows(db, "SHOW BACKENDS")] == ["10.0.0.3"]


def test_decommission_drains_at_rate_then_backend_disappears(
    db: Any, cluster: SimCluster, clock: ManualClock
) -> None:
    cluster.register_backend("10.0.0.1", 9050, tablets=100)
    cluster.register_backend("10.0.0.2", 9050, tablets=0)
    cluster.set_decommission_rate(10)
    db.execute('ALTER SYSTEM DECOMMISSION BACKEND "10.0.0.1:9050"')
    row = backend(db, "10.0.0.1")
    assert (row["SystemDecommissioned"], row["Alive"], row["TabletNum"]) == ("true", "true", "100")

    clock.advance(2.5)
    assert backend(db, "10.0.0.1")["TabletNum"] == "75"
    assert backend(db, "10.0.0.2")["TabletNum"] == "25"
    clock.advance(7.4)
    assert backend(db, "10.0.0.1")["TabletNum"] == "1"
    clock.advance(0.1)
    assert [r["Host"] for r in rows(db, "SHOW BACKENDS")] == ["10.0.0.2"]
    assert backend(db, "10.0.0.2")["TabletNum"] == "100"


def test_decommission_several_backends_at_once(db: Any, cluster: SimCluster, clock: ManualClock) -> None:
    for i in (1, 2, 3):
        cluster.register_backend(f"10.0.0.{i}", 9050, tablets=20)
    db.execute('ALTER SYSTEM DECOMMISSION BACKEND "10.0.0.1:9050", "10.0.0.2:9050";')
    assert [r["SystemDecommissioned"] for r in rows(db, "SHOW BACKENDS")] == ["true", "true", "false"]
    clock.advance(1)
    assert [r["TabletNum"] for r in rows(db, "SHOW BACKENDS")] == ["10", "10", "40"]


def test_decommission_of_an_empty_compute_node_finishes_at_once(db: Any, cluster: SimCluster) -> None:
    cluster.register_backend("10.0.0.9", 9050, node_role="computation")
    db.execute('ALTER SYSTEM DECOMMISSION BACKEND "10.0.0.9:9050"')
    assert rows(db, "SHOW BACKENDS") == []


def test_decommission_stalls_without_room_for_the_replicas(clock: ManualClock) -> None:
    cluster = SimCluster("2.1.8", clock=clock, replication_num=3)
    for i in (1, 2, 3):
        cluster.register_backend(f"10.0.0.{i}", 9050)
    cluster.create_tablets(30)  # three replicas each, one per backend
    cluster.execute('ALTER SYSTEM DECOMMISSION BACKEND "10.0.0.1:9050"')
    clock.advance(100)
    assert [r["TabletNum"] for r in cluster.show_backends().dicts()] == ["30", "30", "30"]
    cluster.register_backend("10.0.0.4", 9050)  # a third target: draining starts from now on
    clock.advance(1)
    assert [r["TabletNum"] for r in cluster.show_backends().dicts()] == ["20", "30", "30", "10"]
    assert cluster.min_healthy_replicas() == 3 and cluster.lowest_healthy_replicas_seen() == 3


def test_decommission_errors(db: Any) -> None:
    assert error_of(db, 'ALTER SYSTEM DECOMMISSION BACKEND "x:9050"') == (
        1105,
        "errCode = 2, detailMessage = Backend does not exist[x:9050]",
    )
    assert error_of(db, 'ALTER SYSTEM DECOMMISSION BACKEND "77"') == (
        1105,
        "errCode = 2, detailMessage = Backend does not exist, backend id is 77",
    )


def test_cancel_decommission_stops_draining(db: Any, cluster: SimCluster, clock: ManualClock) -> None:
    cluster.register_backend("10.0.0.1", 9050, tablets=100)
    cluster.register_backend("10.0.0.2", 9050)
    db.execute("""ADMIN SET FRONTEND CONFIG ("disable_balance" = "true")""")  # else it moves data back
    db.execute('ALTER SYSTEM DECOMMISSION BACKEND "10.0.0.1:9050"')
    clock.advance(1)
    db.execute('CANCEL DECOMMISSION BACKEND "10.0.0.1:9050"')
    clock.advance(60)
    row = backend(db, "10.0.0.1")
    assert (row["SystemDecommissioned"], row["TabletNum"]) == ("false", "90")
    # The 2.0 docs' spelling works too, and cancelling an idle backend is not an error.
    db.execute('CANCEL ALTER SYSTEM DECOMMISSION BACKEND "10.0.0.1:9050"')
    assert error_of(db, 'CANCEL DECOMMISSION BACKEND "x:9050"') == (
        1105,
        "errCode = 2, detailMessage = Backend does not exist[x:9050]",
    )


def test_decommissioned_backend_can_be_kept_when_configured(clock: ManualClock) -> None:
    cluster = SimCluster("2.1.8", clock=clock, drop_backend_after_decommission=False)
    cluster.register_backend("10.0.0.1", 9050, tablets=5)
    cluster.register_backend("10.0.0.2", 9050)
    cluster.execute('ALTER SYSTEM DECOMMISSION BACKEND "10.0.0.1:9050"')
    clock.advance(10)
    first = cluster.show_backends().dicts()[0]
    assert (first["SystemDecommissioned"], first["TabletNum"]) == ("true", "0")


def test_modify_backend_flags_show_in_status(db: Any, cluster: SimCluster) -> None:
    cluster.register_backend("10.0.0.1", 9050)
    db.execute("""ALTER SYSTEM MODIFY BACKEND "10.0.0.1:9050" SET ("disable_query" = "true")""")
    status = json.loads(backend(db, "10.0.0.1")["Status"])
    assert (status["isQueryDisabled"], status["isLoadDisabled"]) == (True, False)
    db.execute(
        """alter system modify backend '10.0.0.1:9050' set ('disable_load'='true', "tag.location"='g2')"""
    )
    row = backend(db, "10.0.0.1")
    assert (json.loads(row["Status"])["isLoadDisabled"], row["Tag"]) == (True, '{"location" : "g2"}')
    db.execute(
        """ALTER SYSTEM MODIFY BACKEND "10002" SET ("disable_query" = "false", "disable_load" = "false")"""
    )
    status = json.loads(backend(db, "10.0.0.1")["Status"])
    assert (status["isQueryDisabled"], status["isLoadDisabled"]) == (False, False)
    assert error_of(db, """ALTER SYSTEM MODIFY BACKEND "x:9050" SET ("disable_query" = "true")""") == (
        1105,
        "errCode = 2, detailMessage = backend does not exists[x:9050]",
    )
    assert error_of(db, """ALTER SYSTEM MODIFY BACKEND "10.0.0.1:9050" SET ("bogus" = "1")""") == (
        1105,
        "errCode = 2, detailMessage = unknown properties setting for key (bogus)",
    )


# --- frontend statements ----------------------------------------------------------------------


def test_add_and_drop_frontends(db: Any, cluster: SimCluster) -> None:
    db.execute('ALTER SYSTEM ADD FOLLOWER "fe-1.fe:9010"')
    db.execute("ALTER SYSTEM ADD OBSERVER 'fe-3.fe:9010'")
    by_host = {r["Host"]: r for r in rows(db, "SHOW FRONTENDS")}
    follower, observer = by_host["fe-1.fe"], by_host["fe-3.fe"]
    assert (follower["Role"], follower["IsHelper"], follower["Alive"], follower["Join"]) == (
        "FOLLOWER", "true", "false", "false",
    )  # fmt: skip
    assert (follower["LastHeartbeat"], follower["Version"], follower["QueryPort"]) == ("\\N", "", "0")
    assert (observer["Role"], observer["IsHelper"], observer["IsMaster"]) == ("OBSERVER", "false", "false")
    assert error_of(db, 'ALTER SYSTEM ADD OBSERVER "fe-1.fe:9010"') == (
        1105,
        f"errCode = 2, detailMessage = frontend already exists name: {follower['Name']}, "
        "role: FOLLOWER, fe-1.fe:9010",
    )
    cluster.set_frontend_alive("fe-1.fe", 9010, True)
    follower = {r["Host"]: r for r in rows(db, "SHOW FRONTENDS")}["fe-1.fe"]
    assert (follower["Alive"], follower["Join"], follower["QueryPort"]) == ("true", "true", "9030")

    assert error_of(db, 'ALTER SYSTEM DROP OBSERVER "fe-1.fe:9010"') == (
        1105,
        "errCode = 2, detailMessage = OBSERVER does not exist[fe-1.fe:9010]",
    )
    assert error_of(db, 'ALTER SYSTEM DROP FOLLOWER "fe-9.fe:9010"') == (
        1105,
        "errCode = 2, detailMessage = frontend does not exist[fe-9.fe:9010]",
    )
    assert error_of(db, 'ALTER SYSTEM DROP FOLLOWER "127.0.0.1:9010"') == (
        1105,
        "errCode = 2, detailMessage = can not drop current master node.",
    )
    # Several statements in one request, as the Go operator sends them.
    db.execute('ALTER SYSTEM DROP FOLLOWER "fe-1.fe:9010"; ALTER SYSTEM DROP OBSERVER "fe-3.fe:9010";')
    assert [r["Host"] for r in rows(db, "SHOW FRONTENDS")] == ["127.0.0.1"]


def test_non_master_forwards_alter_system_until_master_dies(cluster: SimCluster, server: SimFeServer) -> None:
    cluster.register_frontend("127.0.0.1", 9011)
    with (
        SimFeServer(cluster, frontend=("127.0.0.1", 9011)) as follower,
        pymysql.connect(host="127.0.0.1", port=follower.port, user="root") as connection,
        connection.cursor() as cursor,
    ):
        by_port = {r["EditLogPort"]: r for r in rows(cursor, "SHOW FRONTENDS")}
        assert (by_port["9010"]["IsMaster"], by_port["9010"]["CurrentConnected"]) == ("true", "No")
        assert (by_port["9011"]["IsMaster"], by_port["9011"]["CurrentConnected"]) == ("false", "Yes")
        assert by_port["9011"]["QueryPort"] == str(follower.port)

        cursor.execute('ALTER SYSTEM ADD BACKEND "10.0.0.1:9050"')
        assert [r["Host"] for r in cluster.show_backends().dicts()] == ["10.0.0.1"]

        cluster.set_frontend_alive("127.0.0.1", 9010, False)
        assert error_of(cursor, 'ALTER SYSTEM ADD BACKEND "10.0.0.2:9050"') == (
            1105,
            "Exception, msg: Node catalog is not ready, please wait for a while.",
        )
        by_port = {r["EditLogPort"]: r for r in rows(cursor, "SHOW FRONTENDS")}
        assert (by_port["9010"]["Alive"], by_port["9010"]["ErrMsg"]) == ("false", "Unknown error")
        assert by_port["9011"]["Alive"] == "true"  # the answering FE always shows itself alive

        cluster.set_master("127.0.0.1", 9011)
        cursor.execute('ALTER SYSTEM ADD BACKEND "10.0.0.2:9050"')
        assert {r["IsMaster"] for r in rows(cursor, "SHOW FRONTENDS") if r["EditLogPort"] == "9011"} == {
            "true"
        }


def test_stopping_a_server_shows_its_frontend_dead(cluster: SimCluster) -> None:
    cluster.register_frontend("127.0.0.1", 9011, role="OBSERVER")
    with SimFeServer(cluster, frontend=("127.0.0.1", 9011)) as observer:
        assert observer.port > 0
    (row,) = [r for r in cluster.show_frontends().dicts() if r["EditLogPort"] == "9011"]
    assert (row["Alive"], row["ErrMsg"], row["CurrentConnected"]) == ("false", "Unknown error", "No")


# --- brokers ----------------------------------------------------------------------------------


def test_broker_statements(db: Any, cluster: SimCluster, clock: ManualClock) -> None:
    db.execute('ALTER SYSTEM ADD BROKER broker001 "10.0.0.5:8000", "10.0.0.6:8000"')
    cluster.set_broker_alive("10.0.0.5", 8000, True)
    clock.advance(5)
    first, second = rows(db, "SHOW BROKER")
    assert first == {
        "Name": "broker001",
        "Host": "10.0.0.5",
        "Port": "8000",
        "Alive": "true",
        "LastStartTime": "2024-07-28 17:57:39",
        "LastUpdateTime": "2024-07-28 17:57:44",
        "ErrMsg": "",
    }
    assert (second["Alive"], second["LastStartTime"]) == ("false", "\\N")
    assert error_of(db, 'ALTER SYSTEM ADD BROKER broker001 "10.0.0.5:8000"') == (
        1105,
        "errCode = 2, detailMessage = Broker(10.0.0.5:8000) has already in brokers.",
    )
    assert error_of(db, 'ALTER SYSTEM DROP BROKER broker001 "10.0.0.7:8000"') == (
        1105,
        "errCode = 2, detailMessage = Broker(10.0.0.7:8000) has not in brokers.",
    )
    assert error_of(db, 'ALTER SYSTEM DROP BROKER nobody "10.0.0.5:8000"') == (
        1105,
        "errCode = 2, detailMessage = Unknown broker name(nobody)",
    )
    db.execute('ALTER SYSTEM DROP BROKER `broker001` "10.0.0.5:8000"')
    assert [r["Host"] for r in rows(db, "SHOW BROKER")] == ["10.0.0.6"]
    db.execute("ALTER SYSTEM DROP ALL BROKER broker001")
    assert rows(db, "SHOW BROKER") == []


# --- parsing, trivial statements, errors ------------------------------------------------------


def test_statement_spelling_is_tolerant(db: Any) -> None:
    db.execute("  alter\n system   ADD backend '10.0.0.1:9050' ;  ")
    db.execute('/* comment */ Alter System Modify Backend "10.0.0.1:9050" Set (\'disable_query\'="true");')
    assert '"isQueryDisabled":true' in rows(db, "show   backends ;")[0]["Status"]


def test_unknown_statement_is_a_syntax_error(db: Any) -> None:
    assert error_of(db, "FOO BAR") == (
        1105,
        "errCode = 2, detailMessage = Syntax error in line 1:\nFOO BAR\n^\nEncountered: IDENTIFIER",
    )
    assert error_of(db, "SHOW BACKENDS extra") == (
        1105,
        "errCode = 2, detailMessage = Syntax error in line 1:\nSHOW BACKENDS extra\n"
        "              ^\nEncountered: IDENTIFIER",
    )
    assert error_of(db, "ALTER SYSTEM ADD BACKEND") == (
        1105,
        "errCode = 2, detailMessage = Syntax error in line 1:\nALTER SYSTEM ADD BACKEND\n"
        "                        ^\nEncountered: EOF",
    )


def test_unknown_proc_path(db: Any) -> None:
    assert error_of(db, "SHOW PROC '/nope'") == (
        5001,
        "errCode = 2, detailMessage = Proc path '/nope' doesn't exist",
    )


def test_connection_chatter(db: Any, server: SimFeServer) -> None:
    assert db.connection.get_server_info() == "5.7.99"
    db.execute("SET NAMES utf8mb4")
    db.execute("USE information_schema")
    db.execute("select @@version_comment limit 1")
    assert db.fetchall() == ((f"Doris version {server.cluster.profile.build}",),)
    db.execute("SELECT 1")
    assert db.fetchall() == ((1,),)
    assert error_of(db, "SELECT @@nonsense") == (1193, "Unknown system variable 'nonsense'")


# --- authentication ---------------------------------------------------------------------------


def test_authentication(server: SimFeServer, cluster: SimCluster) -> None:
    def connect(user: str, password: str) -> None:
        pymysql.connect(host="127.0.0.1", port=server.port, user=user, password=password).close()

    connect("root", "")
    connect("admin", "s3cret")
    for user, password, expected in [
        ("admin", "wrong", "Access denied for user 'admin@127.0.0.1' (using password: YES)"),
        ("root", "something", "Access denied for user 'root@127.0.0.1' (using password: YES)"),
        ("ghost", "", "Access denied for user 'ghost@127.0.0.1' (using password: NO)"),
    ]:
        with pytest.raises(pymysql.OperationalError) as info:
            connect(user, password)
        assert info.value.args == (1045, expected)
    cluster.set_user("root", "newpass")
    connect("root", "newpass")


# --- Python API -------------------------------------------------------------------------------


def test_python_api_raises_doris_errors(cluster: SimCluster) -> None:
    cluster.register_backend("10.0.0.1", 9050)
    with pytest.raises(SimSqlError) as info:
        cluster.register_backend("10.0.0.1", 9050)
    assert (info.value.code, info.value.message) == (
        1105,
        "errCode = 2, detailMessage = Same backend already exists[10.0.0.1:9050]",
    )
    cluster.unregister_backend("10.0.0.1", 9050)
    cluster.register_frontend("fe-1", 9010, role="observer")
    cluster.unregister_frontend("fe-1", 9010)
    cluster.register_broker("b", "10.0.0.5")
    cluster.unregister_broker("b", "10.0.0.5")
    assert cluster.show_backends().rows == ()
    assert cluster.show_brokers().rows == ()
    assert len(cluster.show_frontends().rows) == 1


def test_auto_start_brings_sql_added_nodes_up(clock: ManualClock) -> None:
    cluster = SimCluster("3.0.3", clock=clock, auto_start=True)
    cluster.execute('ALTER SYSTEM ADD BACKEND "10.0.0.1:9050"; ALTER SYSTEM ADD FOLLOWER "fe-1:9010"')
    assert cluster.show_backends().dicts()[0]["Alive"] == "true"
    assert [r["Alive"] for r in cluster.show_frontends().dicts()] == ["true", "true"]


def test_cli_serves_the_requested_version() -> None:
    command = [
        sys.executable,
        "-m",
        "doris_sim.fe",
        "--port",
        "0",
        "--version",
        "2.0.12",
        "--user",
        "op:pw",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert "listening on 127.0.0.1:" in line, line
            port = int(line.rsplit(":", 1)[1])
            with (
                pymysql.connect(host="127.0.0.1", port=port, user="op", password="pw") as connection,
                connection.cursor() as cursor,
            ):
                cursor.execute("SHOW FRONTENDS")
                assert [d[0] for d in cursor.description] == FE_COLUMNS_2_0
        finally:
            process.terminate()
            process.wait(timeout=10)
