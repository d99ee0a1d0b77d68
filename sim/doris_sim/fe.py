"""A simulated Doris FE: MySQL protocol with Doris's columns, statements and error texts.

:class:`SimCluster` holds the in-memory cluster (frontends, backends, brokers, users) and runs
Doris SQL against it. :class:`SimFeServer` serves one FE identity of a cluster over the MySQL
protocol (mysql-mimic), in a background thread (``start``/``stop``) or in the foreground
(``python -m doris_operator.sim.fe --port 9030 --version 2.1.8``).

Decommission is computed lazily from the cluster's clock: a decommissioned backend hands its
tablets to the remaining storage backends at ``decommission_rate`` tablets per second and, once
empty, is dropped from SHOW BACKENDS (Doris's default ``drop_backend_after_decommission``). Use a
:class:`ManualClock` to drive it deterministically.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import hashlib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, Self

from mysql_mimic import (
    ColumnType,
    IdentityProvider,
    MysqlServer,
    NativePasswordAuthPlugin,
    ResultColumn,
    User,
)
from mysql_mimic.auth import AuthInfo, Forbidden
from mysql_mimic.errors import MysqlError
from mysql_mimic.session import BaseSession
from mysql_mimic.variables import SYSTEM_VARIABLES, GlobalVariables, SessionVariables

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


def _fmt_bool(value: bool) -> str:
    return "true" if value else "false"


def _fmt_time(epoch: float | None) -> str:
    if epoch is None or epoch <= 0:
        return _NULL_STRING
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_bytes(value: int) -> str:
    """Doris's ``DebugUtil.getByteUint`` with three decimals; 0 bytes has an empty unit."""
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if value > size:
            return f"{value / size:.3f} {unit}"
    return f"{value:.3f} {'B' if value else ''}"


