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
from dataclasses import dataclass, field, replace
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
    # Runtime configuration (ADMIN SET FRONTEND CONFIG): lost when the process restarts.
    config: dict[str, str] = field(default_factory=dict)
    replay_lag: float = 0.0  # a non-master answers from the catalog as it was this long ago
    frozen_view: _View | None = None  # replay paused: the catalog as it was then

    @property
    def address(self) -> _HostPort:
        return _HostPort(self.host, self.edit_log_port)


@dataclass(frozen=True)
class FeConfig:
    """One row of ADMIN SHOW FRONTEND CONFIG: ``Key, Value, Type, IsMutable, MasterOnly, Comment``."""

    key: str
    default: str
    type: str
    mutable: bool
    master_only: bool


FE_CONFIGS: dict[str, FeConfig] = {
    c.key: c
    for c in (
        # Tablet scheduler switches (all master-only: ADMIN SET on a follower is forwarded).
        FeConfig("disable_balance", "false", "boolean", True, True),
        FeConfig("disable_colocate_balance", "false", "boolean", True, True),
        FeConfig("disable_tablet_scheduler", "false", "boolean", True, True),
        FeConfig("tablet_repair_delay_factor_second", "60", "long", True, True),
        FeConfig("drop_backend_after_decommission", "true", "boolean", True, True),
        FeConfig("max_backend_heartbeat_failure_tolerance_count", "1", "long", True, True),
        # Set in fe.conf only (fe_entrypoint.sh appends ``enable_fqdn_mode = true`` when absent).
        FeConfig("enable_fqdn_mode", "false", "boolean", False, False),
        FeConfig("edit_log_port", "9010", "int", False, False),
        FeConfig("query_port", "9030", "int", False, False),
        FeConfig("http_port", "8030", "int", False, False),
    )
}


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
    replicas: set[int] = field(default_factory=set)  # ids of the tablets with a replica here
    dead_since: float | None = None
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

    @property
    def tablets(self) -> int:
        """``TabletNum``: the replicas the FE's catalog places on this backend."""
        return len(self.replicas)

    @property
    def storage(self) -> bool:
        """Can hold replicas: a mix node that is alive and not being decommissioned."""
        return self.alive and not self.decommissioned and self.node_role == "mix"


@dataclass
class _Tablet:
    tablet_id: int
    replication_num: int
    replicas: set[int] = field(default_factory=set)  # backend ids


@dataclass
class _Query:
    query_id: str
    backend_id: int
    fe_host: str
    started_at: float
    sql: str


@dataclass(frozen=True)
class _View:
    """The membership part of the catalog at one journal id, as a non-master FE replays it."""

    time: float
    journal_id: int
    master: str
    frontends: tuple[_Frontend, ...]
    backends: tuple[tuple[_Backend, int], ...]  # each with its TabletNum
    brokers: tuple[_Broker, ...]


