"""Secrets are read by name and reused for a while (SecretCache), so an idle operator with
DorisClusterAutoscalers does not GET the authSecret at every FE login; a login the FE denies forgets the
read, and the session logs in once more with what the apiserver holds now (a rotated password works at
once)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta, Status
from lightkube.resources.core_v1 import Secret

from doris_operator.api.validation import parse_cluster
from doris_operator.doris.client import AccessDeniedError, Backend, Credentials, Frontend, Timeouts
from doris_operator.k8s import LOGIN_SECRET_TTL, SECRET_TTL, Kube, SecretCache
from doris_operator.reconcile.members import FeAccess, read_members
from doris_operator.reconcile.membership import FeSession

NS = "ns"


class FakeClient:
    """lightkube's AsyncClient.get for Secrets: what the apiserver holds, and every GET counted."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, str]] = {}
        self.gets = 0

    async def get(self, resource: Any, name: str, namespace: str) -> Any:
        assert resource is Secret and namespace == NS
        self.gets += 1
        if name not in self.stored:
            raise ApiError(status=Status(code=404, message=f'secrets "{name}" not found'))
        return Secret(
            metadata=ObjectMeta(name=name, resourceVersion=str(self.gets)), data=dict(self.stored[name])
        )


def kube_with(client: FakeClient, now: list[float]) -> Kube:
    kube = Kube(client)  # type: ignore[arg-type]
    kube.secrets = SecretCache(clock=lambda: now[0])
    return kube


async def test_a_secret_is_read_once_per_ttl_and_a_missing_one_every_time() -> None:
    client, now = FakeClient(), [0.0]
    kube = kube_with(client, now)
    assert await kube.secret_data("auth", NS) is None
    assert await kube.secret_data("auth", NS) is None
    assert client.gets == 2  # not found is not kept: a Secret made later is seen at once
    client.stored["auth"] = {"password": "b2xk"}
    assert await kube.secret_data("auth", NS) == {"password": "b2xk"}
    got = await kube.secret("auth", NS)
    assert got is not None and got["data"] == {"password": "b2xk"} and got["metadata"]["resourceVersion"]
    got["data"]["password"] = "changed by a caller"  # a copy: the cache is not changed through it
    assert client.gets == 3
    client.stored["auth"] = {"password": "bmV3"}
    now[0] = SECRET_TTL - 1
    assert await kube.secret_data("auth", NS) == {"password": "b2xk"}  # reused
    got = await kube.secret("auth", NS)
    assert got is not None and got["data"] == {"password": "b2xk"}
    now[0] = SECRET_TTL + 0.5
    # a login's read is kept until refused (at most LOGIN_SECRET_TTL); other reads SECRET_TTL
    assert await kube.secret_data("auth", NS) == {"password": "b2xk"} and client.gets == 3
    got = await kube.secret("auth", NS)
    assert got is not None and got["data"] == {"password": "bmV3"}  # read again after the TTL
    assert client.gets == 4
    client.stored["auth"] = {"password": "dGhpcmQ="}
    now[0] += LOGIN_SECRET_TTL - 1
    assert await kube.secret_data("auth", NS) == {"password": "bmV3"}
    now[0] += 1
    assert await kube.secret_data("auth", NS) == {"password": "dGhpcmQ="} and client.gets == 5
    kube.secret_refused("auth", NS)
    assert await kube.secret_data("auth", NS) == {"password": "dGhpcmQ="} and client.gets == 6
    assert await kube.secret_exists("auth", NS) and client.gets == 6  # a reconcile's check: the same read
    assert not await kube.secret_exists("other", NS) and client.gets == 7


def test_the_cache_is_bounded() -> None:
    cache = SecretCache(size=2, clock=lambda: 0.0)
    for name in ("a", "b", "c"):
        cache.put(NS, name, {"metadata": {}, "data": {}})
    assert [cache.get(NS, n) is not None for n in ("a", "b", "c")] == [False, True, True]


