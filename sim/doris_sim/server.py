"""The simulated FE over the MySQL protocol (mysql-mimic): Doris's handshake, its 1045 texts, one
server per FE identity, and the ``python -m doris_sim.fe`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Self

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

from .model import Result, SimCluster, SimSqlError

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
        prog="python -m doris_sim.fe", description="A simulated Doris FE over the MySQL protocol"
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