# Tablet health as Doris's Tablet.getHealth names it (the subset the simulator can reach).
HEALTHY = "HEALTHY"
REPLICA_MISSING = "REPLICA_MISSING"
REPLICA_RELOCATING = "REPLICA_RELOCATING"
REDUNDANT = "REDUNDANT"
UNRECOVERABLE = "UNRECOVERABLE"


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
        replication_num: int = 3,
        clone_rate: float = 10.0,
        balance_rate: float = 2.0,
        repair_delay: float = 60.0,
        replay_lag: float = 0.0,
        fe_config: Mapping[str, str] | None = None,
        drop_backend_after_decommission: bool = True,
        auto_start: bool = False,
        seed: int = 0,
    ) -> None:
        if replication_num < 1:
            raise ValueError("replication_num must be >= 1")
        self.profile = VersionProfile.for_version(version)
        self.clock: Clock = clock or SystemClock()
        self.replication_num = replication_num
        self.clone_rate = clone_rate
        self.balance_rate = balance_rate
        self.replay_lag = replay_lag
        self.auto_start = auto_start
        self._decommission_rate = decommission_rate
        # fe.conf as every FE process reads it at start; ADMIN SET changes only the running process.
        self._fe_conf = {key: c.default for key, c in FE_CONFIGS.items()}
        self._fe_conf["tablet_repair_delay_factor_second"] = str(int(repair_delay))
        self._fe_conf["drop_backend_after_decommission"] = (
            "true" if drop_backend_after_decommission else "false"
        )
        for key, value in (fe_config or {}).items():
            if key not in FE_CONFIGS:
                raise ValueError(f"unknown FE config {key!r}")
            self._fe_conf[key] = value
        self._tablets: dict[int, _Tablet] = {}
        self._next_tablet_id = 20001
        self._queries: dict[str, _Query] = {}
        self._repair_credit = 0.0
        self._balance_credit = 0.0
        self._history: list[_View] = []
        self._dirty_at: float | None = None
        self._low_water: int | None = None
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

    # -- configuration -------------------------------------------------------------------------

    @property
    def drop_backend_after_decommission(self) -> bool:
        return self._config("drop_backend_after_decommission") == "true"

    @property
    def repair_delay(self) -> float:
        return float(self._config("tablet_repair_delay_factor_second"))

    def frontend_config(self, key: str, frontend: tuple[str, int] | None = None) -> str:
        """The value of ``key`` in the running FE at ``frontend`` (default: the master)."""
        with self._lock:
            fe = self._frontend_at(*frontend) if frontend else self._frontends[self._master]
            return fe.config.get(key, self._fe_conf[key])

    def set_fe_conf(self, key: str, value: str) -> None:
        """Change fe.conf: FEs started from now on read it (running ones keep their value)."""
        with self._lock:
            if key not in FE_CONFIGS:
                raise ValueError(f"unknown FE config {key!r}")
            self._fe_conf[key] = value

    def _config(self, key: str) -> str:
        """A master-only setting, as the master runs with it."""
        return self._frontends[self._master].config.get(key, self._fe_conf[key])

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

    def set_rates(self, *, clone: float | None = None, balance: float | None = None) -> None:
        """Replicas per second the tablet scheduler clones to repair (``clone``) or to balance."""
        with self._lock:
            self._tick()
            if clone is not None:
                self.clone_rate = clone
            if balance is not None:
                self.balance_rate = balance

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
        """What the BE image does: ADD BACKEND, then start (``node_role="computation"`` for a CN).

        ``tablets``: that many single-replica tablets on it (see :meth:`set_tablets`).
        """
        with self._lock:
            self._tick()
            (be,) = self._add_backends([_HostPort(host, heartbeat_port)], {})
            self._start_backend(be, node_role)
            self._set_single_replica_tablets(be, tablets)

    def unregister_backend(self, host: str, heartbeat_port: int = 9050) -> None:
        """ALTER SYSTEM DROPP BACKEND."""
        with self._lock:
            self._tick()
            self._dropp_backends([_HostPort(host, heartbeat_port)])

    def set_backend_alive(
        self,
        host: str,
        heartbeat_port: int,
        alive: bool,
        *,
        node_role: str | None = None,
        err_msg: str = "",
        wiped: bool = False,
    ) -> None:
        """Start or stop a BE/CN process; a start reports ``node_role`` (default: unchanged).

        ``wiped=True`` on a start: the BE comes back with empty storage (a new pod on emptyDir), so
        its first tablet report drops all its replicas from the catalog.
        """
        with self._lock:
            self._tick()
            be = self._backend_at(host, heartbeat_port)
            if alive:
                self._start_backend(be, node_role or be.node_role)
                if wiped:
                    self._wipe(be)
            else:
                if be.alive:
                    be.last_heartbeat = be.dead_since = self.clock.now()
                    for query in [q for q in self._queries.values() if q.backend_id == be.backend_id]:
                        del self._queries[query.query_id]  # its fragments fail with the process
                be.alive = False
                be.heartbeat_failures += 1
                be.err_msg = err_msg or "Unknown error"
                self._journal()
            self._observe()

    def wipe_backend(self, host: str, heartbeat_port: int = 9050) -> None:
        """The BE's storage is gone: the catalog drops its replicas (as after its next report)."""
        with self._lock:
            self._tick()
            self._wipe(self._backend_at(host, heartbeat_port))
            self._observe()

    def set_tablets(self, host: str, heartbeat_port: int, tablets: int) -> None:
        """Give the backend exactly ``tablets`` single-replica tablets (``replication_num`` 1), adding
        new ones or dropping some; tablets with more replicas are not touched."""
        with self._lock:
            self._tick()
            self._set_single_replica_tablets(self._backend_at(host, heartbeat_port), tablets)
            self._observe()

    # -- tablets -------------------------------------------------------------------------------

    def create_tablets(self, count: int, replication_num: int | None = None) -> list[int]:
        """CREATE TABLE's part: ``count`` tablets of ``replication_num`` (default: the cluster's)
        replicas each, on distinct alive storage backends, fewest replicas first."""
        with self._lock:
            self._tick()
            r = replication_num or self.replication_num
            candidates = [b for b in self._backends.values() if b.storage]
            if len(candidates) < r:
                raise _ddl_error(
                    f"Failed to find enough backend, please check the replication num,replication tag "
                    f"and storage medium and avail capacity of backends or maybe all be on decommission "
                    f"state. Create failed replications: {r}, backends available: {len(candidates)}"
                )
            created = []
            for _ in range(count):
                tablet = self._new_tablet(r)
                for be in sorted(candidates, key=lambda b: (b.tablets, b.backend_id))[:r]:
                    self._add_replica(tablet, be)
                created.append(tablet.tablet_id)
            self._journal()
            self._observe()
            return created

    def replicas_of(self, tablet_id: int) -> set[int]:
        """Backend ids holding a replica of the tablet, in the catalog."""
        with self._lock:
            return set(self._tablets[tablet_id].replicas)

    def tablet_states(self) -> dict[int, str]:
        """Each tablet's health (``HEALTHY``, ``REPLICA_MISSING``, ...), as the master computes it."""
        with self._lock:
            self._tick()
            return {t.tablet_id: self._health(t) for t in self._tablets.values()}

    def min_healthy_replicas(self) -> int:
        """The fewest replicas on alive backends that any tablet has right now (None: no tablets -> 0
        replicas needed, returned as a large number)."""
        with self._lock:
            self._tick()
            return self._min_alive()

    def lowest_healthy_replicas_seen(self) -> int | None:
        """The low-water mark of :meth:`min_healthy_replicas` over every change since the cluster was
        made (or :meth:`reset_lowest_seen`): a continuous invariant, not a sample. None: no tablets."""
        with self._lock:
            self._tick()
            return self._low_water

    def reset_lowest_seen(self) -> None:
        with self._lock:
            self._tick()
            self._low_water = None
            self._observe()

    # -- queries -------------------------------------------------------------------------------

    def start_query(
        self, host: str | None = None, heartbeat_port: int = 9050, *, sql: str = "SELECT 1"
    ) -> str:
        """Start a query whose fragment runs on the given backend, or on the query-available one
        with the fewest running queries. Doris schedules no new query on a backend that is dead,
        shut down, or has ``disable_query`` set: that raises ValueError."""
        with self._lock:
            self._tick()
            if host is not None:
                be = self._backend_at(host, heartbeat_port)
                if not self._query_available(be):
                    raise ValueError(f"backend {be.address} takes no new queries")
            else:
                available = [b for b in self._backends.values() if self._query_available(b)]
                if not available:
                    raise ValueError("no backend takes new queries")
                load = {b.backend_id: 0 for b in available}
                for q in self._queries.values():
                    if q.backend_id in load:
                        load[q.backend_id] += 1
                be = min(available, key=lambda b: (load[b.backend_id], b.backend_id))
            query_id = f"{self._rng.getrandbits(64):016x}-{self._rng.getrandbits(64):016x}"
            master = self._frontends[self._master]
            self._queries[query_id] = _Query(query_id, be.backend_id, master.host, self.clock.now(), sql)
            return query_id

    def finish_query(self, query_id: str) -> None:
        with self._lock:
            self._queries.pop(query_id, None)

    def running_queries(self, host: str, heartbeat_port: int = 9050) -> list[str]:
        """Ids of the queries running on that backend."""
        with self._lock:
            be = self._backend_at(host, heartbeat_port)
            return [q.query_id for q in self._queries.values() if q.backend_id == be.backend_id]

    @staticmethod
    def _query_available(be: _Backend) -> bool:
        return be.alive and not be.query_disabled

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
            return sql.frontends_result(self, via, self._view_of(via))

    def show_backends(self, order_by_host: bool = False) -> Result:
        """SHOW BACKENDS (by BackendId) or SHOW PROC '/backends' (by Host)."""
        with self._lock:
            self._tick()
            return sql.backends_result(self, order_by_host)

    def show_brokers(self) -> Result:
        with self._lock:
            self._tick()
            return sql.brokers_result(self)

    def execute(self, sql: str, via: tuple[str, int] | None = None) -> Result | None:
        """Run Doris SQL (``;``-separated statements allowed) as the FE at ``via`` (default master).

        Returns the last statement's result set, None for OK; raises :class:`SimSqlError`.
        """
        with self._lock:
            fe = self._frontend_at(*via) if via else self._frontends[self._master]
            return self._execute(sql, fe)

    def _execute(self, sql_text: str, via: _Frontend | sql.Session) -> Result | None:
        """Every statement, from Python or a MySQL client, passes here (tests may wrap it)."""
        return sql.execute(self, sql_text, via)

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

    def _journal(self) -> None:
        """One edit-log entry: the catalog changed (non-master FEs replay it)."""
        self._journal_id += 1
        if self._dirty_at is None:
            self._dirty_at = self.clock.now()

    def _new_frontend(self, role: str, address: _HostPort) -> _Frontend:
        name = "fe_" + str(uuid.UUID(int=self._rng.getrandbits(128), version=4)).replace("-", "_")
        fe = _Frontend(name, address.host, address.port, role, is_helper=role == "FOLLOWER")
        fe.replay_lag = self.replay_lag
        self._frontends[name] = fe
        self._journal()
        return fe

    def _start_frontend(self, fe: _Frontend) -> None:
        if not fe.alive:
            fe.started_at = self.clock.now()
            fe.config = {}  # a new process: ADMIN SET values are gone, fe.conf applies
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
            self._journal()
        be.alive = be.disks_reported = True
        be.dead_since = None
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

    # -- internals: tablets and replicas -------------------------------------------------------

    def _new_tablet(self, replication_num: int) -> _Tablet:
        tablet = _Tablet(self._next_tablet_id, replication_num)
        self._tablets[tablet.tablet_id] = tablet
        self._next_tablet_id += 1
        return tablet

    def _add_replica(self, tablet: _Tablet, be: _Backend) -> None:
        tablet.replicas.add(be.backend_id)
        be.replicas.add(tablet.tablet_id)

    def _remove_replica(self, tablet: _Tablet, backend_id: int) -> None:
        tablet.replicas.discard(backend_id)
        be = self._backends.get(backend_id)
        if be is not None:
            be.replicas.discard(tablet.tablet_id)

    def _set_single_replica_tablets(self, be: _Backend, count: int) -> None:
        single = sorted(t for t in be.replicas if self._tablets[t].replication_num == 1)
        for tablet_id in single[count:]:
            self._remove_replica(self._tablets[tablet_id], be.backend_id)
            del self._tablets[tablet_id]
        for _ in range(count - len(single)):
            self._add_replica(self._new_tablet(1), be)
        self._journal()

    def _wipe(self, be: _Backend) -> None:
        for tablet_id in list(be.replicas):
            self._remove_replica(self._tablets[tablet_id], be.backend_id)
        self._journal()

    def _replica_alive(self, backend_id: int) -> bool:
        be = self._backends.get(backend_id)
        return be is not None and be.alive

    def _alive_count(self, tablet: _Tablet) -> int:
        return sum(self._replica_alive(b) for b in tablet.replicas)

    def _health(self, tablet: _Tablet) -> str:
        """Doris's Tablet.getHealth, for what the simulator models (no versions, tags, colocation)."""
        alive = self._alive_count(tablet)
        if alive == 0:
            return UNRECOVERABLE
        if alive < tablet.replication_num:
            return REPLICA_MISSING
        stable = sum(self._replica_alive(b) and not self._backends[b].decommissioned for b in tablet.replicas)
        if stable < tablet.replication_num:
            return REPLICA_RELOCATING
        if len(tablet.replicas) > tablet.replication_num:
            return REDUNDANT
        return HEALTHY

    def _min_alive(self) -> int:
        return min((self._alive_count(t) for t in self._tablets.values()), default=1 << 30)

    def _observe(self) -> None:
        """Keep the low-water mark of healthy replicas (called after every change)."""
        if self._tablets:
            low = self._min_alive()
            self._low_water = low if self._low_water is None else min(self._low_water, low)

    def _targets(self, tablet: _Tablet) -> list[_Backend]:
        """Where a new replica of ``tablet`` can go: storage backends without one, fewest first."""
        return sorted(
            (b for b in self._backends.values() if b.storage and b.backend_id not in tablet.replicas),
            key=lambda b: (b.tablets, b.backend_id),
        )

    def _repair_due(self, tablet: _Tablet, now: float) -> bool:
        """A missing replica is cloned at once when the catalog lost it (a wiped or dropped BE), and
        after ``tablet_repair_delay_factor_second`` when its backend is only down."""
        if self._alive_count(tablet) == 0 or self._health(tablet) != REPLICA_MISSING:
            return False
        if len(tablet.replicas) < tablet.replication_num:
            return True
        dead = [self._backends[b].dead_since for b in tablet.replicas if not self._replica_alive(b)]
        return any(since is not None and now - since >= self.repair_delay for since in dead)

    def _due_since(self, tablet: _Tablet, previous_tick: float) -> float:
        if len(tablet.replicas) < tablet.replication_num:
            return previous_tick
        dead = [self._backends[b].dead_since for b in tablet.replicas if not self._replica_alive(b)]
        due = [since + self.repair_delay for since in dead if since is not None]
        return max(previous_tick, min(due, default=previous_tick))

    # -- internals: the tablet scheduler -------------------------------------------------------

    def _tick(self) -> None:
        now = self.clock.now()
        self._record_view()
        # Rounded so that float noise in epoch seconds cannot lose a tablet at the boundary.
        elapsed, self._last_tick = round(now - self._last_tick, 6), now
        master = self._frontends[self._master]
        scheduling = master.alive and self._config("disable_tablet_scheduler") != "true"
        if elapsed > 0 and scheduling:
            for be in sorted(self._backends.values(), key=lambda b: b.backend_id):
                if be.decommissioned:
                    self._drain(be, elapsed)
            self._repair(elapsed, now)
            self._drop_redundant()
            if self._config("disable_balance") != "true":
                self._balance(elapsed)
            self._observe()
        if self.drop_backend_after_decommission:
            for be in [b for b in self._backends.values() if b.decommissioned and b.tablets == 0]:
                del self._backends[be.backend_id]
                self._journal()
        self._record_view()

    def _drain(self, be: _Backend, elapsed: float) -> None:
        """Move replicas off the decommissioned ``be`` at ``decommission_rate`` per second: clone each
        to a storage backend that has none of that tablet yet, then delete it here. A tablet with no
        alive replica to copy from, or no backend to take it, stalls."""
        be.drain_credit += self._decommission_rate * elapsed
        budget = min(be.tablets, int(be.drain_credit + 1e-9))
        moved = 0
        for tablet_id in sorted(be.replicas):
            if moved >= budget:
                break
            tablet = self._tablets[tablet_id]
            targets = self._targets(tablet)
            if not targets or self._alive_count(tablet) == 0:
                continue
            self._add_replica(tablet, targets[0])
            self._remove_replica(tablet, be.backend_id)
            moved += 1
        if moved:
            self._journal()
        be.drain_credit = be.drain_credit - moved if moved == budget else 0.0

    def _repair(self, elapsed: float, now: float) -> None:
        """Clone missing replicas onto alive storage backends at ``clone_rate`` per second."""
        due = [t for t in self._tablets.values() if self._repair_due(t, now) and self._targets(t)]
        if not due:
            self._repair_credit = 0.0
            return
        # Credit only for the time something was due: since the previous tick for replicas the catalog
        # lost, since the repair delay ran out for replicas on a dead backend.
        due_since = min(self._due_since(t, now - elapsed) for t in due)
        self._repair_credit += self.clone_rate * min(elapsed, max(0.0, now - due_since))
        cloned = 0
        # Fewest alive replicas first (Doris's priorities), then by id.
        for tablet in sorted(due, key=lambda t: (self._alive_count(t), t.tablet_id)):
            if self._repair_credit < 1 - 1e-9:
                break
            targets = self._targets(tablet)
            if targets:
                self._add_replica(tablet, targets[0])
                self._repair_credit -= 1
                cloned += 1
        if cloned:
            self._journal()

    def _drop_redundant(self) -> None:
        """Delete a replica beyond the replication number, on a dead backend first."""
        for tablet in self._tablets.values():
            while len(tablet.replicas) > tablet.replication_num:
                stable = [
                    b
                    for b in tablet.replicas
                    if self._replica_alive(b) and not self._backends[b].decommissioned
                ]
                if len(stable) < tablet.replication_num:
                    break
                extra = [b for b in tablet.replicas if b not in stable] or sorted(
                    stable, key=lambda b: (-self._backends[b].tablets, b)
                )
                self._remove_replica(tablet, extra[0])
                self._journal()

    def _balance(self, elapsed: float) -> None:
        """Move replicas from the fullest storage backend to the emptiest at ``balance_rate`` per
        second, only while every tablet is healthy (repairs come first)."""
        storage = [b for b in self._backends.values() if b.storage]
        if len(storage) < 2 or any(self._health(t) != HEALTHY for t in self._tablets.values()):
            self._balance_credit = 0.0
            return
        self._balance_credit += self.balance_rate * elapsed
        moved = 0
        while self._balance_credit >= 1 - 1e-9:
            full = max(storage, key=lambda b: (b.tablets, -b.backend_id))
            empty = min(storage, key=lambda b: (b.tablets, b.backend_id))
            average = sum(b.tablets for b in storage) / len(storage)
            if full.tablets - empty.tablets <= 1 or (
                full.tablets <= average * 1.1 and empty.tablets >= average * 0.9
            ):
                self._balance_credit = 0.0
                break
            movable = sorted(t for t in full.replicas if empty.backend_id not in self._tablets[t].replicas)
            if not movable:
                self._balance_credit = 0.0
                break
            tablet = self._tablets[movable[0]]
            self._add_replica(tablet, empty)
            self._remove_replica(tablet, full.backend_id)
            self._balance_credit -= 1
            moved += 1
        if moved:
            self._journal()

    # -- internals: what non-master FEs replay -------------------------------------------------

    def _snapshot(self, time: float) -> _View:
        return _View(
            time=time,
            journal_id=self._journal_id,
            master=self._master,
            frontends=tuple(replace(fe, config={}, frozen_view=None) for fe in self._frontends.values()),
            backends=tuple((replace(be, replicas=set()), be.tablets) for be in self._backends.values()),
            brokers=tuple(replace(b) for b in self._brokers),
        )

    def _record_view(self) -> None:
        """Keep the catalog's history as far back as the most lagging FE needs it."""
        if self._dirty_at is None and self._history:
            return
        at = self._dirty_at if self._dirty_at is not None else self.clock.now()
        self._dirty_at = None
        self._history.append(self._snapshot(at))
        horizon = self.clock.now() - max((fe.replay_lag for fe in self._frontends.values()), default=0.0)
        while len(self._history) > 1 and self._history[1].time <= horizon:
            self._history.pop(0)

    def _live_view(self) -> _View:
        return _View(
            time=self.clock.now(),
            journal_id=self._journal_id,
            master=self._master,
            frontends=tuple(self._frontends.values()),
            backends=tuple((be, be.tablets) for be in self._backends.values()),
            brokers=tuple(self._brokers),
        )

    def _view_of(self, fe: _Frontend) -> _View:
        """The membership catalog as ``fe`` knows it: the master's is live, a follower or observer
        answers from what it replayed (``replay_lag`` seconds behind, or frozen)."""
        if fe.name == self._master:
            return self._live_view()
        if fe.frozen_view is not None:
            return fe.frozen_view
        if fe.replay_lag <= 0:
            return self._live_view()
        self._record_view()
        cutoff = self.clock.now() - fe.replay_lag
        seen = [v for v in self._history if v.time <= cutoff]
        return seen[-1] if seen else self._history[0]

    def set_replay_lag(self, host: str, edit_log_port: int, seconds: float) -> None:
        """How far behind the master the FE at ``host:edit_log_port`` replays the catalog."""
        with self._lock:
            self._tick()
            self._frontend_at(host, edit_log_port).replay_lag = seconds

    def pause_replay(self, host: str, edit_log_port: int) -> None:
        """The FE stops replaying: it answers SHOW BACKENDS/FRONTENDS as of now until resumed."""
        with self._lock:
            self._tick()
            fe = self._frontend_at(host, edit_log_port)
            fe.frozen_view = self._view_of(fe)

    def resume_replay(self, host: str, edit_log_port: int) -> None:
        with self._lock:
            self._frontend_at(host, edit_log_port).frozen_view = None

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
        self._journal()

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
            self._journal()
            if self.auto_start:
                self._start_backend(be, "mix")
            added.append(be)
        return added

    def _dropp_backends(self, targets: Sequence[_HostPort | int]) -> None:
        found = [self._require_backend(t, lambda t: f"backend does not exists[{t}]") for t in targets]
        for be in found:
            for tablet_id in list(be.replicas):
                self._remove_replica(self._tablets[tablet_id], be.backend_id)  # its data is abandoned
            self._backends.pop(be.backend_id, None)
            self._journal()
        self._observe()

    def _decommission_backends(self, targets: Sequence[_HostPort | int]) -> None:
        for be in [self._require_backend(t, _decommission_missing) for t in targets]:
            if not be.decommissioned:
                be.decommissioned = True
                be.drain_credit = 0.0
                self._journal()

    def _cancel_decommission(self, targets: Sequence[_HostPort | int]) -> None:
        for be in [self._require_backend(t, _decommission_missing) for t in targets]:
            be.decommissioned = False
            be.drain_credit = 0.0
            self._journal()

    def _modify_backends(self, targets: Sequence[_HostPort | int], properties: Mapping[str, str]) -> None:
        settings = _split_properties(properties, allowed=("disable_query", "disable_load"))
        for be in [self._require_backend(t, lambda t: f"backend does not exists[{t}]") for t in targets]:
            be.tag.update(settings.tags)
            if "disable_query" in settings.flags:
                be.query_disabled = settings.flags["disable_query"]
            if "disable_load" in settings.flags:
                be.load_disabled = settings.flags["disable_load"]
            self._journal()

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
        self._journal()
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
        self._journal()


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


from . import sql  # noqa: E402  (sql builds on the names above)
