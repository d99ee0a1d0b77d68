"""Synchronous client for a Doris FE over the MySQL protocol (port 9030).

The operator calls it through ``asyncio.to_thread``. Result sets are read by column name, because
the columns of SHOW FRONTENDS / SHOW BACKENDS differ between Doris 2.0, 2.1 and 3.x. Errors are
raised as :class:`DorisError` subclasses whose ``kind`` says what went wrong.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

from ..imports import hidden

# pymysql without ``cryptography`` (about 10 MiB of RSS: docs/benchmarks.md, Memory), unless something in
# the process loaded it already.  pymysql needs it only to RSA-encrypt a password for ``sha256_password``
# or the full ``caching_sha2_password`` exchange over plain TCP, which the auth plugins below refuse
# before pymysql gets there (over TLS the password goes as is; without TLS nothing is sent).
with hidden("cryptography"):
    import pymysql
    from pymysql import _auth

_pymysql_auth: Any = _auth  # untyped in types-PyMySQL

log = logging.getLogger(__name__)

_T = TypeVar("_T")

NULL_STRING = "\\N"
"""What Doris prints for an unset timestamp (a literal backslash-N string, not SQL NULL)."""

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_HOST_RE = re.compile(r"^[A-Za-z0-9._:-]{1,253}$")
_BROKER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONFIG_KEY_RE = re.compile(r"^[a-z0-9_]{1,128}$")
_DORIS_MESSAGE_RE = re.compile(r"^errCode = \d+, detailMessage = (.*)$", re.DOTALL)
_CAPACITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(TB|GB|MB|KB|B)?$")
_UNITS = {None: 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
# PyMySQL client-side codes for a server that cannot be reached or went away.
_TRANSPORT_CODES = frozenset({0, 2003, 2006, 2013, 2055})


# ---------------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True)
class Credentials:
    """MySQL user and password; the password never appears in repr()."""

    user: str = "root"
    password: str = field(default="", repr=False)


def resolve_credentials(
    secret_data: Mapping[str, bytes] | None, admin_user: tuple[str, str | None] | None
) -> Credentials:
    """Pick credentials: basic-auth Secret data, else spec.adminUser, else root without password."""
    if secret_data is not None:
        user = secret_data.get("username", b"").decode() or "root"
        return Credentials(user, secret_data.get("password", b"").decode())
    if admin_user is not None:
        name, password = admin_user
        return Credentials(name, password or "")
    return Credentials()


# ---------------------------------------------------------------------------------------------
# Errors


class ErrorKind(enum.StrEnum):
    NOT_MASTER = "NotMaster"
    ALREADY_EXISTS = "AlreadyExists"
    NOT_FOUND = "NotFound"
    UNREACHABLE = "Unreachable"
    ACCESS_DENIED = "AccessDenied"
    REFUSED = "Refused"
    UNKNOWN = "Unknown"


class DorisError(Exception):
    """A failed FE call. ``code`` is the MySQL error number, ``detail`` Doris's detailMessage."""

    kind: ClassVar[ErrorKind] = ErrorKind.UNKNOWN

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"Doris error {code} ({self.kind}): {detail}")
        self.code = code
        self.detail = detail


class NotMasterError(DorisError):
    """The FE could not reach (or find) the master to run the statement."""

    kind = ErrorKind.NOT_MASTER


class AlreadyExistsError(DorisError):
    kind = ErrorKind.ALREADY_EXISTS


class NotFoundError(DorisError):
    kind = ErrorKind.NOT_FOUND


class UnreachableError(DorisError):
    kind = ErrorKind.UNREACHABLE


class AccessDeniedError(DorisError):
    kind = ErrorKind.ACCESS_DENIED


class RefusedError(DorisError):
    """Doris refuses the operation on purpose (dropping the master, plain DROP BACKEND, ...)."""

    kind = ErrorKind.REFUSED


# Substrings of Doris detail messages, checked in order.
_DETAIL_KINDS: tuple[tuple[str, type[DorisError]], ...] = (
    ("catalog is not ready", NotMasterError),
    ("already exists", AlreadyExistsError),
    ("has already in brokers", AlreadyExistsError),
    ("does not exist", NotFoundError),
    ("has not in brokers", NotFoundError),
    ("Unknown broker name", NotFoundError),
    ("can not drop current master node", RefusedError),
    ("NOT RECOMMENDED to use DROP BACKEND", RefusedError),
    ("Unable to drop this alive follower", RefusedError),
    ("not supported in cloud mode", RefusedError),
    ("replication allocation", RefusedError),
)


