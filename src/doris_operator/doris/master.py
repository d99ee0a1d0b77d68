"""The master FE's view.  Decisions (what is registered, how healthy the tablets are) are read from the
master: a non-master FE answers SHOW FRONTENDS / BACKENDS / PROC from its own, possibly stale, replica of
the metadata, and Doris keeps tablet health only on the master.

A session sets ``forward_to_master = true`` (SHOW statements are then forwarded to the master, Doris's
``FORWARD_NO_SYNC``), reads SHOW FRONTENDS and requires exactly one ``IsMaster`` row that is alive.  An
FE that neither is the master nor forwards is left for a direct connection to the master's Host and
QueryPort.  Anything else is :class:`MasterUnknownError`: no decision is made on that answer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .client import (
    Credentials,
    DorisClient,
    DorisError,
    ErrorKind,
    Frontend,
    Timeouts,
    UnreachableError,
)

log = logging.getLogger(__name__)
Connect = Callable[[str, int, Credentials, Timeouts | None], DorisClient]


class MasterUnknownError(DorisError):
    """SHOW FRONTENDS named no alive master, or the master's view could not be reached."""

    kind = ErrorKind.NOT_MASTER

    def __init__(self, detail: str) -> None:
        super().__init__(0, detail)


@dataclass(frozen=True)
class MasterView:
    frontends: tuple[Frontend, ...]
    master: Frontend
    connected: Frontend | None
    """The FE this session is connected to (CurrentConnected=Yes), if the answer says."""
    forwarded: bool
    """The session's SHOW statements are forwarded to the master (the connected FE is not it)."""

    @property
    def on_master(self) -> bool:
        return bool(self.master.current_connected)


def check_master(frontends: Sequence[Frontend], where: str) -> Frontend:
    """The one alive master row of SHOW FRONTENDS, else :class:`MasterUnknownError` saying why."""
    if not frontends:
        raise MasterUnknownError(f"SHOW FRONTENDS on {where} returned no frontend")
    masters = [f for f in frontends if f.is_master]
    if not masters:
        raise MasterUnknownError(f"SHOW FRONTENDS on {where} lists no master (IsMaster=true)")
    if len(masters) > 1:
        hosts = ", ".join(m.host for m in masters)
        raise MasterUnknownError(f"SHOW FRONTENDS on {where} lists {len(masters)} masters: {hosts}")
    if not masters[0].alive:
        raise MasterUnknownError(f"SHOW FRONTENDS on {where}: the master {masters[0].host} is not alive")
    return masters[0]


def open_master_view(
    client: DorisClient, connect: Connect = DorisClient.connect
) -> tuple[DorisClient, MasterView]:
    """A client whose SHOW statements the master answers, and the master's SHOW FRONTENDS.

    Returns ``client`` itself when it is on the master or forwards to it; otherwise a new client on
    the master (``client`` is then closed).  Raises :class:`MasterUnknownError` or transport errors."""
    where = f"{client.host}:{client.port}"
    forwarded = True
    try:
        client.set_forward_to_master()
    except UnreachableError:
        raise
    except DorisError as err:
        log.info("FE %s does not take forward_to_master (%s)", where, err.detail)
        forwarded = False
    frontends = client.show_frontends()
    master = check_master(frontends, where)
    connected = next((f for f in frontends if f.current_connected), None)
    if master.current_connected or forwarded:
        view = MasterView(tuple(frontends), master, connected, forwarded and not master.current_connected)
        return client, view
    port = master.query_port if master.query_port and master.query_port > 0 else client.port
    try:
        direct = connect(master.host, port, client.credentials, client.timeouts)
    except DorisError as err:
        raise MasterUnknownError(
            f"the FE at {where} is not the master and does not forward to it; the master "
            f"{master.host}:{port} can't be reached: {err.detail}"
        ) from err
    try:
        frontends = direct.show_frontends()
        master = check_master(frontends, f"{master.host}:{port}")
        if not master.current_connected:
            raise MasterUnknownError(f"{master.host}:{port} does not answer as the master")
    except BaseException:
        direct.close()
        raise
    client.close()
    me = next((f for f in frontends if f.current_connected), None)
    return direct, MasterView(tuple(frontends), master, me, False)
