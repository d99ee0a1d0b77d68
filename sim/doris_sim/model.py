"""The simulated Doris cluster's state: frontends, backends, brokers, users, and a clock.

:class:`SimCluster` is what the master FE's catalog holds, changed the way the official images and
running processes would (Python methods) or by Doris SQL (:meth:`SimCluster.execute`, parsed and
answered in :mod:`doris_sim.sql`). The catalog's own checks raise :class:`SimSqlError` with the texts
Doris uses (``../shared/reference/doris-sql-and-images.md`` §2).

Decommission is computed lazily from the cluster's clock: a decommissioned backend hands its
tablets to the remaining storage backends at ``decommission_rate`` tablets per second and, once
empty, is dropped from SHOW BACKENDS (Doris's default ``drop_backend_after_decommission``). Use a
:class:`ManualClock` to drive it deterministically.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# ---------------------------------------------------------------------------------------------
# Column profiles per Doris version (see the reference, section 1)

_FRONTEND_COLUMNS_2_0 = (
    "Name", "Host", "EditLogPort", "HttpPort", "QueryPort", "RpcPort", "Role", "IsMaster", "ClusterId",
    "Join", "Alive", "ReplayedJournalId", "LastHeartbeat", "IsHelper", "ErrMsg", "Version",
    "CurrentConnected",
)  # fmt: skip
_FRONTEND_COLUMNS_2_1 = (
    "Name", "Host", "EditLogPort", "HttpPort", "QueryPort", "RpcPort", "ArrowFlightSqlPort", "Role",
    "IsMaster", "ClusterId", "Join", "Alive", "ReplayedJournalId", "LastStartTime", "LastHeartbeat",
    "IsHelper", "ErrMsg", "Version", "CurrentConnected",
)  # fmt: skip
_BACKEND_COLUMNS_2_0 = (
    "BackendId", "Host", "HeartbeatPort", "BePort", "HttpPort", "BrpcPort", "LastStartTime",
    "LastHeartbeat", "Alive", "SystemDecommissioned", "TabletNum", "DataUsedCapacity",
    "TrashUsedCapcacity", "AvailCapacity", "TotalCapacity", "UsedPct", "MaxDiskUsedPct",
    "RemoteUsedCapacity", "Tag", "ErrMsg", "Version", "Status", "HeartbeatFailureCounter", "NodeRole",
)  # fmt: skip
_BACKEND_COLUMNS_2_1_0 = (
    "BackendId", "Host", "HeartbeatPort", "BePort", "HttpPort", "BrpcPort", "ArrowFlightSqlPort",
    "LastStartTime", "LastHeartbeat", "Alive", "SystemDecommissioned", "TabletNum", "DataUsedCapacity",
    "TrashUsedCapcacity", "AvailCapacity", "TotalCapacity", "UsedPct", "MaxDiskUsedPct",
    "RemoteUsedCapacity", "Tag", "ErrMsg", "Version", "Status", "HeartbeatFailureCounter", "NodeRole",
)  # fmt: skip
_BACKEND_COLUMNS_2_1_5 = tuple(
    "TrashUsedCapacity" if name == "TrashUsedCapcacity" else name for name in _BACKEND_COLUMNS_2_1_0
)
_BROKER_COLUMNS = ("Name", "Host", "Port", "Alive", "LastStartTime", "LastUpdateTime", "ErrMsg")

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")


@dataclass(frozen=True)
class VersionProfile:
    """What a given Doris version prints: column lists and the build string in ``Version``."""

    version: str
    frontend_columns: tuple[str, ...]
    backend_columns: tuple[str, ...]
    broker_columns: tuple[str, ...] = _BROKER_COLUMNS

    @classmethod
    def for_version(cls, version: str) -> VersionProfile:
        """Doris 2.0.x, 2.1.x and 3.x are supported; anything else raises ValueError."""
        match = _VERSION_RE.match(version)
        if match is None:
            raise ValueError(f"not a Doris version: {version!r}")
        major, minor, patch = int(match[1]), int(match[2]), int(match[3] or 0)
        if (major, minor) == (2, 0):
            return cls(version, _FRONTEND_COLUMNS_2_0, _BACKEND_COLUMNS_2_0)
        if (major, minor) == (2, 1):
            # 2.1.0 still has the "TrashUsedCapcacity" typo, 2.1.5 has it fixed; earlier
            # patches are assumed to keep the typo.
            backends = _BACKEND_COLUMNS_2_1_5 if patch >= 5 else _BACKEND_COLUMNS_2_1_0
            return cls(version, _FRONTEND_COLUMNS_2_1, backends)
        if major == 3:
            return cls(version, _FRONTEND_COLUMNS_2_1, _BACKEND_COLUMNS_2_1_5)
        raise ValueError(f"unsupported Doris version {version!r} (supported: 2.0.x, 2.1.x, 3.x)")

    @property
    def build(self) -> str:
        """The ``Version`` column value, shaped like ``doris-2.1.7-443e87e203``."""
        return f"doris-{self.version}-{hashlib.sha1(self.version.encode()).hexdigest()[:10]}"


# ---------------------------------------------------------------------------------------------
# Clocks


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to (thread-safe)."""

    def __init__(self, start: float = 1_722_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._now += seconds


# ---------------------------------------------------------------------------------------------
# Errors and value formats

_NULL_STRING = "\\N"
_NOT_READY = "Exception, msg: Node catalog is not ready, please wait for a while."
_DROP_BACKEND_REFUSED = (
    "It is highly NOT RECOMMENDED to use DROP BACKEND stmt.It is not safe to directly drop a backend. "
    "All data on this backend will be discarded permanently. If you insist, use DROPP instead of DROP"
)
_UNKNOWN_ERROR = 1105
_WRONG_PROC_PATH = 5001
_UNKNOWN_SYSTEM_VARIABLE = 1193
_EMPTY_QUERY = 1065


class SimSqlError(Exception):
    """A statement failed; ``code`` and ``message`` are what the MySQL client receives."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"({code}) {message}")
        self.code = code
        self.message = message


def _ddl_error(detail: str, code: int = _UNKNOWN_ERROR) -> SimSqlError:
    return SimSqlError(code, f"errCode = 2, detailMessage = {detail}")


@dataclass(frozen=True)
class _HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _parse_host_port(text: str) -> _HostPort:
    compact = re.sub(r"\s+", "", text)
    bracketed = re.match(r"^\[([^\]]+)\]:(\d+)$", compact)
    if bracketed:
        host, port = bracketed[1], bracketed[2]
    else:
        host, _, port = compact.rpartition(":")
        if not host or ":" in host or not port.isdigit():
            raise _ddl_error(f"Invalid host port: {compact}")
    if not 0 < int(port) < 65536:
        raise _ddl_error(f"Encounter unknown exception: Port is out of range: {int(port)}")
    return _HostPort(host, int(port))


def _parse_backend_target(text: str) -> _HostPort | int:
    """DROPP/DECOMMISSION/MODIFY/CANCEL accept ``"host:port"`` or a bare backend id."""
    return int(text.strip()) if text.strip().isdigit() else _parse_host_port(text)


# ---------------------------------------------------------------------------------------------
# Cluster state


@dataclass
class _Frontend:
    name: str
    host: str
    edit_log_port: int
    role: str
    is_helper: bool
    query_port: int = 9030
    rpc_port: int = 9020
    http_port: int = 8030
    alive: bool = False
    joined: bool = False  # joined the BDB-JE group; heartbeat data known since
    started_at: float | None = None
    last_heartbeat: float | None = None
    replayed_journal_id: int = 0
    err_msg: str = ""

    @property
    def address(self) -> _HostPort:
        return _HostPort(self.host, self.edit_log_port)


_DISK_TOTAL = 100 << 30
_DISK_OTHER_USED = 20 << 30
_BYTES_PER_TABLET = 8 << 20


@dataclass
class _Backend:
    backend_id: int
    host: str
    heartbeat_port: int
    tag: dict[str, str]
    be_port: int = -1
    http_port: int = -1
    brpc_port: int = -1
    alive: bool = False
    started_at: float | None = None
    last_heartbeat: float | None = None
    decommissioned: bool = False
    tablets: int = 0
    drain_credit: float = 0.0
    disks_reported: bool = False
    err_msg: str = ""
    version: str = ""
    query_disabled: bool = False
    load_disabled: bool = False
    heartbeat_failures: int = 0
    node_role: str = "mix"

    @property
    def address(self) -> _HostPort:
        return _HostPort(self.host, self.heartbeat_port)


@dataclass
class _Broker:
    name: str
    host: str
    port: int
    alive: bool = False
    started_at: float | None = None
    last_update: float | None = None
    err_msg: str = ""

    @property
    def address(self) -> _HostPort:
        return _HostPort(self.host, self.port)


@dataclass(frozen=True)
class LoggedStatement:
    sql: str
    user: str | None
    error_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Result:
    """A result set: column names and rows (strings, as Doris sends them, or ints for SELECT)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str | int, ...], ...]

    def dicts(self) -> list[dict[str, str | int]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class SimCluster:
    """In-memory Doris cluster state plus the SQL that Doris answers about it (thread-safe).

    A master FE (``master_host:master_edit_log_port``) exists from the start. Python methods below
    change the state the way the official images and running processes would; SQL goes through
    :meth:`execute`. With ``auto_start`` every node added by SQL also starts at once (its process is
    assumed to be running already), which suits a standalone demo.
    """

    def __init__(
        self,
        version: str = "2.1.8",
        *,
        clock: Clock | None = None,
        users: Mapping[str, str] | None = None,
        master_host: str = "127.0.0.1",
        master_edit_log_port: int = 9010,
        decommission_rate: float = 10.0,
        replication_num: int = 1,
        drop_backend_after_decommission: bool = True,
        auto_start: bool = False,
        seed: int = 0,
    ) -> None:
        if replication_num < 1:
            raise ValueError("replication_num must be >= 1")
        self.profile = VersionProfile.for_version(version)
        self.clock: Clock = clock or SystemClock()
        self.replication_num = replication_num
        self.drop_backend_after_decommission = drop_backend_after_decommission
        self.auto_start = auto_start
        self._decommission_rate = decommission_rate
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._cluster_id = self._rng.randrange(100_000_000, 2_000_000_000)
        self.accounts = accounts.Accounts(users)
        """Users, roles, privileges, databases and tables (:mod:`doris_sim.accounts`)."""
        self.statements: list[LoggedStatement] = []
        """Every statement executed, in order, with who ran it and how it ended (tests read it)."""
        self._frontends: dict[str, _Frontend] = {}
        self._backends: dict[int, _Backend] = {}
        self._brokers: list[_Broker] = []
        self._next_backend_id = 10002
        self._journal_id = 1
        self._last_tick = self.clock.now()
        master = self._new_frontend("FOLLOWER", _HostPort(master_host, master_edit_log_port))
        self._master = master.name
        self._start_frontend(master)

    # -- users ---------------------------------------------------------------------------------

    def set_user(self, name: str, password: str = "", host: str = "%") -> None:
        """Create the user or change its password (what ``SET PASSWORD`` does)."""
        with self._lock:
            self.accounts.set_password(name, host, password)

    def auth_string_of(self, name: str, peer: str = "127.0.0.1") -> str | None:
        """hex SHA1(SHA1(password)) of the user a login from ``peer`` matches ("" for no password),
        or None for an unknown user."""
        with self._lock:
            return self.accounts.auth_string_of(name, peer)

    def statement_log(self) -> list[LoggedStatement]:
        """The statements executed so far, in order (a copy)."""
        with self._lock:
            return list(self.statements)

    # -- decommission settings -----------------------------------------------------------------

    @property
    def decommission_rate(self) -> float:
        return self._decommission_rate

    def set_decommission_rate(self, tablets_per_second: float) -> None:
        with self._lock:
            self._tick()
            self._decommission_rate = tablets_per_second

    # -- frontends -----------------------------------------------------------------------------

    @property
    def master(self) -> tuple[str, int]:
        with self._lock:
            fe = self._frontends[self._master]
            return fe.host, fe.edit_log_port

    def register_frontend(self, host: str, edit_log_port: int, role: str = "FOLLOWER") -> None:
        """What the FE image does: ADD FOLLOWER/OBSERVER on the master, then start and join."""
        with self._lock:
            self._tick()
            fe = self._add_frontend(role.upper(), _HostPort(host, edit_log_port))
            self._start_frontend(fe)

    def unregister_frontend(self, host: str, edit_log_port: int) -> None:
        """ALTER SYSTEM DROP FOLLOWER/OBSERVER for whatever role the FE has."""
        with self._lock:
            self._tick()
            fe = self._frontend_at(host, edit_log_port)
            self._drop_frontend(fe.role, fe.address)

    def set_frontend_alive(self, host: str, edit_log_port: int, alive: bool, err_msg: str = "") -> None:
        """Start (join, heartbeat) or stop an FE process. ``err_msg`` is the heartbeat error."""
        with self._lock:
            self._tick()
            fe = self._frontend_at(host, edit_log_port)
            if alive:
                self._start_frontend(fe)
            else:
                self._stop_frontend(fe, err_msg or "Unknown error")

    def set_frontend_query_port(self, host: str, edit_log_port: int, query_port: int) -> None:
        with self._lock:
            self._frontend_at(host, edit_log_port).query_port = query_port

    def move_frontend(self, host: str, edit_log_port: int, new_host: str, new_edit_log_port: int) -> None:
        """Give an FE another address, e.g. the initial master the identity of the pod that bootstraps."""
        with self._lock:
            fe = self._frontend_at(host, edit_log_port)
            taken = self._find_frontend(_HostPort(new_host, new_edit_log_port))
            if taken is not None and taken is not fe:
                raise ValueError(f"{taken.address} is another frontend")
            fe.host, fe.edit_log_port = new_host, new_edit_log_port

    def set_master(self, host: str, edit_log_port: int) -> None:
        """Simulate an election won by this alive FOLLOWER."""
        with self._lock:
            fe = self._frontend_at(host, edit_log_port)
            if fe.role != "FOLLOWER" or not fe.alive:
                raise ValueError(f"{fe.address} is not an alive FOLLOWER")
            self._master = fe.name

    # -- backends ------------------------------------------------------------------------------

    def register_backend(
        self, host: str, heartbeat_port: int = 9050, *, tablets: int = 0, node_role: str = "mix"
    ) -> None:
        """What the BE image does: ADD BACKEND, then start (``node_role="computation"`` for a CN)."""
        with self._lock:
            self._tick()
            (be,) = self._add_backends([_HostPort(host, heartbeat_port)], {})
            self._start_backend(be, node_role)
            be.tablets = tablets

    def unregister_backend(self, host: str, heartbeat_port: int = 9050) -> None:
        """ALTER SYSTEM DROPP BACKEND."""
        with self._lock:
            self._tick()
            self._dropp_backends([_HostPort(host, heartbeat_port)])

    def set_backend_alive(
        self, host: str, heartbeat_port: int, alive: bool, *, node_role: str | None = None, err_msg: str = ""
    ) -> None:
        """Start or stop a BE/CN process; a start reports ``node_role`` (default: unchanged)."""
        with self._lock:
            self._tick()
            be = self._backend_at(host, heartbeat_port)
            if alive:
                self._start_backend(be, node_role or be.node_role)
            else:
                if be.alive:
                    be.last_heartbeat = self.clock.now()
                be.alive = False
                be.heartbeat_failures += 1
                be.err_msg = err_msg or "Unknown error"

    def set_tablets(self, host: str, heartbeat_port: int, tablets: int) -> None:
        with self._lock:
            self._tick()
            self._backend_at(host, heartbeat_port).tablets = tablets

    # -- brokers -------------------------------------------------------------------------------

    def register_broker(self, name: str, host: str, port: int = 8000) -> None:
        """What the broker image does: ADD BROKER, then start."""
        with self._lock:
            self._tick()
            for broker in self._add_brokers(name, [_HostPort(host, port)]):
                self._start_broker(broker)

    def unregister_broker(self, name: str, host: str, port: int = 8000) -> None:
        with self._lock:
            self._tick()
            self._drop_brokers(name, [_HostPort(host, port)])

    def set_broker_alive(self, host: str, port: int, alive: bool, err_msg: str = "") -> None:
        with self._lock:
            self._tick()
            broker = self._broker_at(host, port)
            if alive:
                self._start_broker(broker)
            else:
                if broker.alive:
                    broker.last_update = self.clock.now()
                broker.alive = False
                broker.err_msg = err_msg or "Unknown error"

    # -- result sets ---------------------------------------------------------------------------

    def show_frontends(self, connected: tuple[str, int] | None = None) -> Result:
        """SHOW FRONTENDS as answered by the FE at ``connected`` (default: the master)."""
        with self._lock:
            self._tick()
            via = self._frontend_at(*connected) if connected else self._frontends[self._master]
            return sql.frontends_result(self, via)

    def show_backends(self, order_by_host: bool = False) -> Result:
        """SHOW BACKENDS (by BackendId) or SHOW PROC '/backends' (by Host)."""
        with self._lock:
            self._tick()
            return sql.backends_result(self, order_by_host)

    def show_brokers(self) -> Result:
        with self._lock:
            self._tick()
            return sql.brokers_result(self)

    def execute(self, sql: str, via: tuple[str, int] | None = None, user: str | None = None) -> Result | None:
        """Run Doris SQL (``;``-separated statements allowed) as the FE at ``via`` (default master).

        Returns the last statement's result set, None for OK; raises :class:`SimSqlError`.
        """
        with self._lock:
            fe = self._frontend_at(*via) if via else self._frontends[self._master]
            return self._execute(sql, fe, user)

    def _execute(
        self, sql_text: str, via: _Frontend, user: str | None = None, database: str | None = None
    ) -> Result | None:
        """Every statement, from Python or a MySQL client, passes here (tests may wrap it).  ``user`` is
        the session's user (None: an in-process caller, with every privilege)."""
        try:
            result = sql.execute(self, sql_text, via, user, database)
        except SimSqlError as err:
            self.statements.append(LoggedStatement(sql_text, user, err.code, err.message))
            raise
        self.statements.append(LoggedStatement(sql_text, user))
        return result

    # -- internals: lookups --------------------------------------------------------------------

    def _frontend_at(self, host: str, edit_log_port: int) -> _Frontend:
        fe = self._find_frontend(_HostPort(host, edit_log_port))
        if fe is None:
            raise KeyError(f"no frontend {host}:{edit_log_port}")
        return fe

    def _find_frontend(self, address: _HostPort) -> _Frontend | None:
        return next((fe for fe in self._frontends.values() if fe.address == address), None)

    def _backend_at(self, host: str, heartbeat_port: int) -> _Backend:
        be = self._find_backend(_HostPort(host, heartbeat_port))
        if be is None:
            raise KeyError(f"no backend {host}:{heartbeat_port}")
        return be

    def _find_backend(self, target: _HostPort | int) -> _Backend | None:
        if isinstance(target, int):
            return self._backends.get(target)
        return next((be for be in self._backends.values() if be.address == target), None)

    def _broker_at(self, host: str, port: int) -> _Broker:
        broker = next((b for b in self._brokers if b.address == _HostPort(host, port)), None)
        if broker is None:
            raise KeyError(f"no broker {host}:{port}")
        return broker

    # -- internals: process lifecycle ----------------------------------------------------------

    def _new_frontend(self, role: str, address: _HostPort) -> _Frontend:
        name = "fe_" + str(uuid.UUID(int=self._rng.getrandbits(128), version=4)).replace("-", "_")
        fe = _Frontend(name, address.host, address.port, role, is_helper=role == "FOLLOWER")
        self._frontends[name] = fe
        self._journal_id += 1
        return fe

    def _start_frontend(self, fe: _Frontend) -> None:
        if not fe.alive:
            fe.started_at = self.clock.now()
        fe.alive = fe.joined = True
        fe.err_msg = ""

    def _stop_frontend(self, fe: _Frontend, err_msg: str) -> None:
        if fe.alive:
            fe.alive = False
            fe.last_heartbeat = self.clock.now()
            fe.replayed_journal_id = self._journal_id
            fe.err_msg = err_msg

    def _start_backend(self, be: _Backend, node_role: str) -> None:
        if not be.alive:
            be.started_at = self.clock.now()
        be.alive = be.disks_reported = True
        be.be_port, be.http_port, be.brpc_port = 9060, 8040, 8060
        be.version = self.profile.build
        be.node_role = node_role
        be.heartbeat_failures = 0
        be.err_msg = ""

    def _start_broker(self, broker: _Broker) -> None:
        if not broker.alive:
            broker.started_at = self.clock.now()
        broker.alive = True
        broker.err_msg = ""

    # -- internals: decommission progress ------------------------------------------------------

    def _tick(self) -> None:
        now = self.clock.now()
        # Rounded so that float noise in epoch seconds cannot lose a tablet at the boundary.
        elapsed, self._last_tick = round(now - self._last_tick, 6), now
        if elapsed > 0:
            for be in sorted(self._backends.values(), key=lambda b: b.backend_id):
                if be.decommissioned:
                    self._drain(be, elapsed)
        if self.drop_backend_after_decommission:
            for be in [b for b in self._backends.values() if b.decommissioned and b.tablets == 0]:
                del self._backends[be.backend_id]
                self._journal_id += 1

    def _drain(self, be: _Backend, elapsed: float) -> None:
        """Move tablets off ``be``; needs ``replication_num`` other storage BEs to take them.

        With one replica a dead BE's tablets cannot be copied from elsewhere, so it stalls.
        """
        targets = [
            b
            for b in self._backends.values()
            if b is not be and b.alive and not b.decommissioned and b.node_role == "mix"
        ]
        if len(targets) < self.replication_num or not (be.alive or self.replication_num > 1):
            return
        be.drain_credit += self._decommission_rate * elapsed
        moved = min(be.tablets, int(be.drain_credit + 1e-9))
        be.drain_credit -= moved
        be.tablets -= moved
        for _ in range(moved):
            min(targets, key=lambda b: (b.tablets, b.backend_id)).tablets += 1

    # -- internals: membership statements (errors worded as Doris words them) -------------------

    def _add_frontend(self, role: str, address: _HostPort) -> _Frontend:
        existing = self._find_frontend(address)
        if existing is not None:
            raise _ddl_error(
                f"frontend already exists name: {existing.name}, role: {existing.role}, {existing.address}"
            )
        fe = self._new_frontend(role, address)
        if self.auto_start:
            self._start_frontend(fe)
        return fe

    def _drop_frontend(self, role: str, address: _HostPort) -> None:
        if self._frontends[self._master].address == address:
            raise _ddl_error("can not drop current master node.")
        fe = self._find_frontend(address)
        if fe is None:
            raise _ddl_error(f"frontend does not exist[{address}]")
        if fe.role != role:
            raise _ddl_error(f"{role} does not exist[{address}]")
        del self._frontends[fe.name]
        self._journal_id += 1

    def _add_backends(self, addresses: Sequence[_HostPort], properties: Mapping[str, str]) -> list[_Backend]:
        tag = {"location": "default"}
        tag.update(_split_properties(properties, allowed=()).tags)
        for address in addresses:
            if self._find_backend(address) is not None:
                raise _ddl_error(f"Same backend already exists[{address}]")
        added = []
        for address in addresses:
            be = _Backend(self._next_backend_id, address.host, address.port, dict(tag))
            self._backends[be.backend_id] = be
            self._next_backend_id += 1
            self._journal_id += 1
            if self.auto_start:
                self._start_backend(be, "mix")
            added.append(be)
        return added

    def _dropp_backends(self, targets: Sequence[_HostPort | int]) -> None:
        found = [self._require_backend(t, lambda t: f"backend does not exists[{t}]") for t in targets]
        for be in found:
            self._backends.pop(be.backend_id, None)
            self._journal_id += 1

    def _decommission_backends(self, targets: Sequence[_HostPort | int]) -> None:
        for be in [self._require_backend(t, _decommission_missing) for t in targets]:
            if not be.decommissioned:
                be.decommissioned = True
                be.drain_credit = 0.0
                self._journal_id += 1

    def _cancel_decommission(self, targets: Sequence[_HostPort | int]) -> None:
        for be in [self._require_backend(t, _decommission_missing) for t in targets]:
            be.decommissioned = False
            be.drain_credit = 0.0
            self._journal_id += 1

    def _modify_backends(self, targets: Sequence[_HostPort | int], properties: Mapping[str, str]) -> None:
        settings = _split_properties(properties, allowed=("disable_query", "disable_load"))
        for be in [self._require_backend(t, lambda t: f"backend does not exists[{t}]") for t in targets]:
            be.tag.update(settings.tags)
            if "disable_query" in settings.flags:
                be.query_disabled = settings.flags["disable_query"]
            if "disable_load" in settings.flags:
                be.load_disabled = settings.flags["disable_load"]
            self._journal_id += 1

    def _require_backend(
        self, target: _HostPort | int, missing: Callable[[_HostPort | int], str]
    ) -> _Backend:
        be = self._find_backend(target)
        if be is None:
            raise _ddl_error(missing(target))
        return be

    def _add_brokers(self, name: str, addresses: Sequence[_HostPort]) -> list[_Broker]:
        for address in addresses:
            if any(b.name == name and b.address == address for b in self._brokers):
                raise _ddl_error(f"Broker({address}) has already in brokers.")
        added = [_Broker(name, a.host, a.port) for a in addresses]
        for broker in added:
            if self.auto_start:
                self._start_broker(broker)
        self._brokers.extend(added)
        self._journal_id += 1
        return added

    def _drop_brokers(self, name: str, addresses: Sequence[_HostPort] | None) -> None:
        """Drop the given addresses of broker ``name``, or all of them when ``addresses`` is None."""
        named = [b for b in self._brokers if b.name == name]
        if not named:
            raise _ddl_error(f"Unknown broker name({name})")
        if addresses is None:
            doomed = named
        else:
            doomed = []
            for address in addresses:
                match = next((b for b in named if b.address == address), None)
                if match is None:
                    raise _ddl_error(f"Broker({address}) has not in brokers.")
                doomed.append(match)
        self._brokers = [b for b in self._brokers if b not in doomed]
        self._journal_id += 1


def _decommission_missing(target: _HostPort | int) -> str:
    if isinstance(target, int):
        return f"Backend does not exist, backend id is {target}"
    return f"Backend does not exist[{target}]"


def _raiser(error: Exception) -> Callable[[], None]:
    def action() -> None:
        raise error

    return action


@dataclass(frozen=True)
class _Settings:
    tags: dict[str, str] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)


def _split_properties(properties: Mapping[str, str], allowed: Sequence[str]) -> _Settings:
    settings = _Settings()
    unknown = []
    for key, value in properties.items():
        if key.startswith("tag."):
            settings.tags[key.removeprefix("tag.")] = value
        elif key in allowed:
            settings.flags[key] = value.strip().lower() == "true"
        else:
            unknown.append(key)
    if unknown:
        raise _ddl_error(f"unknown properties setting for key ({','.join(unknown)})")
    return settings


from . import accounts, sql  # noqa: E402  (they build on the names above)