def error_from_mysql(code: int, message: str) -> DorisError:
    """Map a MySQL error (number, message) as Doris sends it to a typed DorisError."""
    match = _DORIS_MESSAGE_RE.match(message)
    detail = match.group(1) if match else message
    if code in (1045, 1227):
        return AccessDeniedError(code, detail)
    if code in _TRANSPORT_CODES:
        return UnreachableError(code, detail)
    for needle, error_type in _DETAIL_KINDS:
        if needle in detail:
            return error_type(code, detail)
    return DorisError(code, detail)


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except pymysql.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        raise error_from_mysql(code, message) from exc
    except OSError as exc:
        raise UnreachableError(0, str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# Typed rows


@dataclass(frozen=True)
class Frontend:
    """One row of SHOW FRONTENDS. Columns missing in the running Doris version are None."""

    name: str
    host: str
    edit_log_port: int
    role: str
    is_master: bool
    alive: bool
    http_port: int | None = None
    query_port: int | None = None
    rpc_port: int | None = None
    arrow_flight_sql_port: int | None = None
    cluster_id: int | None = None
    join: bool | None = None
    replayed_journal_id: int | None = None
    last_start_time: datetime | None = None
    last_heartbeat: datetime | None = None
    is_helper: bool | None = None
    err_msg: str | None = None
    version: str | None = None
    current_connected: bool | None = None


@dataclass(frozen=True)
class Backend:
    """One row of SHOW BACKENDS (BE or CN). Capacities are in bytes, percentages as floats."""

    backend_id: int
    host: str
    heartbeat_port: int
    alive: bool
    system_decommissioned: bool
    tablet_num: int
    be_port: int | None = None
    http_port: int | None = None
    brpc_port: int | None = None
    arrow_flight_sql_port: int | None = None
    last_start_time: datetime | None = None
    last_heartbeat: datetime | None = None
    data_used_capacity: int | None = None
    trash_used_capacity: int | None = None
    avail_capacity: int | None = None
    total_capacity: int | None = None
    used_pct: float | None = None
    max_disk_used_pct: float | None = None
    remote_used_capacity: int | None = None
    tag: Mapping[str, str] | None = None
    err_msg: str | None = None
    version: str | None = None
    query_disabled: bool | None = None
    load_disabled: bool | None = None
    heartbeat_failure_counter: int | None = None
    node_role: str | None = None
    cpu_cores: int | None = None
    memory: int | None = None

    @property
    def is_compute_node(self) -> bool:
        return self.node_role == "computation"


@dataclass(frozen=True)
class Broker:
    """One row of SHOW BROKER."""

    name: str
    host: str
    port: int
    alive: bool
    last_start_time: datetime | None = None
    last_update_time: datetime | None = None
    err_msg: str | None = None


def _parse_bool(text: str) -> bool | None:
    return {"true": True, "false": False, "yes": True, "no": False}.get(text.strip().lower())


def _parse_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.strip(), _TIME_FORMAT)
    except ValueError:
        return None


def parse_capacity(text: str) -> int | None:
    """Bytes from Doris's ``DebugUtil.getByteUint`` rendering, e.g. ``"10.505 GB"`` or ``"0.000 "``."""
    match = _CAPACITY_RE.match(text.strip())
    if match is None:
        return None
    return round(float(match.group(1)) * _UNITS[match.group(2)])


def _parse_pct(text: str) -> float | None:
    try:
        return float(text.strip().removesuffix("%"))
    except ValueError:
        return None


