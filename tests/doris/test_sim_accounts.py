"""The simulated FE's users, roles, grants, databases and tables, over MySQL with real logins."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from doris_sim.fe import SimCluster, SimFeServer

pytestmark = pytest.mark.timeout(60)


def native_hash(password: str) -> str:
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


@pytest.fixture
def cluster() -> SimCluster:
    return SimCluster("2.1.8")


@pytest.fixture
def server(cluster: SimCluster) -> Iterator[SimFeServer]:
    with SimFeServer(cluster) as server:
        yield server


def connect(server: SimFeServer, user: str, password: str = "") -> Any:
    return pymysql.connect(host="127.0.0.1", port=server.port, user=user, password=password, autocommit=True)


def run(server: SimFeServer, sql: str, user: str = "root", password: str = "") -> None:
    with connect(server, user, password) as conn, conn.cursor() as cursor:
        cursor.execute(sql)


def error(server: SimFeServer, sql: str, user: str = "root", password: str = "") -> tuple[int, str]:
    with pytest.raises(pymysql.MySQLError) as info:
        run(server, sql, user, password)
    return info.value.args[0], info.value.args[1]


def denied(server: SimFeServer, user: str, password: str) -> str:
    with pytest.raises(pymysql.err.OperationalError) as info:
        connect(server, user, password)
    assert info.value.args[0] == 1045
    return str(info.value.args[1])


def test_new_cluster_has_root_and_admin_without_password(server: SimFeServer) -> None:
    connect(server, "root").close()
    connect(server, "admin").close()
    assert "Access denied for user 'root@127.0.0.1' (using password: YES)" in denied(server, "root", "x")
    assert "(using password: NO)" in denied(server, "nobody", "")


def test_set_password_changes_what_logs_in(server: SimFeServer, cluster: SimCluster) -> None:
    run(server, f"SET PASSWORD FOR 'root'@'%' = '{native_hash('n3w')}'")
    denied(server, "root", "")
    connect(server, "root", "n3w").close()
    run(server, "SET PASSWORD FOR 'admin' = PASSWORD('adm1n')", "root", "n3w")
    denied(server, "admin", "")
    connect(server, "admin", "adm1n").close()
    # own password without FOR
    run(server, "SET PASSWORD = PASSWORD('again')", "admin", "adm1n")
    connect(server, "admin", "again").close()
    code, message = error(server, "SET PASSWORD FOR 'root' = '*1234'", "root", "n3w")
    assert (code, message) == (
        1372,
        "errCode = 2, detailMessage = Password hash should be a 41-digit hexadecimal number",
    )
    code, message = error(server, "SET PASSWORD FOR 'ghost'@'%' = PASSWORD('x')", "root", "n3w")
    assert message == "errCode = 2, detailMessage = user 'ghost'@'%' does not exist"
    assert all("n3w" not in (s.error or "") for s in cluster.statement_log())


def test_create_user_grant_and_login(server: SimFeServer, cluster: SimCluster) -> None:
    run(server, "CREATE DATABASE sales")
    run(server, f"CREATE USER 'jack'@'%' IDENTIFIED BY PASSWORD '{native_hash('j4ck')}'")
    code, message = error(server, "CREATE USER 'jack'@'%' IDENTIFIED BY 'other'")
    assert (code, message) == (1105, "errCode = 2, detailMessage = User 'jack'@'%' already exist")
    run(server, "CREATE USER IF NOT EXISTS 'jack'@'%' IDENTIFIED BY 'other'")  # ignored: password kept
    connect(server, "jack", "j4ck").close()
    denied(server, "jack", "other")
    run(server, "GRANT SELECT_PRIV, LOAD_PRIV ON sales.* TO 'jack'@'%'")
    run(server, "GRANT ALL ON internal.`sales`.* TO jack@'%'")
    assert cluster.accounts.privileges("jack")["internal.sales.*"] >= {
        "SELECT_PRIV",
        "LOAD_PRIV",
        "DROP_PRIV",
    }
    code, message = error(server, "GRANT SELECT_PRIV ON nope.* TO 'jack'@'%'")
    assert message == "errCode = 2, detailMessage = database:nope does not exist"
    code, message = error(server, "GRANT SELECT_PRIV ON sales.* TO 'jill'@'%'")
    assert message == "errCode = 2, detailMessage = user 'jill'@'%' does not exist"
    code, message = error(server, "GRANT BOGUS_PRIV ON sales.* TO 'jack'@'%'")
    assert "Unknown privilege type BOGUS_PRIV" in message
    # a user without GRANT_PRIV can't create users
    code, message = error(server, "CREATE USER 'eve' IDENTIFIED BY 'x'", "jack", "j4ck")
    assert (code, message) == (
        1227,
        "errCode = 2, detailMessage = Access denied; you need (at least one of) the (GRANT) "
        "privilege(s) for this operation",
    )
    # ALTER USER changes the password
    run(server, "ALTER USER 'jack'@'%' IDENTIFIED BY 'n3xt'")
    connect(server, "jack", "n3xt").close()
    code, message = error(server, "ALTER USER 'ghost'@'%' IDENTIFIED BY 'x'")
    assert (code, message) == (
        1396,
        "errCode = 2, detailMessage = Operation ALTER USER failed for 'ghost'@'%'",
    )
    run(server, "DROP USER 'jack'@'%'")
    denied(server, "jack", "n3xt")
    code, message = error(server, "DROP USER 'jack'@'%'")
    assert message == "errCode = 2, detailMessage = User `jack`@`%` does not exist."
    run(server, "DROP USER IF EXISTS 'jack'@'%'")


def test_roles(server: SimFeServer, cluster: SimCluster) -> None:
    run(server, "CREATE ROLE analyst")
    _code, message = error(server, "CREATE ROLE analyst")
    assert message == "errCode = 2, detailMessage = Role analyst already exists"
    run(server, "CREATE ROLE IF NOT EXISTS 'analyst'")
    run(server, "CREATE DATABASE IF NOT EXISTS sales")
    run(server, "GRANT SELECT_PRIV ON sales.* TO ROLE 'analyst'")
    run(server, "CREATE USER 'amy' IDENTIFIED BY 'a'")
    _code, message = error(server, "GRANT 'ghost' TO 'amy'@'%'")
    assert message == "errCode = 2, detailMessage = role:ghost does not exist"
    run(server, "GRANT 'analyst' TO 'amy'@'%'")
    assert cluster.accounts.roles_of("amy") == {"analyst"}
    assert cluster.accounts.privileges("amy")["internal.sales.*"] == {"SELECT_PRIV"}


def test_databases_and_tables(server: SimFeServer, cluster: SimCluster) -> None:
    run(server, "CREATE DATABASE sales")
    code, message = error(server, "CREATE DATABASE sales")
    assert (code, message) == (
        1007,
        "errCode = 2, detailMessage = Can't create database 'sales'; database exists",
    )
    run(server, "CREATE DATABASE IF NOT EXISTS sales")
    ddl = """CREATE TABLE sales.orders (
        id BIGINT NOT NULL COMMENT 'id; with a semicolon',
        amount DECIMAL(10, 2) DEFAULT "0",
        note VARCHAR(200)
    ) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 10 PROPERTIES ("replication_num" = "1")"""
    run(server, ddl)
    assert cluster.accounts.databases["sales"]["orders"] == ["id", "amount", "note"]
    code, message = error(server, ddl)
    assert (code, message) == (1050, "errCode = 2, detailMessage = Table 'orders' already exists")
    run(server, ddl.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
    code, message = error(server, "CREATE TABLE nope.t (a INT)")
    assert (code, message) == (1049, "errCode = 2, detailMessage = Unknown database 'nope'")
    code, message = error(server, "CREATE TABLE t (a INT)")
    assert (code, message) == (1046, "errCode = 2, detailMessage = No database selected")
    with connect(server, "root") as conn, conn.cursor() as cursor:
        cursor.execute("USE sales")
        cursor.execute("CREATE TABLE items (a INT, b INT)")
    assert "items" in cluster.accounts.databases["sales"]
    code, message = error(server, "USE nope")
    assert (code, message) == (1049, "errCode = 2, detailMessage = Unknown database 'nope'")


def test_statement_log_records_who_ran_what(server: SimFeServer, cluster: SimCluster) -> None:
    run(server, "CREATE DATABASE d1")
    error(server, "CREATE DATABASE d1")
    log = [s for s in cluster.statement_log() if s.user == "root" and s.sql.startswith("CREATE")]
    assert [(s.sql, s.error_code) for s in log][-2:] == [
        ("CREATE DATABASE d1", None),
        ("CREATE DATABASE d1", 1007),
    ]