def _fmt_tag(tag: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'"{key}" : "{value}"' for key, value in tag.items()) + "}"


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
        self._users = dict(users if users is not None else {"root": ""})
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

    def set_user(self, name: str, password: str = "") -> None:
        with self._lock:
            self._users[name] = password

    def password_of(self, name: str) -> str | None:
        """The user's password, or None for an unknown user."""
        with self._lock:
            return self._users.get(name)

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
            return self._frontends_result(via)

    def show_backends(self, order_by_host: bool = False) -> Result:
        """SHOW BACKENDS (by BackendId) or SHOW PROC '/backends' (by Host)."""
        with self._lock:
            self._tick()
            return self._backends_result(order_by_host)

    def show_brokers(self) -> Result:
        with self._lock:
            self._tick()
            return self._brokers_result()

    def execute(self, sql: str, via: tuple[str, int] | None = None) -> Result | None:
        """Run Doris SQL (``;``-separated statements allowed) as the FE at ``via`` (default master).

        Returns the last statement's result set, None for OK; raises :class:`SimSqlError`.
        """
        with self._lock:
            fe = self._frontend_at(*via) if via else self._frontends[self._master]
            return self._execute(sql, fe)

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

    # -- internals: rendering ------------------------------------------------------------------

    def _frontends_result(self, via: _Frontend) -> Result:
        now = self.clock.now()
        rows = []
        for fe in self._frontends.values():
            me = fe is via
            alive = me or fe.alive
            shown = me or fe.joined
            values = {
                "Name": fe.name,
                "Host": fe.host,
                "EditLogPort": str(fe.edit_log_port),
                "HttpPort": str(via.http_port),
                "QueryPort": str(fe.query_port if shown else 0),
                "RpcPort": str(fe.rpc_port if shown else 0),
                "ArrowFlightSqlPort": "-1" if shown else "0",
                "Role": fe.role,
                "IsMaster": _fmt_bool(fe.name == self._master),
                "ClusterId": str(self._cluster_id),
                "Join": _fmt_bool(shown),
                "Alive": _fmt_bool(alive),
                "ReplayedJournalId": str(self._journal_id if alive else fe.replayed_journal_id),
                "LastStartTime": _fmt_time(fe.started_at),
                "LastHeartbeat": _fmt_time(now if alive else fe.last_heartbeat),
                "IsHelper": _fmt_bool(fe.is_helper),
                "ErrMsg": "" if alive else fe.err_msg,
                "Version": self.profile.build if shown else "",
                "CurrentConnected": "Yes" if me else "No",
            }
            rows.append(tuple(values[c] for c in self.profile.frontend_columns))
        return Result(self.profile.frontend_columns, tuple(rows))

    def _backends_result(self, order_by_host: bool) -> Result:
        now = self.clock.now()
        key: Callable[[_Backend], Any] = (lambda b: b.host) if order_by_host else (lambda b: b.backend_id)
        rows = []
        for be in sorted(self._backends.values(), key=key):
            data = be.tablets * _BYTES_PER_TABLET if be.disks_reported else 0
            total = _DISK_TOTAL if be.disks_reported else 0
            avail = max(total - _DISK_OTHER_USED - data, 0) if be.disks_reported else 1
            used_pct = f"{(total - avail) * 100 / total if total > 0 else 0:.2f} %"
            heartbeat = now if be.alive else be.last_heartbeat
            status = {
                "lastSuccessReportTabletsTime": _fmt_time(heartbeat) if be.disks_reported else "N/A",
                "lastStreamLoadTime": -1,
                "isQueryDisabled": be.query_disabled,
                "isLoadDisabled": be.load_disabled,
            }
            values = {
                "BackendId": str(be.backend_id),
                "Host": be.host,
                "HeartbeatPort": str(be.heartbeat_port),
                "BePort": str(be.be_port),
                "HttpPort": str(be.http_port),
                "BrpcPort": str(be.brpc_port),
                "ArrowFlightSqlPort": "-1",
                "LastStartTime": _fmt_time(be.started_at),
                "LastHeartbeat": _fmt_time(heartbeat),
                "Alive": _fmt_bool(be.alive),
                "SystemDecommissioned": _fmt_bool(be.decommissioned),
                "TabletNum": str(be.tablets),
                "DataUsedCapacity": _fmt_bytes(data),
                "TrashUsedCapacity": _fmt_bytes(0),
                "TrashUsedCapcacity": _fmt_bytes(0),
                "AvailCapacity": _fmt_bytes(avail),
                "TotalCapacity": _fmt_bytes(total),
                "UsedPct": used_pct,
                "MaxDiskUsedPct": used_pct,
                "RemoteUsedCapacity": _fmt_bytes(0),
                "Tag": _fmt_tag(be.tag),
                "ErrMsg": be.err_msg,
                "Version": be.version,
                "Status": json.dumps(status, separators=(",", ":")),
                "HeartbeatFailureCounter": str(be.heartbeat_failures),
                "NodeRole": be.node_role,
            }
            rows.append(tuple(values[c] for c in self.profile.backend_columns))
        return Result(self.profile.backend_columns, tuple(rows))

    def _brokers_result(self) -> Result:
        now = self.clock.now()
        rows = []
        for broker in sorted(self._brokers, key=lambda b: (b.name, b.host, b.port)):
            values = {
                "Name": broker.name,
                "Host": broker.host,
                "Port": str(broker.port),
                "Alive": _fmt_bool(broker.alive),
                "LastStartTime": _fmt_time(broker.started_at),
                "LastUpdateTime": _fmt_time(now if broker.alive else broker.last_update),
                "ErrMsg": broker.err_msg,
            }
            rows.append(tuple(values[c] for c in self.profile.broker_columns))
        return Result(self.profile.broker_columns, tuple(rows))

    # -- internals: SQL ------------------------------------------------------------------------

    def _execute(self, sql: str, via: _Frontend) -> Result | None:
        statements = _split_statements(sql)
        if not statements:
            raise SimSqlError(_EMPTY_QUERY, "Query was empty")
        result = None
        for parser in statements:
            self._tick()
            result = self._statement(parser, via)
        return result

    def _statement(self, p: _Parser, via: _Frontend) -> Result | None:
        if p.accept("SHOW"):
            return self._show(p, via)
        if p.accept("ALTER", "SYSTEM"):
            self._run_on_master(self._alter_system(p), via)
            return None
        if p.accept("CANCEL"):
            p.accept("ALTER", "SYSTEM")  # the 2.0 docs' spelling
            p.expect("DECOMMISSION", "BACKEND")
            targets = [_parse_backend_target(t) for t in p.strings()]
            p.end()
            self._run_on_master(lambda: self._cancel_decommission(targets), via)
            return None
        if p.accept("SELECT"):
            return self._select(p)
        if p.accept("SET"):
            p.skip_rest()
            return None
        if p.accept("USE"):
            p.name()
            p.end()
            return None
        raise p.error()

    def _run_on_master(self, action: Callable[[], object], via: _Frontend) -> None:
        """ALTER SYSTEM is forwarded to the master; without a live master the FE is not ready."""
        if via.name != self._master and not self._frontends[self._master].alive:
            raise SimSqlError(_UNKNOWN_ERROR, _NOT_READY)
        action()

    def _show(self, p: _Parser, via: _Frontend) -> Result:
        if p.accept("FRONTENDS"):
            p.end()
            return self._frontends_result(via)
        if p.accept("BACKENDS"):
            p.end()
            return self._backends_result(order_by_host=False)
        if p.accept("BROKER"):
            p.end()
            return self._brokers_result()
        if p.accept("PROC"):
            path = p.string()
            p.end()
            normalized = "/" + path.strip("/")
            if normalized == "/frontends":
                return self._frontends_result(via)
            if normalized == "/backends":
                return self._backends_result(order_by_host=True)
            if normalized == "/brokers":
                return self._brokers_result()
            raise _ddl_error(f"Proc path '{path}' doesn't exist", code=_WRONG_PROC_PATH)
        raise p.error()

    def _alter_system(self, p: _Parser) -> Callable[[], object]:
        """Parse the rest of an ALTER SYSTEM statement into the action that runs it."""
        if p.accept("ADD", "BACKEND"):
            addresses = [_parse_host_port(a) for a in p.strings()]
            properties = p.properties() if p.accept("PROPERTIES") else {}
            p.end()
            return lambda: self._add_backends(addresses, properties)
        if p.accept("ADD", "BROKER"):
            name = p.name()
            addresses = [_parse_host_port(a) for a in p.strings()]
            p.end()
            return lambda: self._add_brokers(name, addresses)
        if p.accept("ADD"):
            role = p.one_of("FOLLOWER", "OBSERVER")
            address = _parse_host_port(p.string())
            p.end()
            return lambda: self._add_frontend(role, address)
        if p.accept("DROP", "BACKEND"):
            p.strings()
            p.end()
            return _raiser(_ddl_error(_DROP_BACKEND_REFUSED))
        if p.accept("DROP", "ALL", "BROKER"):
            name = p.name()
            p.end()
            return lambda: self._drop_brokers(name, None)
        if p.accept("DROP", "BROKER"):
            name = p.name()
            addresses = [_parse_host_port(a) for a in p.strings()]
            p.end()
            return lambda: self._drop_brokers(name, addresses)
        if p.accept("DROP"):
            role = p.one_of("FOLLOWER", "OBSERVER")
            address = _parse_host_port(p.string())
            p.end()
            return lambda: self._drop_frontend(role, address)
        if p.accept("DROPP", "BACKEND"):
            targets = [_parse_backend_target(t) for t in p.strings()]
            p.end()
            return lambda: self._dropp_backends(targets)
        if p.accept("DECOMMISSION", "BACKEND"):
            targets = [_parse_backend_target(t) for t in p.strings()]
            p.end()
            return lambda: self._decommission_backends(targets)
        if p.accept("MODIFY", "BACKEND"):
            targets = [_parse_backend_target(t) for t in p.strings()]
            p.expect("SET")
            properties = p.properties()
            p.end()
            return lambda: self._modify_backends(targets, properties)
        raise p.error()

    def _select(self, p: _Parser) -> Result:
        columns: list[str] = []
        values: list[str | int] = []
        while True:
            token = p.next()
            if token.kind == "number":
                columns.append(token.text)
                values.append(int(token.text))
            elif token.kind == "word" and token.text.startswith("@@"):
                name = re.sub(r"^(session|global|local)\.", "", token.text[2:], flags=re.IGNORECASE).lower()
                if name not in self._variables:
                    raise SimSqlError(_UNKNOWN_SYSTEM_VARIABLE, f"Unknown system variable '{name}'")
                columns.append(token.text)
                values.append(self._variables[name])
            else:
                raise p.error(token)
            if not p.accept(","):
                break
        if p.accept("LIMIT"):
            p.expect_kind("number")
        p.end()
        return Result(tuple(columns), (tuple(values),))

    @property
    def _variables(self) -> dict[str, str | int]:
        return {
            "version": "5.7.99",
            "version_comment": f"Doris version {self.profile.build}",
            "autocommit": 1,
            "transaction_isolation": "REPEATABLE-READ",
            "tx_isolation": "REPEATABLE-READ",
        }


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


