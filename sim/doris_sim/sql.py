"""Doris SQL against a :class:`~doris_sim.model.SimCluster`: a tokenizer and a small parser, the
statements Doris answers (with its columns and value formats), and its error texts.

Which FE answers (``../shared/reference/doris-sql-and-images.md`` §0): SHOW FRONTENDS/BACKENDS/BROKER
and SHOW PROC are answered by the FE the client is connected to, from the catalog it replayed, unless
the session set ``forward_to_master = true``; ALTER SYSTEM, CANCEL DECOMMISSION and ADMIN SET of a
master-only config are forwarded to the master; ADMIN SHOW FRONTEND CONFIG shows the connected FE's
own running values.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .model import (
    _BYTES_PER_TABLET,
    _DISK_OTHER_USED,
    _DISK_TOTAL,
    _DROP_BACKEND_REFUSED,
    _EMPTY_QUERY,
    _NOT_READY,
    _NULL_STRING,
    _UNKNOWN_ERROR,
    _UNKNOWN_SYSTEM_VARIABLE,
    _WRONG_PROC_PATH,
    FE_CONFIGS,
    HEALTHY,
    REDUNDANT,
    REPLICA_MISSING,
    REPLICA_RELOCATING,
    UNRECOVERABLE,
    Result,
    SimCluster,
    SimSqlError,
    _Backend,
    _ddl_error,
    _Frontend,
    _parse_backend_target,
    _parse_host_port,
    _raiser,
    _View,
)

__all__ = ["Session", "SimSqlError", "execute"]

TABLET_HEALTH_COLUMNS = (
    "DbId", "DbName", "TabletNum", "HealthyNum", "ReplicaMissingNum", "VersionIncompleteNum",
    "ReplicaRelocatingNum", "RedundantNum", "ReplicaMissingForTagNum", "ForceRedundantNum",
    "ColocateMismatchNum", "ColocateRedundantNum", "NeedFurtherRepairNum", "UnrecoverableNum",
    "ReplicaCompactionTooSlowNum", "InconsistentNum", "OversizeNum", "CloningNum",
)  # fmt: skip
"""``TabletHealthProcDir.TITLE_NAMES`` (2.x/3.x, Env-based): one row per database, then ``Total``."""

STATISTIC_COLUMNS = (
    "DbId", "DbName", "TableNum", "PartitionNum", "IndexNum", "TabletNum", "ReplicaNum",
    "UnhealthyTabletNum", "InconsistentTabletNum", "CloningTabletNum", "BadTabletNum",
    "CompactionTooSlowTabletNum", "OversizeTabletNum",
)  # fmt: skip
"""``StatisticProcDir.TITLE_NAMES``: one row per database, then ``Total``."""

FE_CONFIG_COLUMNS = ("Key", "Value", "Type", "IsMutable", "MasterOnly", "Comment")
"""``ShowConfigStmt.FE_TITLE_NAMES``."""

BACKEND_ACTIVE_TASKS_COLUMNS = (
    "BE_ID", "FE_HOST", "QUERY_ID", "TASK_TIME_MS", "TASK_CPU_TIME_MS", "SCAN_ROWS", "SCAN_BYTES",
    "BE_PEAK_MEMORY_BYTES", "CURRENT_USED_MEMORY_BYTES", "SHUFFLE_SEND_BYTES", "SHUFFLE_SEND_ROWS",
    "QUERY_TYPE",
)  # fmt: skip
"""``information_schema.backend_active_tasks`` (2.1 / 3.x docs)."""

# The one database every simulated tablet belongs to (a table with one partition and one index).
SIM_DB_ID = 10001
SIM_DB_NAME = "sim_db"


@dataclass
class Session:
    """One client connection: the FE it talks to and its session variables."""

    fe: _Frontend
    forward_to_master: bool = False
    empty_backends: bool = False  # a test fault: SHOW BACKENDS answers no rows


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


# -- rendering ---------------------------------------------------------------------------------


def frontends_result(cluster: SimCluster, via: _Frontend, view: _View | None = None) -> Result:
    """SHOW FRONTENDS answered by ``via`` from ``view`` (default: the live catalog)."""
    view = view or cluster._live_view()
    rows = []
    for fe in view.frontends:
        me = fe.name == via.name
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
            "IsMaster": _fmt_bool(fe.name == view.master),
            "ClusterId": str(cluster._cluster_id),
            "Join": _fmt_bool(shown),
            "Alive": _fmt_bool(alive),
            "ReplayedJournalId": str(
                view.journal_id if alive else min(fe.replayed_journal_id, view.journal_id)
            ),
            "LastStartTime": _fmt_time(fe.started_at),
            "LastHeartbeat": _fmt_time(view.time if alive else fe.last_heartbeat),
            "IsHelper": _fmt_bool(fe.is_helper),
            "ErrMsg": "" if alive else fe.err_msg,
            "Version": cluster.profile.build if shown else "",
            "CurrentConnected": "Yes" if me else "No",
        }
        rows.append(tuple(values[c] for c in cluster.profile.frontend_columns))
    return Result(cluster.profile.frontend_columns, tuple(rows))


def backends_result(cluster: SimCluster, order_by_host: bool, view: _View | None = None) -> Result:
    """SHOW BACKENDS (by BackendId) or SHOW PROC '/backends' (by Host) from ``view``."""
    view = view or cluster._live_view()
    key: Callable[[tuple[_Backend, int]], Any] = (
        (lambda b: b[0].host) if order_by_host else (lambda b: b[0].backend_id)
    )
    rows = []
    for be, tablets in sorted(view.backends, key=key):
        data = tablets * _BYTES_PER_TABLET if be.disks_reported else 0
        total = _DISK_TOTAL if be.disks_reported else 0
        avail = max(total - _DISK_OTHER_USED - data, 0) if be.disks_reported else 1
        used_pct = f"{(total - avail) * 100 / total if total > 0 else 0:.2f} %"
        heartbeat = view.time if be.alive else be.last_heartbeat
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
            "TabletNum": str(tablets),
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
        rows.append(tuple(values[c] for c in cluster.profile.backend_columns))
    return Result(cluster.profile.backend_columns, tuple(rows))


def brokers_result(cluster: SimCluster, view: _View | None = None) -> Result:
    view = view or cluster._live_view()
    rows = []
    for broker in sorted(view.brokers, key=lambda b: (b.name, b.host, b.port)):
        values = {
            "Name": broker.name,
            "Host": broker.host,
            "Port": str(broker.port),
            "Alive": _fmt_bool(broker.alive),
            "LastStartTime": _fmt_time(broker.started_at),
            "LastUpdateTime": _fmt_time(view.time if broker.alive else broker.last_update),
            "ErrMsg": broker.err_msg,
        }
        rows.append(tuple(values[c] for c in cluster.profile.broker_columns))
    return Result(cluster.profile.broker_columns, tuple(rows))


def _cloning(cluster: SimCluster) -> set[int]:
    """Tablets with a clone task on the master: due repairs and replicas being relocated."""
    master = cluster._frontends[cluster._master]
    if not master.alive or cluster._config("disable_tablet_scheduler") == "true":
        return set()
    now = cluster.clock.now()
    cloning = set()
    for tablet in cluster._tablets.values():
        status = cluster._health(tablet)
        due = status == REPLICA_MISSING and cluster._repair_due(tablet, now)
        if (due or status == REPLICA_RELOCATING) and cluster._targets(tablet):
            cloning.add(tablet.tablet_id)
    return cloning


def tablet_health_result(cluster: SimCluster, via: _Frontend) -> Result:
    """SHOW PROC '/cluster_health/tablet_health'. Clone tasks exist on the master only."""
    states = [cluster._health(t) for t in cluster._tablets.values()]
    cloning = len(_cloning(cluster)) if via.name == cluster._master else 0
    counts = {
        "TabletNum": len(states),
        "HealthyNum": states.count(HEALTHY),
        "ReplicaMissingNum": states.count(REPLICA_MISSING),
        "ReplicaRelocatingNum": states.count(REPLICA_RELOCATING),
        "RedundantNum": states.count(REDUNDANT),
        "UnrecoverableNum": states.count(UNRECOVERABLE),
        "CloningNum": cloning,
    }
    return _per_db(TABLET_HEALTH_COLUMNS, counts, bool(states))


def statistic_result(cluster: SimCluster, via: _Frontend) -> Result:
    """SHOW PROC '/statistic'. REDUNDANT and UNRECOVERABLE tablets are not counted as unhealthy
    (Doris counts the latter as bad)."""
    states = [cluster._health(t) for t in cluster._tablets.values()]
    counts = {
        "TableNum": 1 if states else 0,
        "PartitionNum": 1 if states else 0,
        "IndexNum": 1 if states else 0,
        "TabletNum": len(states),
        "ReplicaNum": sum(len(t.replicas) for t in cluster._tablets.values()),
        "UnhealthyTabletNum": sum(s not in (HEALTHY, REDUNDANT, UNRECOVERABLE) for s in states),
        "CloningTabletNum": len(_cloning(cluster)) if via.name == cluster._master else 0,
        "BadTabletNum": states.count(UNRECOVERABLE),
    }
    return _per_db(STATISTIC_COLUMNS, counts, bool(states))


def _per_db(columns: tuple[str, ...], counts: Mapping[str, int], any_db: bool) -> Result:
    db_row = {"DbId": str(SIM_DB_ID), "DbName": SIM_DB_NAME, **{k: str(v) for k, v in counts.items()}}
    total = {"DbId": "Total", "DbName": "1" if any_db else "0", **{k: str(v) for k, v in counts.items()}}
    rows = ([db_row] if any_db else []) + [total]
    return Result(columns, tuple(tuple(row.get(c, "0") for c in columns) for row in rows))


def fe_config_result(cluster: SimCluster, via: _Frontend, pattern: str | None) -> Result:
    """ADMIN SHOW FRONTEND CONFIG [LIKE 'pattern'] as the connected FE runs."""
    regex = None if pattern is None else re.compile(_like_to_regex(pattern), re.IGNORECASE)
    rows = []
    for key in sorted(FE_CONFIGS):
        spec = FE_CONFIGS[key]
        if regex is not None and not regex.fullmatch(key):
            continue
        value = via.config.get(key, cluster._fe_conf[key])
        rows.append((key, value, spec.type, _fmt_bool(spec.mutable), _fmt_bool(spec.master_only), ""))
    return Result(FE_CONFIG_COLUMNS, tuple(rows))


def _like_to_regex(pattern: str) -> str:
    out = []
    escaped = False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return "".join(out)


def backend_active_tasks_result(cluster: SimCluster) -> Result:
    now = cluster.clock.now()
    rows = []
    for q in sorted(cluster._queries.values(), key=lambda q: (q.backend_id, q.started_at, q.query_id)):
        elapsed_ms = int((now - q.started_at) * 1000)
        values: dict[str, str | int] = {
            "BE_ID": q.backend_id,
            "FE_HOST": q.fe_host,
            "QUERY_ID": q.query_id,
            "TASK_TIME_MS": elapsed_ms,
            "TASK_CPU_TIME_MS": elapsed_ms // 2,
            "SCAN_ROWS": 0,
            "SCAN_BYTES": 0,
            "BE_PEAK_MEMORY_BYTES": 0,
            "CURRENT_USED_MEMORY_BYTES": 0,
            "SHUFFLE_SEND_BYTES": 0,
            "SHUFFLE_SEND_ROWS": 0,
            "QUERY_TYPE": "SELECT",
        }
        rows.append(tuple(values[c] for c in BACKEND_ACTIVE_TASKS_COLUMNS))
    return Result(BACKEND_ACTIVE_TASKS_COLUMNS, tuple(rows))


# -- statements --------------------------------------------------------------------------------


def execute(cluster: SimCluster, sql: str, via: _Frontend | Session) -> Result | None:
    session = via if isinstance(via, Session) else Session(via)
    statements = _split_statements(sql)
    if not statements:
        raise SimSqlError(_EMPTY_QUERY, "Query was empty")
    result = None
    for parser in statements:
        cluster._tick()
        result = statement(cluster, parser, session)
    return result


def statement(cluster: SimCluster, p: _Parser, session: Session) -> Result | None:
    via = session.fe
    if p.accept("SHOW"):
        return show(cluster, p, session)
    if p.accept("ALTER", "SYSTEM"):
        run_on_master(cluster, alter_system(cluster, p), via)
        return None
    if p.accept("CANCEL"):
        p.accept("ALTER", "SYSTEM")  # the 2.0 docs' spelling
        p.expect("DECOMMISSION", "BACKEND")
        targets = [_parse_backend_target(t) for t in p.strings()]
        p.end()
        run_on_master(cluster, lambda: cluster._cancel_decommission(targets), via)
        return None
    if p.accept("ADMIN"):
        return admin(cluster, p, session)
    if p.accept("SELECT"):
        return select(cluster, p)
    if p.accept("SET"):
        set_variables(p, session)
        return None
    if p.accept("USE"):
        p.name()
        p.end()
        return None
    raise p.error()


def run_on_master(cluster: SimCluster, action: Callable[[], object], via: _Frontend) -> None:
    """Forwarded to the master (FORWARD_WITH_SYNC); without a live master the FE is not ready."""
    if via.name != cluster._master and not cluster._frontends[cluster._master].alive:
        raise SimSqlError(_UNKNOWN_ERROR, _NOT_READY)
    action()


def _answering(cluster: SimCluster, session: Session) -> tuple[_Frontend, _View]:
    """Which FE answers a SHOW, and from which catalog (NO_FORWARD unless forward_to_master)."""
    if session.forward_to_master and session.fe.name != cluster._master:
        master = cluster._frontends[cluster._master]
        if not master.alive:
            raise SimSqlError(_UNKNOWN_ERROR, _NOT_READY)
        return master, cluster._live_view()
    return session.fe, cluster._view_of(session.fe)


def show(cluster: SimCluster, p: _Parser, session: Session) -> Result:
    via = session.fe
    if p.accept("FRONTENDS"):
        p.end()
        _, view = _answering(cluster, session)
        return frontends_result(cluster, via, view)
    if p.accept("BACKENDS"):
        p.end()
        return _backends(cluster, session, order_by_host=False)
    if p.accept("BROKER"):
        p.end()
        return brokers_result(cluster, _answering(cluster, session)[1])
    if p.accept("FRONTEND", "CONFIG"):
        return _show_config(cluster, p, via)
    if p.accept("PROC"):
        path = p.string()
        p.end()
        normalized = "/" + path.strip("/")
        answering, view = _answering(cluster, session)
        if normalized == "/frontends":
            return frontends_result(cluster, via, view)
        if normalized == "/backends":
            return _backends(cluster, session, order_by_host=True)
        if normalized == "/brokers":
            return brokers_result(cluster, view)
        if normalized == "/cluster_health/tablet_health":
            return tablet_health_result(cluster, answering)
        if normalized == "/statistic":
            return statistic_result(cluster, answering)
        raise _ddl_error(f"Proc path '{path}' doesn't exist", code=_WRONG_PROC_PATH)
    raise p.error()


def _backends(cluster: SimCluster, session: Session, order_by_host: bool) -> Result:
    _, view = _answering(cluster, session)
    result = backends_result(cluster, order_by_host, view)
    return Result(result.columns, ()) if session.empty_backends else result


def _show_config(cluster: SimCluster, p: _Parser, via: _Frontend) -> Result:
    pattern = p.string() if p.accept("LIKE") else None
    p.end()
    return fe_config_result(cluster, via, pattern)


def admin(cluster: SimCluster, p: _Parser, session: Session) -> Result | None:
    via = session.fe
    if p.accept("SHOW", "FRONTEND", "CONFIG"):
        return _show_config(cluster, p, via)
    if p.accept("SET"):
        everywhere = p.accept("ALL", "FRONTENDS")
        if not everywhere:
            p.expect("FRONTEND")
        p.expect("CONFIG")
        settings = p.properties()
        p.end()
        for key, value in settings.items():
            spec = FE_CONFIGS.get(key)
            if spec is None or not spec.mutable:
                raise _ddl_error(f"Config '{key}' does not exist or is not mutable")
            if spec.type == "boolean" and value.strip().lower() not in ("true", "false"):
                raise _ddl_error(f"Failed to set config '{key}'. err: type mismatch")
            if spec.type == "long" and not value.strip().lstrip("-").isdigit():
                raise _ddl_error(f"Failed to set config '{key}'. err: For input string: \"{value}\"")
        for key, value in settings.items():
            value = value.strip().lower() if FE_CONFIGS[key].type == "boolean" else value.strip()
            if FE_CONFIGS[key].master_only:  # FORWARD_NO_SYNC: the master's running value
                master = cluster._frontends[cluster._master]
                run_on_master(cluster, functools.partial(master.config.__setitem__, key, value), via)
            elif everywhere:
                for fe in cluster._frontends.values():
                    if fe.alive or fe.name == via.name:
                        fe.config[key] = value
            else:
                via.config[key] = value
        return None
    raise p.error()


def set_variables(p: _Parser, session: Session) -> None:
    """SET [SESSION|GLOBAL] name = value[, ...]; only ``forward_to_master`` matters here, other
    variables (and SET NAMES/CHARSET) are accepted and ignored."""
    while True:
        token = p.next()
        if token.kind != "word":
            p.skip_rest()
            return
        name = token.text
        if name.upper() in ("SESSION", "GLOBAL", "LOCAL"):
            token = p.next()
            name = token.text
        name = re.sub(r"^@@((session|global|local)\.)?", "", name, flags=re.IGNORECASE).lower()
        if not p.accept("="):
            p.skip_rest()  # SET NAMES utf8mb4, SET CHARACTER SET ...
            return
        value = p.next()
        if name == "forward_to_master":
            session.forward_to_master = value.text.strip().lower() in ("true", "1", "on")
        if not p.accept(","):
            p.skip_rest()
            return


def alter_system(cluster: SimCluster, p: _Parser) -> Callable[[], object]:
    """Parse the rest of an ALTER SYSTEM statement into the action that runs it."""
    if p.accept("ADD", "BACKEND"):
        addresses = [_parse_host_port(a) for a in p.strings()]
        properties = p.properties() if p.accept("PROPERTIES") else {}
        p.end()
        return lambda: cluster._add_backends(addresses, properties)
    if p.accept("ADD", "BROKER"):
        name = p.name()
        addresses = [_parse_host_port(a) for a in p.strings()]
        p.end()
        return lambda: cluster._add_brokers(name, addresses)
    if p.accept("ADD"):
        role = p.one_of("FOLLOWER", "OBSERVER")
        address = _parse_host_port(p.string())
        p.end()
        return lambda: cluster._add_frontend(role, address)
    if p.accept("DROP", "BACKEND"):
        p.strings()
        p.end()
        return _raiser(_ddl_error(_DROP_BACKEND_REFUSED))
    if p.accept("DROP", "ALL", "BROKER"):
        name = p.name()
        p.end()
        return lambda: cluster._drop_brokers(name, None)
    if p.accept("DROP", "BROKER"):
        name = p.name()
        addresses = [_parse_host_port(a) for a in p.strings()]
        p.end()
        return lambda: cluster._drop_brokers(name, addresses)
    if p.accept("DROP"):
        role = p.one_of("FOLLOWER", "OBSERVER")
        address = _parse_host_port(p.string())
        p.end()
        return lambda: cluster._drop_frontend(role, address)
    if p.accept("DROPP", "BACKEND"):
        targets = [_parse_backend_target(t) for t in p.strings()]
        p.end()
        return lambda: cluster._dropp_backends(targets)
    if p.accept("DECOMMISSION", "BACKEND"):
        targets = [_parse_backend_target(t) for t in p.strings()]
        p.end()
        return lambda: cluster._decommission_backends(targets)
    if p.accept("MODIFY", "BACKEND"):
        targets = [_parse_backend_target(t) for t in p.strings()]
        p.expect("SET")
        properties = p.properties()
        p.end()
        return lambda: cluster._modify_backends(targets, properties)
    raise p.error()


def select(cluster: SimCluster, p: _Parser) -> Result:
    """SELECT of literals, ``@@variables`` and ``version()``; or columns, ``*`` or ``COUNT(*)`` FROM
    ``information_schema.backend_active_tasks`` [WHERE BE_ID = n]."""
    items: list[tuple[str, str]] = []  # (kind, text): number | variable | version | column | star | count
    while True:
        token = p.next()
        if token.kind == "number":
            items.append(("number", token.text))
        elif token.kind == "word" and token.text.startswith("@@"):
            items.append(("variable", token.text))
        elif token.kind == "word" and token.text.lower() == "version" and p.accept("("):
            p.expect(")")
            items.append(("version", "version()"))
        elif token.kind == "word" and token.text.lower() == "count" and p.accept("("):
            p.expect("*")
            p.expect(")")
            items.append(("count", "count(*)"))
        elif token.kind in ("word", "quoted"):
            items.append(("column", token.text))
        elif token.kind == "punct" and token.text == "*":
            items.append(("star", "*"))
        else:
            raise p.error(token)
        if not p.accept(","):
            break
    if p.accept("FROM"):
        return _select_from(cluster, p, items)
    columns: list[str] = []
    values: list[str | int] = []
    for kind, text in items:
        if kind == "number":
            columns.append(text)
            values.append(int(text))
        elif kind == "variable":
            name = re.sub(r"^@@(session|global|local)\.", "", text, flags=re.IGNORECASE).lower()
            name = name.removeprefix("@@")
            if name not in variables(cluster):
                raise SimSqlError(_UNKNOWN_SYSTEM_VARIABLE, f"Unknown system variable '{name}'")
            columns.append(text)
            values.append(variables(cluster)[name])
        elif kind == "version":
            columns.append(text)
            values.append("5.7.99")
        else:
            raise _ddl_error(f"Unknown column '{text}' in 'table list'")
    if p.accept("LIMIT"):
        p.expect_kind("number")
    p.end()
    return Result(tuple(columns), (tuple(values),))


def _select_from(cluster: SimCluster, p: _Parser, items: list[tuple[str, str]]) -> Result:
    table = p.name().lower()
    if table == "backend_active_tasks" or table == "information_schema.backend_active_tasks":
        source = backend_active_tasks_result(cluster)
    else:
        raise _ddl_error(
            f"Table [{table.rsplit('.', 1)[-1]}] does not exist in database [information_schema]."
        )
    known = {c.upper(): c for c in source.columns}
    rows = source.dicts()
    if p.accept("WHERE"):
        while True:
            column = p.name().upper()
            if column not in known:
                raise _ddl_error(f"Unknown column '{column}' in 'table list'")
            p.expect("=")
            literal = p.next()
            if literal.kind not in ("number", "string"):
                raise p.error(literal)
            rows = [r for r in rows if str(r[known[column]]) == literal.text]
            if not p.accept("AND"):
                break
    if p.accept("LIMIT"):
        rows = rows[: int(p.expect_kind("number").text)]
    p.end()
    if items == [("count", "count(*)")]:
        return Result(("count(*)",), ((len(rows),),))
    columns: list[str] = []
    for kind, text in items:
        if kind == "star":
            columns.extend(source.columns)
        elif kind == "column" and text.upper() in known:
            columns.append(known[text.upper()])
        else:
            raise _ddl_error(f"Unknown column '{text}' in 'table list'")
    return Result(tuple(columns), tuple(tuple(r[c] for c in columns) for r in rows))


def variables(cluster: SimCluster) -> dict[str, str | int]:
    return {
        "version": "5.7.99",
        "version_comment": f"Doris version {cluster.profile.build}",
        "autocommit": 1,
        "transaction_isolation": "REPEATABLE-READ",
        "tx_isolation": "REPEATABLE-READ",
        "forward_to_master": 0,
    }


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
     "SELECT", "LIMIT", "USE", "ADMIN", "CONFIG", "FRONTEND", "LIKE", "FROM", "WHERE", "AND"}
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
