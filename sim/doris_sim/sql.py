"""Doris SQL against a :class:`~doris_sim.model.SimCluster`: a tokenizer and a small parser, the
statements Doris answers (with its columns and value formats), and its error texts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import accounts
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
    Result,
    SimCluster,
    SimSqlError,
    _Backend,
    _ddl_error,
    _Frontend,
    _parse_backend_target,
    _parse_host_port,
    _raiser,
)

__all__ = ["SimSqlError", "execute"]


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


# -- internals: rendering ------------------------------------------------------------------


def frontends_result(cluster: SimCluster, via: _Frontend) -> Result:
    now = cluster.clock.now()
    rows = []
    for fe in cluster._frontends.values():
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
            "IsMaster": _fmt_bool(fe.name == cluster._master),
            "ClusterId": str(cluster._cluster_id),
            "Join": _fmt_bool(shown),
            "Alive": _fmt_bool(alive),
            "ReplayedJournalId": str(cluster._journal_id if alive else fe.replayed_journal_id),
            "LastStartTime": _fmt_time(fe.started_at),
            "LastHeartbeat": _fmt_time(now if alive else fe.last_heartbeat),
            "IsHelper": _fmt_bool(fe.is_helper),
            "ErrMsg": "" if alive else fe.err_msg,
            "Version": cluster.profile.build if shown else "",
            "CurrentConnected": "Yes" if me else "No",
        }
        rows.append(tuple(values[c] for c in cluster.profile.frontend_columns))
    return Result(cluster.profile.frontend_columns, tuple(rows))


def backends_result(cluster: SimCluster, order_by_host: bool) -> Result:
    now = cluster.clock.now()
    key: Callable[[_Backend], Any] = (lambda b: b.host) if order_by_host else (lambda b: b.backend_id)
    rows = []
    for be in sorted(cluster._backends.values(), key=key):
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
        rows.append(tuple(values[c] for c in cluster.profile.backend_columns))
    return Result(cluster.profile.backend_columns, tuple(rows))


def brokers_result(cluster: SimCluster) -> Result:
    now = cluster.clock.now()
    rows = []
    for broker in sorted(cluster._brokers, key=lambda b: (b.name, b.host, b.port)):
        values = {
            "Name": broker.name,
            "Host": broker.host,
            "Port": str(broker.port),
            "Alive": _fmt_bool(broker.alive),
            "LastStartTime": _fmt_time(broker.started_at),
            "LastUpdateTime": _fmt_time(now if broker.alive else broker.last_update),
            "ErrMsg": broker.err_msg,
        }
        rows.append(tuple(values[c] for c in cluster.profile.broker_columns))
    return Result(cluster.profile.broker_columns, tuple(rows))


# -- internals: SQL ------------------------------------------------------------------------


def execute(
    cluster: SimCluster, sql: str, via: _Frontend, user: str | None = None, database: str | None = None
) -> Result | None:
    statements = _split_statements(sql)
    if not statements:
        raise SimSqlError(_EMPTY_QUERY, "Query was empty")
    result = None
    for parser in statements:
        cluster._tick()
        result = statement(cluster, parser, via, user, database)
    return result


def statement(
    cluster: SimCluster, p: _Parser, via: _Frontend, user: str | None = None, database: str | None = None
) -> Result | None:
    if accounts.handles(p):
        accounts.statement(cluster.accounts, p, user, database)
        return None
    if p.accept("SHOW"):
        return show(cluster, p, via)
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
    if p.accept("SELECT"):
        return select(cluster, p)
    if p.accept("SET"):
        p.skip_rest()
        return None
    if p.accept("USE"):
        name = p.name()
        p.end()
        if name not in cluster.accounts.databases:
            raise _ddl_error(f"Unknown database '{name}'", code=accounts.ERR_BAD_DB_ERROR)
        return None
    raise p.error()


def run_on_master(cluster: SimCluster, action: Callable[[], object], via: _Frontend) -> None:
    """ALTER SYSTEM is forwarded to the master; without a live master the FE is not ready."""
    if via.name != cluster._master and not cluster._frontends[cluster._master].alive:
        raise SimSqlError(_UNKNOWN_ERROR, _NOT_READY)
    action()


def show(cluster: SimCluster, p: _Parser, via: _Frontend) -> Result:
    if p.accept("FRONTENDS"):
        p.end()
        return frontends_result(cluster, via)
    if p.accept("BACKENDS"):
        p.end()
        return backends_result(cluster, order_by_host=False)
    if p.accept("BROKER"):
        p.end()
        return brokers_result(cluster)
    if p.accept("PROC"):
        path = p.string()
        p.end()
        normalized = "/" + path.strip("/")
        if normalized == "/frontends":
            return frontends_result(cluster, via)
        if normalized == "/backends":
            return backends_result(cluster, order_by_host=True)
        if normalized == "/brokers":
            return brokers_result(cluster)
        raise _ddl_error(f"Proc path '{path}' doesn't exist", code=_WRONG_PROC_PATH)
    raise p.error()


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
    columns: list[str] = []
    values: list[str | int] = []
    while True:
        token = p.next()
        if token.kind == "number":
            columns.append(token.text)
            values.append(int(token.text))
        elif token.kind == "word" and token.text.startswith("@@"):
            name = re.sub(r"^(session|global|local)\.", "", token.text[2:], flags=re.IGNORECASE).lower()
            if name not in variables(cluster):
                raise SimSqlError(_UNKNOWN_SYSTEM_VARIABLE, f"Unknown system variable '{name}'")
            columns.append(token.text)
            values.append(variables(cluster)[name])
        else:
            raise p.error(token)
        if not p.accept(","):
            break
    if p.accept("LIMIT"):
        p.expect_kind("number")
    p.end()
    return Result(tuple(columns), (tuple(values),))


def variables(cluster: SimCluster) -> dict[str, str | int]:
    return {
        "version": "5.7.99",
        "version_comment": f"Doris version {cluster.profile.build}",
        "autocommit": 1,
        "transaction_isolation": "REPEATABLE-READ",
        "tx_isolation": "REPEATABLE-READ",
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
    | (?P<punct>[(),=;*@.+\-<>!%/:])
    """,
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS = frozenset(
    {"SHOW", "ALTER", "SYSTEM", "ADD", "DROP", "DROPP", "DECOMMISSION", "CANCEL", "MODIFY", "BACKEND",
     "BACKENDS", "FRONTENDS", "FOLLOWER", "OBSERVER", "BROKER", "ALL", "PROC", "SET", "PROPERTIES",
     "SELECT", "LIMIT", "USE", "CREATE", "USER", "ROLE", "GRANT", "PASSWORD", "IDENTIFIED", "BY", "ON",
     "TO", "DATABASE", "TABLE", "IF", "NOT", "EXISTS", "FOR", "DEFAULT"}
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
