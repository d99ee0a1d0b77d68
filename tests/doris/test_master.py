"""The master's view: forward_to_master, the IsMaster row verified, a direct connection otherwise; and
tablet health read by Doris's column names."""

from __future__ import annotations

from typing import Any

import pytest

from doris_operator.doris.client import (
    Credentials,
    DorisError,
    Frontend,
    Timeouts,
    UnreachableError,
    parse_statistic,
    parse_tablet_health,
)
from doris_operator.doris.identity import Member, dump_members, parse_members
from doris_operator.doris.master import MasterUnknownError, check_master, open_master_view


def fe(host: str, master: bool = False, alive: bool = True, connected: bool = False) -> Frontend:
    return Frontend(
        name=f"fe_{host}",
        host=host,
        edit_log_port=9010,
        role="FOLLOWER",
        is_master=master,
        alive=alive,
        query_port=9030,
        current_connected=connected,
    )


class FakeClient:
    def __init__(self, host: str, frontends: list[Frontend], forwards: bool = True) -> None:
        self.host, self.port = host, 9030
        self.credentials, self.timeouts = Credentials(), Timeouts()
        self.frontends, self.forwards = frontends, forwards
        self.closed = False
        self.statements: list[str] = []

    def set_forward_to_master(self) -> None:
        self.statements.append("SET forward_to_master = true")
        if not self.forwards:
            raise DorisError(1105, "Unknown system variable 'forward_to_master'")

    def show_frontends(self) -> list[Frontend]:
        return self.frontends

    def close(self) -> None:
        self.closed = True


def test_a_verified_alive_master_is_required() -> None:
    with pytest.raises(MasterUnknownError, match="returned no frontend"):
        check_master([], "fe:9030")
    with pytest.raises(MasterUnknownError, match="no master"):
        check_master([fe("a"), fe("b")], "fe:9030")
    with pytest.raises(MasterUnknownError, match="not alive"):
        check_master([fe("a", master=True, alive=False)], "fe:9030")
    with pytest.raises(MasterUnknownError, match="2 masters"):
        check_master([fe("a", master=True), fe("b", master=True)], "fe:9030")


def test_a_non_master_that_forwards_is_kept() -> None:
    client = FakeClient("b", [fe("a", master=True), fe("b", connected=True)])
    got, view = open_master_view(client)  # type: ignore[arg-type]
    assert got is client and view.forwarded and view.master.host == "a" and view.connected
    assert view.connected.host == "b" and client.statements == ["SET forward_to_master = true"]


def test_a_non_master_that_does_not_forward_leads_to_the_master() -> None:
    master_client = FakeClient("a", [fe("a", master=True, connected=True), fe("b")])
    seen: list[tuple[str, int]] = []

    def connect(host: str, port: int, *_: Any) -> Any:
        seen.append((host, port))
        return master_client

    client = FakeClient("b", [fe("a", master=True), fe("b", connected=True)], forwards=False)
    got, view = open_master_view(client, connect)  # type: ignore[arg-type]
    assert got is master_client and view.on_master and not view.forwarded and client.closed
    assert seen == [("a", 9030)]

    def unreachable(host: str, port: int, *_: Any) -> Any:
        raise UnreachableError(2003, f"Can't connect to {host}")

    client = FakeClient("b", [fe("a", master=True), fe("b", connected=True)], forwards=False)
    with pytest.raises(MasterUnknownError, match="does not forward"):
        open_master_view(client, unreachable)  # type: ignore[arg-type]


TABLET_HEALTH_COLUMNS = [
    "DbId", "DbName", "TabletNum", "HealthyNum", "ReplicaMissingNum", "VersionIncompleteNum",
    "ReplicaRelocatingNum", "RedundantNum", "ReplicaMissingInClusterNum", "ReplicaMissingForTagNum",
    "ForceRedundantNum", "ColocateMismatchNum", "ColocateRedundantNum", "NeedFurtherRepairNum",
    "UnrecoverableNum", "ReplicaCompactionTooSlowNum", "InconsistentNum", "OversizeNum", "CloningNum",
]  # fmt: skip


def test_tablet_health_reads_the_total_row_by_name() -> None:
    # from the Doris docs (tablet repair and balance): ssb1 has one tablet with a missing replica
    rows = [
        ["10005", "default_cluster:doris_audit_db", "84", "84", *["0"] * 15],
        ["13402", "default_cluster:ssb1", "709", "708", "1", *["0"] * 14],
        ["Total", "3", "1071", "1070", "1", *["0"] * 13, "2"],
    ]
    health = parse_tablet_health(TABLET_HEALTH_COLUMNS, rows)
    assert (health.tablets, health.healthy, health.unhealthy, health.cloning) == (1071, 1070, 1, 2)
    assert not health.settled and "1070/1071 tablets healthy" in health.describe()
    with pytest.raises(DorisError, match="no Total row"):
        parse_tablet_health(TABLET_HEALTH_COLUMNS, rows[:2])


def test_statistic_reads_unhealthy_cloning_and_replicas() -> None:
    columns = [
        "DbId", "DbName", "TableNum", "PartitionNum", "IndexNum", "TabletNum", "ReplicaNum",
        "UnhealthyTabletNum", "InconsistentTabletNum", "CloningTabletNum", "BadTabletNum",
    ]  # fmt: skip
    rows = [["Total", "1", "3", "3", "3", "30", "60", "0", "0", "0", "0"]]
    health = parse_statistic(columns, rows)
    assert health.settled and (health.tablets, health.replicas) == (30, 60)


def test_members_annotation_round_trips_and_tolerates_garbage() -> None:
    members = {
        3: Member(ip="10.0.0.3", node_id="10003", host="h", port=9050, leaving=True),
        0: Member(ip="x"),
    }
    assert parse_members(dump_members(members)) == members
    assert parse_members("{not json") == {} and parse_members(None) == {}
    assert parse_members('{"a": {}, "1": 5, "2": {"port": true, "leaving": "yes"}}') == {2: Member()}