def _parse_json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class _Row:
    """Access one result row by column name."""

    def __init__(self, statement: str, columns: Sequence[str], values: Sequence[Any]) -> None:
        self._statement = statement
        self._values = {name: None if v is None else str(v) for name, v in zip(columns, values, strict=True)}

    def text(self, *names: str) -> str | None:
        """The first of ``names`` present in the row (several spellings exist across versions)."""
        for name in names:
            value = self._values.get(name)
            if value is not None:
                return value
        return None

    def required(self, name: str) -> str:
        value = self._values.get(name)
        if value is None:
            raise DorisError(0, f"{self._statement} returned no value for column {name}")
        return value

    def required_as(self, name: str, parse: Callable[[str], _T | None]) -> _T:
        value = parse(self.required(name))
        if value is None:
            raise DorisError(0, f"{self._statement} returned an unparsable {name}: {self._values[name]!r}")
        return value

    def optional(self, parse: Callable[[str], _T | None], *names: str) -> _T | None:
        value = self.text(*names)
        return None if value is None else parse(value)

    def time(self, name: str) -> datetime | None:
        value = self.text(name)
        return None if value in (None, NULL_STRING, "") else _parse_time(value)


def _frontend(row: _Row) -> Frontend:
    return Frontend(
        name=row.required("Name"),
        host=row.required("Host"),
        edit_log_port=row.required_as("EditLogPort", _parse_int),
        role=row.required("Role"),
        is_master=row.required_as("IsMaster", _parse_bool),
        alive=row.required_as("Alive", _parse_bool),
        http_port=row.optional(_parse_int, "HttpPort"),
        query_port=row.optional(_parse_int, "QueryPort"),
        rpc_port=row.optional(_parse_int, "RpcPort"),
        arrow_flight_sql_port=row.optional(_parse_int, "ArrowFlightSqlPort"),
        cluster_id=row.optional(_parse_int, "ClusterId"),
        join=row.optional(_parse_bool, "Join"),
        replayed_journal_id=row.optional(_parse_int, "ReplayedJournalId"),
        last_start_time=row.time("LastStartTime"),
        last_heartbeat=row.time("LastHeartbeat"),
        is_helper=row.optional(_parse_bool, "IsHelper"),
        err_msg=row.text("ErrMsg"),
        version=row.text("Version"),
        current_connected=row.optional(_parse_bool, "CurrentConnected"),
    )


def _backend(row: _Row) -> Backend:
    status = row.optional(_parse_json_object, "Status") or {}
    tag = row.optional(_parse_json_object, "Tag")
    return Backend(
        backend_id=row.required_as("BackendId", _parse_int),
        host=row.required("Host"),
        heartbeat_port=row.required_as("HeartbeatPort", _parse_int),
        alive=row.required_as("Alive", _parse_bool),
        system_decommissioned=row.required_as("SystemDecommissioned", _parse_bool),
        tablet_num=row.required_as("TabletNum", _parse_int),
        be_port=row.optional(_parse_int, "BePort"),
        http_port=row.optional(_parse_int, "HttpPort"),
        brpc_port=row.optional(_parse_int, "BrpcPort"),
        arrow_flight_sql_port=row.optional(_parse_int, "ArrowFlightSqlPort"),
        last_start_time=row.time("LastStartTime"),
        last_heartbeat=row.time("LastHeartbeat"),
        data_used_capacity=row.optional(parse_capacity, "DataUsedCapacity"),
        # Doris 2.0 and 2.1.0 spell this column "TrashUsedCapcacity".
        trash_used_capacity=row.optional(parse_capacity, "TrashUsedCapacity", "TrashUsedCapcacity"),
        avail_capacity=row.optional(parse_capacity, "AvailCapacity"),
        total_capacity=row.optional(parse_capacity, "TotalCapacity"),
        used_pct=row.optional(_parse_pct, "UsedPct"),
        max_disk_used_pct=row.optional(_parse_pct, "MaxDiskUsedPct"),
        remote_used_capacity=row.optional(parse_capacity, "RemoteUsedCapacity"),
        tag=None if tag is None else {str(k): str(v) for k, v in tag.items()},
        err_msg=row.text("ErrMsg"),
        version=row.text("Version"),
        query_disabled=_json_bool(status.get("isQueryDisabled")),
        load_disabled=_json_bool(status.get("isLoadDisabled")),
        heartbeat_failure_counter=row.optional(_parse_int, "HeartbeatFailureCounter"),
        node_role=row.text("NodeRole"),
        cpu_cores=row.optional(_parse_int, "CpuCores"),
        memory=row.optional(parse_capacity, "Memory"),
    )


