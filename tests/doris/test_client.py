"""The FE client: parsing by column name, statements, error kinds and master redirection."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import datetime

import pytest

from doris_operator.doris.client import (
    AccessDeniedError,
    AlreadyExistsError,
    Credentials,
    DorisClient,
    DorisError,
    ErrorKind,
    NotFoundError,
    NotMasterError,
    RefusedError,
    Timeouts,
    UnreachableError,
    connect_master,
    error_from_mysql,
    find_master,
    host_port_literal,
    parse_backends,
    parse_brokers,
    parse_capacity,
    parse_frontends,
    resolve_credentials,
)
from doris_sim.fe import ManualClock, SimCluster, SimFeServer

pytestmark = pytest.mark.timeout(60)

ROOT = Credentials()
FAST = Timeouts(connect=2, read=5, write=5)


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
def client(server: SimFeServer) -> Iterator[DorisClient]:
    with DorisClient.connect("127.0.0.1", server.port, ROOT, FAST) as client:
        yield client


# --- credentials ------------------------------------------------------------------------------


def test_resolve_credentials_order() -> None:
    secret = {"username": b"ops", "password": b"pw"}
    assert resolve_credentials(secret, ("admin", "x")) == Credentials("ops", "pw")
    assert resolve_credentials({"password": b"pw"}, None) == Credentials("root", "pw")
    assert resolve_credentials(None, ("admin", "x")) == Credentials("admin", "x")
    assert resolve_credentials(None, ("admin", None)) == Credentials("admin", "")
    assert resolve_credentials(None, None) == Credentials("root", "")
    assert "pw" not in repr(Credentials("ops", "pw"))


# --- parsing by column name -------------------------------------------------------------------

# Real rows from the reference: doris-2.0.12 (Quick Start) and doris-2.1.7 (3.x docs example).
FE_2_0_COLUMNS = [
    "Name", "Host", "EditLogPort", "HttpPort", "QueryPort", "RpcPort", "Role", "IsMaster", "ClusterId",
    "Join", "Alive", "ReplayedJournalId", "LastHeartbeat", "IsHelper", "ErrMsg", "Version",
    "CurrentConnected",
]  # fmt: skip
FE_2_0_ROW = [
    "fe_9d0169c5_b01f_478c_96ab_7c4e8602ec57", "127.0.0.1", "9010", "8030", "9030", "9020", "FOLLOWER",
    "true", "656872880", "true", "true", "276", "2024-07-28 18:07:39", "true", "", "doris-2.0.12-2971efd194",
    "Yes",
]  # fmt: skip
BE_2_0_COLUMNS = [
    "BackendId", "Host", "HeartbeatPort", "BePort", "HttpPort", "BrpcPort", "LastStartTime",
    "LastHeartbeat", "Alive", "SystemDecommissioned", "TabletNum", "DataUsedCapacity",
    "TrashUsedCapcacity", "AvailCapacity", "TotalCapacity", "UsedPct", "MaxDiskUsedPct",
    "RemoteUsedCapacity", "Tag", "ErrMsg", "Version", "Status", "HeartbeatFailureCounter", "NodeRole",
]  # fmt: skip
BE_2_0_ROW = [
    "10156", "127.0.0.1", "9050", "9060", "8040", "8060", "2024-07-28 17:59:14", "2024-07-28 18:08:24",
    "true", "false", "14", "0.000", "0.000", "8.342 GB", "19.560 GB", "57.35 %", "57.35 %", "0.000",
    '{"location" : "default"}', "", "doris-2.0.12-2971efd194",
    '{"lastSuccessReportTabletsTime":"2024-07-28 18:08:14","lastStreamLoadTime":-1,'
    '"isQueryDisabled":false,"isLoadDisabled":false}',
    "0", "mix",
]  # fmt: skip


def test_parse_frontend_2_0() -> None:
    (fe,) = parse_frontends(FE_2_0_COLUMNS, [FE_2_0_ROW])
    assert (fe.name, fe.host, fe.edit_log_port, fe.role) == (
        "fe_9d0169c5_b01f_478c_96ab_7c4e8602ec57", "127.0.0.1", 9010, "FOLLOWER",
    )  # fmt: skip
    assert (fe.is_master, fe.alive, fe.join, fe.is_helper, fe.current_connected) == (
        True,
        True,
        True,
        True,
        True,
    )
    assert (fe.http_port, fe.query_port, fe.rpc_port, fe.cluster_id) == (8030, 9030, 9020, 656872880)
    assert (fe.replayed_journal_id, fe.err_msg, fe.version) == (276, "", "doris-2.0.12-2971efd194")
    assert fe.last_heartbeat == datetime(2024, 7, 28, 18, 7, 39)
    # Columns this version does not have.
    assert (fe.arrow_flight_sql_port, fe.last_start_time) == (None, None)


def test_parse_backend_2_0_with_typo_column() -> None:
    (be,) = parse_backends(BE_2_0_COLUMNS, [BE_2_0_ROW])
    assert (be.backend_id, be.host, be.heartbeat_port, be.be_port, be.brpc_port) == (
        10156,
        "127.0.0.1",
        9050,
        9060,
        8060,
    )
    assert (be.alive, be.system_decommissioned, be.tablet_num) == (True, False, 14)
    assert be.last_start_time == datetime(2024, 7, 28, 17, 59, 14)
    assert (be.data_used_capacity, be.trash_used_capacity) == (0, 0)
    assert be.avail_capacity == round(8.342 * (1 << 30))
    assert (be.used_pct, be.max_disk_used_pct) == (57.35, 57.35)
    assert be.tag == {"location": "default"}
    assert (be.query_disabled, be.load_disabled, be.node_role, be.is_compute_node) == (
        False,
        False,
        "mix",
        False,
    )
    assert (be.arrow_flight_sql_port, be.cpu_cores, be.memory) == (None, None, None)


def test_parse_backend_later_layout_by_name() -> None:
    """A later build: extra columns, NodeRole moved to the end and empty for a dead CN."""
    columns = [
        "BackendId", "Host", "HeartbeatPort", "BePort", "HttpPort", "BrpcPort", "ArrowFlightSqlPort",
        "LastStartTime", "LastHeartbeat", "Alive", "SystemDecommissioned", "TabletNum", "DataUsedCapacity",
        "TrashUsedCapacity", "AvailCapacity", "TotalCapacity", "UsedPct", "MaxDiskUsedPct",
        "RemoteUsedCapacity", "Tag", "ErrMsg", "Version", "Status", "HeartbeatFailureCounter", "CpuCores",
        "Memory", "RunningTasks", "NodeRole",
    ]  # fmt: skip
    row = [
        "10002", "cn-0.cn", "9050", "9060", "8040", "8060", "10040", "\\N", "\\N", "false", "true", "0",
        "9.690 MB", "1.000 KB", "3.437 TB", "3.500 TB", "1.80 %", "2.10 %", "0.000 ",
        '{"location" : "default", "compute_group_name" : "cg1", "compute_group_id" : "7"}', "Unknown error",
        "doris-3.0.3-abc", '{"lastSuccessReportTabletsTime":"N/A","lastStreamLoadTime":-1,'
        '"isQueryDisabled":true,"isLoadDisabled":false,"isActive":true}', "3", "16", "375.81 GB", "2", "",
    ]  # fmt: skip
    (be,) = parse_backends(columns, [row])
    assert (be.arrow_flight_sql_port, be.last_start_time, be.last_heartbeat) == (10040, None, None)
    assert (be.alive, be.system_decommissioned, be.tablet_num) == (False, True, 0)
    assert (be.data_used_capacity, be.trash_used_capacity) == (round(9.69 * (1 << 20)), 1024)
    assert be.tag == {"location": "default", "compute_group_name": "cg1", "compute_group_id": "7"}
    assert (be.query_disabled, be.load_disabled, be.heartbeat_failure_counter) == (True, False, 3)
    assert (be.cpu_cores, be.memory, be.node_role, be.err_msg) == (
        16,
        round(375.81 * (1 << 30)),
        "",
        "Unknown error",
    )


def test_parse_broker() -> None:
    columns = ["Name", "Host", "Port", "Alive", "LastStartTime", "LastUpdateTime", "ErrMsg", "Ip"]
    row = ["broker_test", "10.10.10.1", "8196", "true", "2025-01-21 11:30:10", "2025-01-21 11:31:40", "", "x"]
    (broker,) = parse_brokers(columns, [row])
    assert (broker.name, broker.host, broker.port, broker.alive, broker.err_msg) == (
        "broker_test", "10.10.10.1", 8196, True, "",
    )  # fmt: skip
    assert broker.last_update_time == datetime(2025, 1, 21, 11, 31, 40)


def test_missing_or_bad_required_column_is_an_error() -> None:
    columns = [c for c in FE_2_0_COLUMNS if c != "IsMaster"]
    row = [v for c, v in zip(FE_2_0_COLUMNS, FE_2_0_ROW, strict=True) if c != "IsMaster"]
    with pytest.raises(DorisError, match="no value for column IsMaster"):
        parse_frontends(columns, [row])
    bad = ["maybe" if c == "Alive" else v for c, v in zip(FE_2_0_COLUMNS, FE_2_0_ROW, strict=True)]
    with pytest.raises(DorisError, match="unparsable Alive"):
        parse_frontends(FE_2_0_COLUMNS, [bad])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.000 ", 0),
        ("0.000", 0),
        ("1.000 B", 1),
        ("2.500 KB", 2560),
        ("10.505 GB", round(10.505 * (1 << 30))),
        ("?", None),
    ],
)
def test_parse_capacity(text: str, expected: int | None) -> None:
    assert parse_capacity(text) == expected


# --- statements -------------------------------------------------------------------------------


def test_host_port_literal_quotes_and_rejects_injection() -> None:
    assert host_port_literal("be-0.be.ns.svc.cluster.local", 9050) == '"be-0.be.ns.svc.cluster.local:9050"'
    assert host_port_literal("10.0.0.1", 9050) == '"10.0.0.1:9050"'
    assert host_port_literal("fd00::1", 9050) == '"[fd00::1]:9050"'
    for host in ['a"b', "a'b", "a b", "a\tb", "a\nb", "a;b", "a`b", "a\\b", ""]:
        with pytest.raises(ValueError):
            host_port_literal(host, 9050)
    for port in [0, 65536, -1]:
        with pytest.raises(ValueError):
            host_port_literal("h", port)
    with pytest.raises(ValueError):
        host_port_literal("h", True)


def test_unsafe_input_never_reaches_the_server(client: DorisClient, cluster: SimCluster) -> None:
    with pytest.raises(ValueError):
        client.add_backend('x:1" ; ALTER SYSTEM DROPP BACKEND "y', 9050)
    with pytest.raises(ValueError):
        client.add_broker("b`; DROP", "10.0.0.5", 8000)
    with pytest.raises(ValueError):
        client.decommission_backends([])
    with pytest.raises(ValueError):
        client.modify_backend("10.0.0.1", 9050)
    assert cluster.show_backends().rows == ()


@pytest.mark.parametrize("version", ["2.0.12", "2.1.0", "2.1.8", "3.0.3"])
def test_reads_every_supported_version(version: str, clock: ManualClock) -> None:
    cluster = SimCluster(version, clock=clock)
    cluster.register_backend("10.0.0.1", 9050, tablets=12)
    cluster.register_broker("broker001", "10.0.0.5", 8000)
    with SimFeServer(cluster) as server, DorisClient.connect("127.0.0.1", server.port, ROOT, FAST) as client:
        (fe,) = client.show_frontends()
        assert (fe.is_master, fe.alive, fe.current_connected, fe.query_port) == (
            True,
            True,
            True,
            server.port,
        )
        assert fe.version is not None and fe.version.startswith(f"doris-{version}-")
        assert (fe.arrow_flight_sql_port is None) == (version == "2.0.12")
        (be,) = client.show_backends()
        assert (be.host, be.heartbeat_port, be.alive, be.tablet_num, be.trash_used_capacity) == (
            "10.0.0.1", 9050, True, 12, 0,
        )  # fmt: skip
        assert be.total_capacity == 100 << 30
        assert be.last_start_time == datetime(2024, 7, 28, 17, 57, 39)
        (broker,) = client.show_brokers()
        assert (broker.name, broker.host, broker.port, broker.alive) == ("broker001", "10.0.0.5", 8000, True)


def test_frontend_statements(client: DorisClient) -> None:
    client.add_follower("fe-1.fe", 9010)
    client.add_observer("fe-3.fe", 9010)
    roles = {fe.host: (fe.role, fe.alive, fe.join) for fe in client.show_frontends()}
    assert roles == {
        "127.0.0.1": ("FOLLOWER", True, True),
        "fe-1.fe": ("FOLLOWER", False, False),
        "fe-3.fe": ("OBSERVER", False, False),
    }
    client.drop_observer("fe-3.fe", 9010)
    client.drop_follower("fe-1.fe", 9010)
    assert [fe.host for fe in client.show_frontends()] == ["127.0.0.1"]


def test_backend_statements(client: DorisClient, cluster: SimCluster, clock: ManualClock) -> None:
    client.add_backend("10.0.0.1", 9050)
    cluster.set_backend_alive("10.0.0.1", 9050, True)
    cluster.register_backend("10.0.0.2", 9050, tablets=40)
    cluster.register_backend("10.0.0.3", 9050, tablets=40)

    client.modify_backend("10.0.0.1", 9050, disable_query=True)
    first = client.show_backends()[0]
    assert (first.query_disabled, first.load_disabled) == (True, False)
    client.modify_backend("10.0.0.1", 9050, disable_query=False, disable_load=True)
    first = client.show_backends()[0]
    assert (first.query_disabled, first.load_disabled) == (False, True)

    client.decommission_backends([("10.0.0.2", 9050), ("10.0.0.3", 9050)])
    clock.advance(1)
    state = {be.host: (be.system_decommissioned, be.tablet_num) for be in client.show_backends()}
    assert state == {"10.0.0.1": (False, 20), "10.0.0.2": (True, 30), "10.0.0.3": (True, 30)}

    client.cancel_decommission_backends([("10.0.0.3", 9050)])
    clock.advance(3)
    state = {be.host: (be.system_decommissioned, be.tablet_num) for be in client.show_backends()}
    # 10.0.0.2 drained into the two others (fewest tablets first) and is gone.
    assert state == {"10.0.0.1": (False, 40), "10.0.0.3": (False, 40)}

    client.dropp_backends([("10.0.0.3", 9050)])
    assert [be.host for be in client.show_backends()] == ["10.0.0.1"]


def test_broker_statements(client: DorisClient) -> None:
    client.add_broker("broker001", "10.0.0.5", 8000)
    client.add_broker("broker001", "10.0.0.6", 8000)
    client.drop_broker("broker001", "10.0.0.5", 8000)
    assert [(b.name, b.host, b.port, b.alive) for b in client.show_brokers()] == [
        ("broker001", "10.0.0.6", 8000, False)
    ]


# --- errors -----------------------------------------------------------------------------------


_D = "errCode = 2, detailMessage = "


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (1105, _D + "Same backend already exists[h:9050]", ErrorKind.ALREADY_EXISTS),
        (1105, _D + "frontend already exists name: fe_1, role: FOLLOWER, h:9010", ErrorKind.ALREADY_EXISTS),
        (1105, _D + "Broker(h:8000) has already in brokers.", ErrorKind.ALREADY_EXISTS),
        (1105, _D + "backend does not exists[h:9050]", ErrorKind.NOT_FOUND),
        (1105, _D + "Backend does not exist[h:9050]", ErrorKind.NOT_FOUND),
        (1105, _D + "frontend does not exist[h:9010]", ErrorKind.NOT_FOUND),
        (1105, _D + "OBSERVER does not exist[h:9010]", ErrorKind.NOT_FOUND),
        (1105, _D + "Broker(h:8000) has not in brokers.", ErrorKind.NOT_FOUND),
        (1105, _D + "Unknown broker name(b)", ErrorKind.NOT_FOUND),
        (1105, _D + "can not drop current master node.", ErrorKind.REFUSED),
        (
            1105,
            _D + "It is highly NOT RECOMMENDED to use DROP BACKEND stmt.It is not safe",
            ErrorKind.REFUSED,
        ),
        (1105, _D + "Modifying backends is not supported in cloud mode", ErrorKind.REFUSED),
        (1105, "Exception, msg: Node catalog is not ready, please wait for a while.", ErrorKind.NOT_MASTER),
        (1045, "Access denied for user 'root@10.0.0.9' (using password: YES)", ErrorKind.ACCESS_DENIED),
        (1227, "Access denied; you need (at least one of) the (NODE) privilege(s)", ErrorKind.ACCESS_DENIED),
        (
            2003,
            "Can't connect to MySQL server on 'fe' ([Errno 111] Connection refused)",
            ErrorKind.UNREACHABLE,
        ),
        (2013, "Lost connection to MySQL server during query (timed out)", ErrorKind.UNREACHABLE),
        (1105, _D + "Syntax error in line 1:\nFOO\n^", ErrorKind.UNKNOWN),
    ],
)
def test_error_mapping(code: int, message: str, kind: ErrorKind) -> None:
    error = error_from_mysql(code, message)
    assert (error.code, error.kind) == (code, kind)


def test_error_detail_is_the_detail_message() -> None:
    assert (
        error_from_mysql(1105, _D + "Syntax error in line 1:\nFOO\n^").detail
        == "Syntax error in line 1:\nFOO\n^"
    )
    not_ready = "Exception, msg: Node catalog is not ready, please wait for a while."
    assert error_from_mysql(1105, not_ready).detail == not_ready
    assert isinstance(error_from_mysql(1105, _D + "backend does not exists[h:1]"), NotFoundError)


def test_errors_from_the_server_are_typed(client: DorisClient, cluster: SimCluster) -> None:
    client.add_backend("10.0.0.1", 9050)
    with pytest.raises(AlreadyExistsError) as exists:
        client.add_backend("10.0.0.1", 9050)
    assert (exists.value.code, exists.value.detail) == (1105, "Same backend already exists[10.0.0.1:9050]")
    with pytest.raises(NotFoundError) as missing:
        client.dropp_backends([("10.0.0.9", 9050)])
    assert missing.value.detail == "backend does not exists[10.0.0.9:9050]"
    with pytest.raises(NotFoundError):
        client.decommission_backends([("10.0.0.9", 9050)])
    with pytest.raises(RefusedError) as refused:
        client.drop_follower(*cluster.master)
    assert refused.value.detail == "can not drop current master node."
    with pytest.raises(DorisError) as syntax:
        client.execute("NONSENSE")
    assert syntax.value.kind is ErrorKind.UNKNOWN


def test_wrong_password_is_access_denied_without_leaking_it(server: SimFeServer) -> None:
    with pytest.raises(AccessDeniedError) as info:
        DorisClient.connect("127.0.0.1", server.port, Credentials("admin", "hunter2-secret"), FAST)
    assert info.value.code == 1045
    assert info.value.detail == "Access denied for user 'admin@127.0.0.1' (using password: YES)"
    assert "hunter2-secret" not in str(info.value) + repr(info.value) + repr(info.value.__cause__)
    with DorisClient.connect("127.0.0.1", server.port, Credentials("admin", "s3cret"), FAST) as client:
        assert client.show_frontends()[0].is_master


def test_closed_port_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UnreachableError) as info:
        DorisClient.connect("127.0.0.1", port, ROOT, FAST)
    assert info.value.code == 2003


def test_not_master_when_the_master_is_gone(cluster: SimCluster, server: SimFeServer) -> None:
    cluster.register_frontend("127.0.0.1", 9011)
    with (
        SimFeServer(cluster, frontend=("127.0.0.1", 9011)) as follower,
        DorisClient.connect("127.0.0.1", follower.port, ROOT, FAST) as client,
    ):
        cluster.set_frontend_alive(*cluster.master, False)
        with pytest.raises(NotMasterError):
            client.add_backend("10.0.0.1", 9050)


# --- master awareness -------------------------------------------------------------------------


def test_connect_master_redirects_from_a_follower(cluster: SimCluster, server: SimFeServer) -> None:
    cluster.register_frontend("127.0.0.1", 9011)
    with (
        SimFeServer(cluster, frontend=("127.0.0.1", 9011)) as follower,
        DorisClient.connect("127.0.0.1", follower.port, Credentials("admin", "s3cret"), FAST) as client,
    ):
        master_client = connect_master(client)
        try:
            assert master_client is not client
            assert master_client.port == server.port
            assert master_client.credentials == client.credentials
            master = find_master(master_client.show_frontends())
            assert master is not None and master.current_connected and master.edit_log_port == 9010
        finally:
            master_client.close()
        # Once the follower has won an election, it is its own master.
        cluster.set_master("127.0.0.1", 9011)
        assert connect_master(client) is client


def test_connect_master_on_the_master_returns_the_same_client(client: DorisClient) -> None:
    assert connect_master(client) is client
    assert find_master([]) is None


async def test_usable_from_asyncio_via_threads(cluster: SimCluster) -> None:
    server = SimFeServer(cluster).start()
    try:

        def read() -> int:
            with DorisClient.connect("127.0.0.1", server.port, ROOT, FAST) as client:
                client.add_backend("10.0.0.1", 9050)
                return len(client.show_backends())

        assert await asyncio.to_thread(read) == 1
    finally:
        server.stop()