# ---------------------------------------------------------------------------------------------
# SQL tokens and a small recursive-descent parser

_TOKEN_RE = re.compile(
    r"""
      (?P<space>\s+|--[^\n]*|\#[^\n]*|/\*.*?\*/)
    | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<quoted>`(?:[^`]|``)+`)
    | (?P<number>\d+)
    | (?P<word>(?:@@)?[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)*)
    | (?P<punct>[(),=;*])
    """,
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS = frozenset(
    {"SHOW", "ALTER", "SYSTEM", "ADD", "DROP", "DROPP", "DECOMMISSION", "CANCEL", "MODIFY", "BACKEND",
     "BACKENDS", "FRONTENDS", "FOLLOWER", "OBSERVER", "BROKER", "ALL", "PROC", "SET", "PROPERTIES",
     "SELECT", "LIMIT", "USE"}
)  # fmt: skip


@dataclass(frozen=True)
class _Token:
    kind: str  # word | string | quoted | number | punct | eof
    text: str  # unquoted for string and quoted tokens
    start: int


def _unquote(raw: str) -> str:
    quote, body = raw[0], raw[1:-1]
    return re.sub(r"\\(.)", r"\1", body.replace(quote * 2, quote))


def _syntax_error(sql: str, position: int, encountered: str) -> SimSqlError:
    line_start = sql.rfind("\n", 0, position) + 1
    line_end = sql.find("\n", position)
    line = sql[line_start : len(sql) if line_end < 0 else line_end]
    caret = " " * (position - line_start) + "^"
    line_no = sql.count("\n", 0, position) + 1
    return _ddl_error(f"Syntax error in line {line_no}:\n{line}\n{caret}\nEncountered: {encountered}")


def _split_statements(sql: str) -> list[_Parser]:
    statements: list[list[_Token]] = [[]]
    position = 0
    while position < len(sql):
        match = _TOKEN_RE.match(sql, position)
        if match is None:
            raise _syntax_error(sql, position, "Unexpected character")
        kind = match.lastgroup or "space"
        text = match.group()
        position = match.end()
        if kind == "space":
            continue
        if kind == "punct" and text == ";":
            statements.append([])
            continue
        if kind in ("string", "quoted"):
            text = _unquote(text)
        statements[-1].append(_Token(kind, text, match.start()))
    return [_Parser(sql, tokens) for tokens in statements if tokens]


class _Parser:
    def __init__(self, sql: str, tokens: list[_Token]) -> None:
        self._sql = sql
        self._tokens = tokens
        self._index = 0

    def peek(self, offset: int = 0) -> _Token:
        index = self._index + offset
        if index < len(self._tokens):
            return self._tokens[index]
        end = self._tokens[-1].start + len(self._tokens[-1].text) if self._tokens else 0
        return _Token("eof", "", end)

    def next(self) -> _Token:
        token = self.peek()
        self._index += 1
        return token

    def accept(self, *words: str) -> bool:
        """Consume ``words`` (keywords, case-insensitive, or punctuation) if they come next."""
        for offset, word in enumerate(words):
            token = self.peek(offset)
            if token.kind not in ("word", "punct") or token.text.upper() != word:
                return False
        self._index += len(words)
        return True

    def expect(self, *words: str) -> None:
        for word in words:
            if not self.accept(word):
                raise self.error()

    def expect_kind(self, kind: str) -> _Token:
        token = self.next()
        if token.kind != kind:
            raise self.error(token)
        return token

    def one_of(self, *words: str) -> str:
        for word in words:
            if self.accept(word):
                return word
        raise self.error()

    def string(self) -> str:
        return self.expect_kind("string").text

    def strings(self) -> list[str]:
        values = [self.string()]
        while self.accept(","):
            values.append(self.string())
        return values

    def name(self) -> str:
        token = self.next()
        if token.kind not in ("word", "quoted", "string"):
            raise self.error(token)
        return token.text

    def properties(self) -> dict[str, str]:
        self.expect("(")
        properties: dict[str, str] = {}
        while True:
            key = self.string()
            self.expect("=")
            properties[key] = self.string()
            if not self.accept(","):
                break
        self.expect(")")
        return properties

    def skip_rest(self) -> None:
        self._index = len(self._tokens)

    def end(self) -> None:
        if self._index < len(self._tokens):
            raise self.error()

    def error(self, token: _Token | None = None) -> SimSqlError:
        token = token or self.peek()
        if token.kind == "eof":
            encountered = "EOF"
        elif token.kind == "word":
            encountered = token.text.upper() if token.text.upper() in _KEYWORDS else "IDENTIFIER"
        elif token.kind in ("string", "number"):
            encountered = "STRING LITERAL" if token.kind == "string" else "INTEGER LITERAL"
        else:
            encountered = token.text
        return _syntax_error(self._sql, token.start, encountered)


# ---------------------------------------------------------------------------------------------
# MySQL protocol (mysql-mimic)

_PEER_HOST: contextvars.ContextVar[str] = contextvars.ContextVar("sim_fe_peer_host", default="127.0.0.1")


class _DorisMysqlServer(MysqlServer):  # type: ignore[misc]
    """Remembers each client's address so that 1045 messages can name it as Doris does."""

    async def _client_connected_cb(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if peer:
            _PEER_HOST.set(str(peer[0]))
        # A connection still open at shutdown is cancelled; end quietly instead of letting
        # asyncio's stream callback report the cancellation as an error.
        with contextlib.suppress(asyncio.CancelledError):
            await super()._client_connected_cb(reader, writer)


class _DorisPasswordPlugin(NativePasswordAuthPlugin):  # type: ignore[misc]
    """mysql_native_password against the cluster's users, failing with Doris's 1045 text."""

    def __init__(self, cluster: SimCluster) -> None:
        self._cluster = cluster

    def password_matches(self, user: User, scramble: bytes, nonce: bytes) -> bool:
        known = self._cluster.password_of(user.name) is not None
        return known and bool(super().password_matches(user, scramble, nonce))

    async def auth(self, auth_info: AuthInfo | None = None) -> AsyncGenerator[Any, AuthInfo]:
        decisions = super().auth(auth_info)
        decision = await decisions.__anext__()
        while isinstance(decision, bytes):
            auth_info = yield decision
            decision = await decisions.asend(auth_info)
        if isinstance(decision, Forbidden) and auth_info is not None:
            using = "YES" if auth_info.data else "NO"
            user = f"{auth_info.username}@{_PEER_HOST.get()}"
            decision = Forbidden(f"Access denied for user '{user}' (using password: {using})")
        yield decision


class _DorisIdentities(IdentityProvider):  # type: ignore[misc]
    def __init__(self, cluster: SimCluster) -> None:
        self._cluster = cluster
        self._plugin = _DorisPasswordPlugin(cluster)

    def get_plugins(self) -> list[Any]:
        return [self._plugin]

    async def get_user(self, username: str) -> User:
        password = self._cluster.password_of(username)
        auth_string = NativePasswordAuthPlugin.create_auth_string(password) if password else None
        return User(name=username, auth_string=auth_string, auth_plugin=self._plugin.name)


class _DorisSession(BaseSession):  # type: ignore[misc]
    def __init__(self, server: SimFeServer, variables: GlobalVariables) -> None:
        self.variables = SessionVariables(variables)
        self.username: str | None = None
        self.database: str | None = None
        self._server = server

    async def handle_query(self, sql: str, attrs: dict[str, str]) -> tuple[list[Any], list[Any]] | None:
        try:
            result = self._server.run(sql)
        except SimSqlError as exc:
            raise MysqlError(exc.message, code=exc.code) from exc
        if result is None:
            return None
        first = result.rows[0] if result.rows else ()
        types = [ColumnType.LONGLONG if isinstance(v, int) else ColumnType.VARCHAR for v in first]
        types += [ColumnType.VARCHAR] * (len(result.columns) - len(types))
        columns = [ResultColumn(name, type_) for name, type_ in zip(result.columns, types, strict=True)]
        return list(result.rows), columns

    async def use(self, database: str) -> None:
        self.database = database


class SimFeServer:
    """Serves one FE of a :class:`SimCluster` (default: its master) over the MySQL protocol.

    ``port=0`` picks a free port; :attr:`port` is the real one once serving. While serving, the
    FE's QueryPort is that port and the FE is alive; after stopping it is shown as dead.
    """

    def __init__(
        self,
        cluster: SimCluster,
        *,
        frontend: tuple[str, int] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.cluster = cluster
        self.frontend = frontend or cluster.master
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        with cluster._lock:
            self._fe = cluster._frontend_at(*self.frontend)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server is not serving")
        return self._port

    def serve_as(self, frontend: tuple[str, int]) -> None:
        """Answer as another FE of the cluster from now on, as a Service does when its pod changes."""
        with self.cluster._lock:
            fe = self.cluster._frontend_at(*frontend)
            if self._port is not None:
                fe.query_port = self._port
            self.frontend, self._fe = frontend, fe

    def run(self, sql: str) -> Result | None:
        """Execute ``sql`` as this FE (what a client connected to it gets)."""
        with self.cluster._lock:
            return self.cluster._execute(sql, self._fe)

    async def serve(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve until cancelled or :meth:`stop`; ``on_ready`` gets the listening port."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        build = self.cluster.profile.build
        variables = GlobalVariables(
            {
                **SYSTEM_VARIABLES,
                "version": (str, "5.7.99", False),
                "version_comment": (str, f"Doris version {build}", False),
            }
        )
        server = _DorisMysqlServer(
            session_factory=lambda: _DorisSession(self, variables),
            identity_provider=_DorisIdentities(self.cluster),
        )
        await server.start_server(host=self.host, port=self._requested_port)
        self._port = int(server.sockets()[0].getsockname()[1])
        with self.cluster._lock:
            self._fe.query_port = self._port
            self.cluster._start_frontend(self._fe)
        try:
            if on_ready is not None:
                on_ready(self._port)
            await self._stopping.wait()
        finally:
            server.close()
            await _cancel_other_tasks()
            await server.wait_closed()
            with self.cluster._lock:
                self.cluster._stop_frontend(self._fe, "Unknown error")
            self._port = None

    def start(self, timeout: float = 10.0) -> Self:
        """Serve in a background thread; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve(on_ready=lambda _port: ready.set()))
            except BaseException as exc:  # reported to start()
                failures.append(exc)
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name=f"sim-fe-{self.frontend[0]}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failures:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError("simulated FE failed to start") from (failures[0] if failures else None)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def _cancel_other_tasks() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# CLI


def _user(text: str) -> tuple[str, str]:
    name, _, password = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError("expected NAME or NAME:PASSWORD")
    return name, password


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m doris_operator.sim.fe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=9030, help="MySQL port, 0 picks a free one (default 9030)"
    )
    parser.add_argument("--version", default="2.1.8", help="Doris version to imitate: 2.0.x, 2.1.x or 3.x")
    parser.add_argument(
        "--user",
        type=_user,
        action="append",
        default=[],
        metavar="NAME[:PASSWORD]",
        help="add a user (repeatable); root without password always exists unless given here",
    )
    parser.add_argument("--decommission-rate", type=float, default=10.0, help="tablets per second")
    parser.add_argument(
        "--auto-start", action="store_true", help="nodes added by SQL start at once (no separate processes)"
    )
    args = parser.parse_args(argv)
    users = {"root": "", **dict(args.user)}
    cluster = SimCluster(
        args.version, users=users, decommission_rate=args.decommission_rate, auto_start=args.auto_start
    )
    server = SimFeServer(cluster, host=args.host, port=args.port)
    build = cluster.profile.build

    def ready(port: int) -> None:
        print(f"simulated Doris FE ({build}) listening on {args.host}:{port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(on_ready=ready))


if __name__ == "__main__":
    main()