def _json_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _broker(row: _Row) -> Broker:
    return Broker(
        name=row.required("Name"),
        host=row.required("Host"),
        port=row.required_as("Port", _parse_int),
        alive=row.required_as("Alive", _parse_bool),
        last_start_time=row.time("LastStartTime"),
        last_update_time=row.time("LastUpdateTime"),
        err_msg=row.text("ErrMsg"),
    )


def _parse_rows(
    statement: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], parse: Callable[[_Row], _T]
) -> list[_T]:
    return [parse(_Row(statement, columns, values)) for values in rows]


def parse_frontends(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[Frontend]:
    """Typed rows from a raw SHOW FRONTENDS result; unknown columns are ignored."""
    return _parse_rows("SHOW FRONTENDS", columns, rows, _frontend)


def parse_backends(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[Backend]:
    """Typed rows from a raw SHOW BACKENDS result; unknown columns are ignored."""
    return _parse_rows("SHOW BACKENDS", columns, rows, _backend)


def parse_brokers(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[Broker]:
    """Typed rows from a raw SHOW BROKER result; unknown columns are ignored."""
    return _parse_rows("SHOW BROKER", columns, rows, _broker)


TABLET_HEALTH = "SHOW PROC '/cluster_health/tablet_health'"
STATISTIC = "SHOW PROC '/statistic'"


@dataclass(frozen=True)
class TabletHealth:
    """The ``Total`` row of the master FE's tablet health: how many tablets there are, how many are
    healthy, how many are being cloned (re-replicated).  Doris keeps these only on the master."""

    tablets: int
    healthy: int
    cloning: int
    unrecoverable: int = 0
    replicas: int | None = None
    """ReplicaNum (only ``/statistic`` has it): fewer than twice the tablets means some tablet has a
    single replica."""
    source: str = TABLET_HEALTH

    @property
    def unhealthy(self) -> int:
        return max(self.tablets - self.healthy, 0)

    @property
    def settled(self) -> bool:
        """No tablet unhealthy (missing, relocating, version-incomplete, ...) and none being cloned."""
        return self.unhealthy == 0 and self.cloning == 0

    def describe(self) -> str:
        parts = [f"{self.healthy}/{self.tablets} tablets healthy"]
        if self.cloning:
            parts.append(f"{self.cloning} being cloned")
        if self.unrecoverable:
            parts.append(f"{self.unrecoverable} unrecoverable")
        return ", ".join(parts)


def _total_row(statement: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> _Row:
    for values in rows:
        row = _Row(statement, columns, values)
        if (row.text("DbId") or "").strip() == "Total":
            return row
    raise DorisError(0, f"{statement} returned no Total row")


def parse_tablet_health(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> TabletHealth:
    """The Total row of ``SHOW PROC '/cluster_health/tablet_health'`` (TabletHealthProcDir columns:
    DbId, DbName, TabletNum, HealthyNum, ReplicaMissingNum, ..., UnrecoverableNum, ..., CloningNum)."""
    row = _total_row(TABLET_HEALTH, columns, rows)
    return TabletHealth(
        tablets=row.required_as("TabletNum", _parse_int),
        healthy=row.required_as("HealthyNum", _parse_int),
        cloning=row.required_as("CloningNum", _parse_int),
        unrecoverable=row.optional(_parse_int, "UnrecoverableNum") or 0,
    )


def parse_statistic(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> TabletHealth:
    """The Total row of ``SHOW PROC '/statistic'`` (StatisticProcDir columns: ..., TabletNum,
    ReplicaNum, UnhealthyTabletNum, InconsistentTabletNum, CloningTabletNum, BadTabletNum, ...)."""
    row = _total_row(STATISTIC, columns, rows)
    tablets = row.required_as("TabletNum", _parse_int)
    return TabletHealth(
        tablets=tablets,
        healthy=tablets - row.required_as("UnhealthyTabletNum", _parse_int),
        cloning=row.required_as("CloningTabletNum", _parse_int),
        unrecoverable=row.optional(_parse_int, "BadTabletNum") or 0,
        replicas=row.optional(_parse_int, "ReplicaNum"),
        source=STATISTIC,
    )


# ---------------------------------------------------------------------------------------------
# Statement building


def host_port_literal(host: str, port: int) -> str:
    """``"host:port"`` as a double-quoted SQL literal; IPv6 hosts become ``"[v6]:port"``.

    Hosts are restricted to letters, digits, ``.``, ``-``, ``_`` and ``:``, which rules out quotes,
    whitespace and anything else that could break out of the literal.
    """
    if not _HOST_RE.match(host):
        raise ValueError(f"refusing unsafe host {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"invalid port {port!r}")
    shown = f"[{host}]" if ":" in host else host
    return f'"{shown}:{port}"'


def _host_port_list(nodes: Iterable[tuple[str, int]]) -> str:
    literals = [host_port_literal(host, port) for host, port in nodes]
    if not literals:
        raise ValueError("no nodes given")
    return ", ".join(literals)


def _broker_name(name: str) -> str:
    if not _BROKER_NAME_RE.match(name):
        raise ValueError(f"refusing unsafe broker name {name!r}")
    return f"`{name}`"


def _bool_literal(value: bool) -> str:
    return '"true"' if value else '"false"'


# ---------------------------------------------------------------------------------------------
# Authentication: the password never goes out in a form the server can read unless the connection is TLS


CLEAR_TEXT_REFUSED = 2059
"""MySQL's CR_AUTH_PLUGIN_CANNOT_LOAD: the code the refusals below carry."""


class _PlaintextGuard:
    """pymysql auth plugin handler: ``mysql_clear_password`` (and the other plugins that hand the server
    the password itself: ``dialog``, ``sha256_password`` and the full ``caching_sha2_password`` exchange,
    which RSA-encrypt it with a key the server supplies) only over TLS.  Over plain TCP a server (or
    whoever answers in its place) asking for them gets nothing and the connection fails."""

    plugin = ""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def _refuse(self) -> pymysql.err.OperationalError:
        conn = self.connection
        return pymysql.err.OperationalError(
            CLEAR_TEXT_REFUSED,
            f"the FE at {conn.host}:{conn.port} asked for {self.plugin} authentication over an unencrypted "
            "connection; refused, the password was not sent (with enable_ssl in fe.conf the operator "
            "uses TLS)",
        )

    def _secure(self) -> bool:
        return bool(getattr(self.connection, "_secure", False))


class _ClearPassword(_PlaintextGuard):
    plugin = "mysql_clear_password"

    def authenticate(self, packet: Any) -> Any:
        if not self._secure():
            raise self._refuse()
        conn = self.connection
        conn.write_packet(conn.password + b"\0")
        reply = conn._read_packet()
        reply.check_error()
        return reply


class _Dialog(_PlaintextGuard):
    plugin = "dialog"

    def authenticate(self, packet: Any) -> Any:
        raise self._refuse()  # PAM-style prompts: never answered

    def prompt(self, echo: bool, prompt: bytes) -> bytes:
        raise self._refuse()


class _Sha256(_PlaintextGuard):
    plugin = "sha256_password"

    def authenticate(self, packet: Any) -> Any:
        if not self._secure() and self.connection.password:
            raise self._refuse()
        return _pymysql_auth.sha256_password_auth(self.connection, packet)


class _CachingSha2(_PlaintextGuard):
    """The fast path (a scramble, like mysql_native_password) is fine over TCP; the full exchange is not."""

    plugin = "caching_sha2_password (full authentication)"

    def authenticate(self, packet: Any) -> Any:
        conn = self.connection
        if self._secure() or not conn.password:
            return _pymysql_auth.caching_sha2_password_auth(conn, packet)
        if packet.is_auth_switch_request():
            salt = packet.read_all()
            conn.salt = salt[:-1] if salt.endswith(b"\0") else salt
            scramble = _pymysql_auth.scramble_caching_sha2(conn.password, conn.salt)
            conn.write_packet(scramble)
            packet = conn._read_packet()
            packet.check_error()
        if packet.is_extra_auth_data() and packet.get_all_data()[1:2] == b"\x03":
            reply = conn._read_packet()  # fast authentication succeeded
            reply.check_error()
            return reply
        raise self._refuse()


AUTH_PLUGINS: dict[str, type[_PlaintextGuard]] = {
    "mysql_clear_password": _ClearPassword,
    "dialog": _Dialog,
    "sha256_password": _Sha256,
    "caching_sha2_password": _CachingSha2,
}


def tls_context() -> ssl.SSLContext:
    """TLS to the FE.  Doris serves the certificate of fe.conf ``mysql_ssl_default_server_certificate``
    (a self-signed default unless replaced) for ``mysql_ssl_default_ca_certificate``, neither of which
    the operator has: the channel is encrypted but the certificate is not verified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# ---------------------------------------------------------------------------------------------
# Client


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed to connect and for each socket read/write."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0


class DorisClient:
    """A connection to one FE. Use :meth:`connect`; close it (or use ``with``) when done."""

    def __init__(
        self,
        connection: pymysql.connections.Connection[Any],
        host: str,
        port: int,
        credentials: Credentials,
        timeouts: Timeouts,
        tls: bool = False,
    ) -> None:
        self._connection = connection
        self.host = host
        self.port = port
        self.credentials = credentials
        self.timeouts = timeouts
        self.tls = tls

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        credentials: Credentials,
        timeouts: Timeouts | None = None,
        tls: bool = False,
    ) -> DorisClient:
        """Connect and log in.  ``tls`` (fe.conf ``enable_ssl = true``): TLS is required, the login
        happens inside it.  Without TLS the password only goes out as mysql_native_password's
        scramble: a server asking for it in clear text (or RSA-encrypted to its own key) is refused.
        Without ``tls`` no TLS is negotiated either (PyMySQL's default is to try it when the server offers
        it): over TLS with an unverified certificate the guards above would hand the password to whoever
        answered, and the default context costs a CA bundle load per connection (a quarter of the
        operator's CPU at 50 clusters: docs/benchmarks.md)."""
        timeouts = timeouts or Timeouts()
        extra: dict[str, Any] = {"ssl": tls_context()} if tls else {"ssl_disabled": True}
        with _translated_errors():
            connection = pymysql.connect(
                host=host,
                port=port,
                user=credentials.user,
                password=credentials.password,
                connect_timeout=timeouts.connect,
                read_timeout=timeouts.read,
                write_timeout=timeouts.write,
                autocommit=True,
                charset="utf8mb4",
                auth_plugin_map=dict(AUTH_PLUGINS),
                **extra,
            )
        return cls(connection, host, port, credentials, timeouts, tls)

    def close(self) -> None:
        if self._connection.open:
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def query(self, sql: str, shown: str | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a statement and return (column names, rows); ``shown`` is logged in its place (a
        statement carrying a password hash)."""
        log.debug("FE %s:%d <- %s", self.host, self.port, sql if shown is None else shown)
        with _translated_errors(), self._connection.cursor() as cursor:
            cursor.execute(sql)
            columns = [d[0] for d in cursor.description or ()]
            return columns, list(cursor.fetchall())

    def execute(self, sql: str, shown: str | None = None) -> None:
        self.query(sql, shown)

    # -- reads ---------------------------------------------------------------------------------

    def show_frontends(self) -> list[Frontend]:
        return parse_frontends(*self.query("SHOW FRONTENDS"))

    def show_backends(self) -> list[Backend]:
        return parse_backends(*self.query("SHOW BACKENDS"))

    def show_brokers(self) -> list[Broker]:
        return parse_brokers(*self.query("SHOW BROKER"))

    def show_tablet_health(self) -> TabletHealth:
        """Tablet health from the tablet-health proc, or from ``/statistic`` where that is missing."""
        try:
            return parse_tablet_health(*self.query(TABLET_HEALTH))
        except UnreachableError:
            raise
        except DorisError as err:
            log.debug("%s failed (%s); reading %s", TABLET_HEALTH, err, STATISTIC)
            return parse_statistic(*self.query(STATISTIC))

    def show_statistic(self) -> TabletHealth:
        return parse_statistic(*self.query(STATISTIC))

    # -- session and frontend config -----------------------------------------------------------

    def set_forward_to_master(self) -> None:
        """SHOW FRONTENDS / BACKENDS / PROC of this session are answered by the master FE."""
        self.execute("SET forward_to_master = true")

    def set_frontend_config(self, key: str, value: bool) -> None:
        """``ADMIN SET FRONTEND CONFIG`` for one key (Doris takes one per statement; a master-only key
        such as disable_balance is forwarded to the master)."""
        if not _CONFIG_KEY_RE.match(key):
            raise ValueError(f"refusing unsafe config key {key!r}")
        self.execute(f'ADMIN SET FRONTEND CONFIG ("{key}" = {_bool_literal(value)})')

    # -- frontends -----------------------------------------------------------------------------

    def add_follower(self, host: str, edit_log_port: int) -> None:
        self.execute(f"ALTER SYSTEM ADD FOLLOWER {host_port_literal(host, edit_log_port)}")

    def add_observer(self, host: str, edit_log_port: int) -> None:
        self.execute(f"ALTER SYSTEM ADD OBSERVER {host_port_literal(host, edit_log_port)}")

    def drop_follower(self, host: str, edit_log_port: int) -> None:
        self.execute(f"ALTER SYSTEM DROP FOLLOWER {host_port_literal(host, edit_log_port)}")

    def drop_observer(self, host: str, edit_log_port: int) -> None:
        self.execute(f"ALTER SYSTEM DROP OBSERVER {host_port_literal(host, edit_log_port)}")

    # -- backends ------------------------------------------------------------------------------

    def add_backend(self, host: str, heartbeat_port: int) -> None:
        self.execute(f"ALTER SYSTEM ADD BACKEND {host_port_literal(host, heartbeat_port)}")

    def decommission_backends(self, nodes: Iterable[tuple[str, int]]) -> None:
        self.execute(f"ALTER SYSTEM DECOMMISSION BACKEND {_host_port_list(nodes)}")

    def cancel_decommission_backends(self, nodes: Iterable[tuple[str, int]]) -> None:
        self.execute(f"CANCEL DECOMMISSION BACKEND {_host_port_list(nodes)}")

    def dropp_backends(self, nodes: Iterable[tuple[str, int]]) -> None:
        """Remove backends from metadata at once (Doris's DROPP; their data is abandoned)."""
        self.execute(f"ALTER SYSTEM DROPP BACKEND {_host_port_list(nodes)}")

    def modify_backend(
        self,
        host: str,
        heartbeat_port: int,
        *,
        disable_query: bool | None = None,
        disable_load: bool | None = None,
    ) -> None:
        settings = {"disable_query": disable_query, "disable_load": disable_load}
        pairs = [f'"{key}" = {_bool_literal(value)}' for key, value in settings.items() if value is not None]
        if not pairs:
            raise ValueError("modify_backend needs disable_query and/or disable_load")
        target = host_port_literal(host, heartbeat_port)
        self.execute(f"ALTER SYSTEM MODIFY BACKEND {target} SET ({', '.join(pairs)})")

    # -- brokers -------------------------------------------------------------------------------

    def add_broker(self, name: str, host: str, port: int) -> None:
        self.execute(f"ALTER SYSTEM ADD BROKER {_broker_name(name)} {host_port_literal(host, port)}")

    def drop_broker(self, name: str, host: str, port: int) -> None:
        self.execute(f"ALTER SYSTEM DROP BROKER {_broker_name(name)} {host_port_literal(host, port)}")


# ---------------------------------------------------------------------------------------------
# Master awareness


def find_master(frontends: Iterable[Frontend]) -> Frontend | None:
    return next((fe for fe in frontends if fe.is_master), None)


def connect_master(client: DorisClient) -> DorisClient:
    """A client on the master FE, found through SHOW FRONTENDS on ``client``.

    Returns ``client`` itself when it is already connected to the master (CurrentConnected=Yes);
    otherwise a new client (same credentials and timeouts) that the caller must close. The master is
    reached at its Host and its reported QueryPort, or ``client``'s port if none is reported.
    """
    master = find_master(client.show_frontends())
    if master is None:
        raise NotMasterError(0, f"SHOW FRONTENDS on {client.host}:{client.port} lists no master")
    if master.current_connected:
        return client
    port = master.query_port if master.query_port and master.query_port > 0 else client.port
    log.info("redirecting from FE %s:%d to master %s:%d", client.host, client.port, master.host, port)
    return DorisClient.connect(master.host, port, client.credentials, client.timeouts, tls=client.tls)
