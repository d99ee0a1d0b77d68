"""One reconcile's FE session reads SHOW FRONTENDS and SHOW BACKENDS once each, for the membership
step, the rolling update and fault recovery in turn, and again after any statement it runs."""

from __future__ import annotations

from typing import Any

from doris_operator.doris.client import Backend, Credentials, Frontend, Timeouts
from doris_operator.reconcile.membership import FeSession


class Client:
    """A master FE's session: every statement journaled."""

    def __init__(self, journal: list[str], cluster: dict[str, int]) -> None:
        self.host, self.port, self.credentials, self.timeouts = "fe", 9030, Credentials(), Timeouts()
        self.journal, self.cluster = journal, cluster

    def set_forward_to_master(self) -> None:
        self.journal.append("SET forward_to_master")

    def show_frontends(self) -> list[Frontend]:
        self.journal.append("SHOW FRONTENDS")
        return [Frontend("fe_0", "fe-0", 9010, "FOLLOWER", True, True, current_connected=True)]

    def show_backends(self) -> list[Backend]:
        self.journal.append("SHOW BACKENDS")
        return [
            Backend(
                backend_id=i,
                host=f"be-{i}",
                heartbeat_port=9050,
                alive=True,
                system_decommissioned=False,
                tablet_num=0,
            )
            for i in range(self.cluster["bes"])
        ]

    def decommission(self) -> None:
        self.journal.append("ALTER SYSTEM DECOMMISSION BACKEND")
        self.cluster["bes"] -= 1

    def close(self) -> None:
        self.journal.append("close")


async def test_the_shows_are_read_once_until_a_statement_runs() -> None:
    journal: list[str] = []
    cluster = {"bes": 3}

    def connect(host: str, port: int, creds: Credentials, timeouts: Any = None) -> Client:
        journal.append("login")
        return Client(journal, cluster)

    async def creds() -> Credentials:
        return Credentials()

    session = FeSession("fe", 9030, creds, connect=connect)
    assert len(await session.backends()) == 3
    assert [f.name for f in await session.frontends()] == ["fe_0"]
    assert len(await session.backends()) == 3
    assert journal == ["login", "SET forward_to_master", "SHOW FRONTENDS", "SHOW BACKENDS"]

    await session.call(lambda c: c.decommission())
    assert len(await session.backends()) == 2  # read again after the statement
    await session.frontends()
    assert journal[4:] == ["ALTER SYSTEM DECOMMISSION BACKEND", "SHOW BACKENDS", "SHOW FRONTENDS"]

    await session.close()
    assert len(await session.backends()) == 2  # a new session reads for itself
    assert journal[7:] == ["close", "login", "SET forward_to_master", "SHOW FRONTENDS", "SHOW BACKENDS"]