class FakeFe:
    def __init__(self, creds: Credentials) -> None:
        self.host, self.port, self.credentials, self.timeouts = "fe", 9030, creds, Timeouts()

    def set_forward_to_master(self) -> None:
        pass

    def show_frontends(self) -> list[Frontend]:
        return [Frontend("fe_0", "fe", 9010, "FOLLOWER", True, True, current_connected=True)]

    def show_backends(self) -> list[Backend]:
        return []

    def close(self) -> None:
        pass


class Fe:
    """An FE whose root password is ``password``: every login is journaled."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.logins: list[str] = []

    def connect(self, host: str, port: int, creds: Credentials, timeouts: Any = None) -> FakeFe:
        self.logins.append(creds.password)
        if creds.password != self.password:
            raise AccessDeniedError(1045, f"Access denied for user '{creds.user}'")
        return FakeFe(creds)


@pytest.mark.parametrize("rotated", [True, False])
async def test_a_denied_login_reads_the_secret_again_and_retries_only_with_other_credentials(
    rotated: bool,
) -> None:
    client, now = FakeClient(), [0.0]
    kube = kube_with(client, now)
    client.stored["auth"] = {
        "username": base64.b64encode(b"root").decode(),
        "password": base64.b64encode(b"old").decode(),
    }

    async def creds() -> Credentials:
        data = await kube.secret_data("auth", NS)
        assert data is not None
        return Credentials(
            base64.b64decode(data["username"]).decode(), base64.b64decode(data["password"]).decode()
        )

    fe = Fe("old")
    session = FeSession(
        "fe", 9030, creds, connect=fe.connect, refused=lambda: kube.secret_refused("auth", NS)
    )
    await session.view()
    await session.close()
    assert fe.logins == ["old"] and client.gets == 1
    # the password is rotated in Doris, and (or not) in the Secret, which the cache still holds
    fe.password = "new"
    if rotated:
        client.stored["auth"]["password"] = base64.b64encode(b"new").decode()
    session = FeSession(
        "fe", 9030, creds, connect=fe.connect, refused=lambda: kube.secret_refused("auth", NS)
    )
    if rotated:
        await session.view()
        assert fe.logins == ["old", "old", "new"]
    else:
        with pytest.raises(AccessDeniedError):
            await session.view()
        assert fe.logins == ["old", "old"]  # the same credentials are not tried twice
    assert client.gets == 2
    await session.close()


@dataclass(frozen=True)
class Access(FeAccess):
    fe: Fe | None = None

    def connect(self, host: str, port: int, creds: Credentials, timeouts: Timeouts) -> Any:
        assert self.fe is not None
        return self.fe.connect(host, port, creds, timeouts)


async def test_the_members_view_after_a_rotation_logs_in_with_the_secret_read_again() -> None:
    """Fault recovery's and the eviction webhook's view of the members (read_members)."""
    client, now = FakeClient(), [0.0]
    kube = kube_with(client, now)
    client.stored["auth"] = {"password": base64.b64encode(b"old").decode()}
    dc = parse_cluster(
        {
            "apiVersion": "doris.selectdb.com/v1",
            "kind": "DorisCluster",
            "metadata": {"name": "dc", "namespace": NS},
            "spec": {
                "authSecret": "auth",
                "feSpec": {"replicas": 1, "image": "selectdb/doris.fe-ubuntu:2.1.8"},
            },
        }
    )

    async def creds() -> Credentials:
        data = await kube.secret_data("auth", NS)
        assert data is not None
        return Credentials("root", base64.b64decode(data["password"]).decode())

    fe = Fe("old")
    access = Access(9030, fe=fe)
    assert (await read_members(dc, access, creds)).known
    fe.password = "new"
    client.stored["auth"] = {"password": base64.b64encode(b"new").decode()}
    view = await read_members(dc, access, creds)
    assert not view.known and "Access denied" in (view.error or "")  # no hook: the cached password
    view = await read_members(dc, access, creds, refused=lambda: kube.secret_refused("auth", NS))
    assert view.known and fe.logins == ["old", "old", "old", "new"] and client.gets == 2
