"""Doris's own view of a cluster's members, read from whichever FE answers.

The readiness gate can't depend on the access Service: that Service routes only to Ready pods, and an FE
pod is Ready only once the operator has seen it alive, so on first start (or after every FE restarted)
nothing would answer through it.  The operator therefore tries each FE pod by its stable DNS name (the
headless ``-internal`` Service publishes not-ready addresses), in ordinal order, and uses the first that
answers: any FE, master or not, lists every member with Doris's view of it (SHOW FRONTENDS / BACKENDS /
BROKER need no master)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..access import fe_endpoint_at
from ..api.doriscluster import Component, DorisCluster
from ..builders import names
from ..doris.client import (
    AccessDeniedError,
    Backend,
    Broker,
    Credentials,
    DorisClient,
    DorisError,
    Frontend,
    Timeouts,
)
from .membership import FE_ADDRESS_ANNOTATION
from .observed import Obj

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeAccess:
    """How the operator reaches a cluster's FEs: their query port (fe.conf), whether the fe-address
    annotation is honoured (``run --allow-fe-address-annotation``; else it is ignored), and TLS
    (fe.conf ``enable_ssl``)."""

    query_port: int
    allow_annotation: bool = False
    tls: bool = False

    def connect(self, host: str, port: int, creds: Credentials, timeouts: Timeouts) -> DorisClient:
        return DorisClient.connect(host, port, creds, timeouts, tls=self.tls)


def fe_candidates(dc: DorisCluster, fe_access: FeAccess) -> list[tuple[str, int]]:
    """Where to ask: the address annotation (local runs, only when the operator allows it), else every
    FE pod of this resource, else the external FEs of feAddress.  A malformed annotation is a
    ValueError naming it."""
    query_port = fe_access.query_port
    if fe_access.allow_annotation and (dc.metadata.annotations or {}).get(FE_ADDRESS_ANNOTATION):
        endpoint = fe_endpoint_at(dc, query_port, allow_annotation=True)
        return [(endpoint.host, endpoint.port)]
    fe = dc.spec.fe_spec
    if fe is not None:
        count = max(fe.replicas if fe.replicas is not None else 1, 1)
        # no cluster domain: the pod's DNS search path resolves it in any domain (as access.py's Service)
        return [(_pod_name(dc, "fe", i), query_port) for i in range(count)]
    for _, spec in dc.components():
        endpoints = spec.fe_address.endpoints if spec.fe_address else None
        if endpoints is not None and endpoints.address:
            return [(a, endpoints.port or query_port) for a in endpoints.address]
    return []


@dataclass
class MemberView:
    """SHOW FRONTENDS / BACKENDS / BROKER from one FE; None when no FE answered (then nothing is known)."""

    frontends: list[Frontend] | None = None
    backends: list[Backend] | None = None
    brokers: list[Broker] | None = None
    source: str = ""
    error: str = ""
    hosts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.frontends is not None and self.backends is not None

    def row(self, comp: Component, hosts: list[str]) -> Frontend | Backend | Broker | None:
        rows: list[Frontend] | list[Backend] | list[Broker] | None
        if comp == "fe":
            rows = self.frontends
        elif comp == "broker":
            rows = self.brokers
        else:
            rows = self.backends
        for row in rows or []:
            if host_matches(row.host, hosts):
                return row
        return None


def _pod_name(dc: DorisCluster, comp: Component, ordinal: int) -> str:
    """``<pod>.<headless service>.<namespace>.svc``: the pod's FQDN without the cluster domain."""
    pod = f"{names.statefulset(dc.name, comp)}-{ordinal}"
    return f"{pod}.{names.internal_service(dc.name, comp)}.{dc.namespace}.svc"


def host_matches(host: str, hosts: list[str]) -> bool:
    """A registered host is one of ``hosts`` (:func:`pod_hosts`): the pod's FQDN in any cluster domain
    (``cluster.local``, ``corp.local``, none), or its IP."""
    h = host.lower().rstrip(".")
    return any(h == want or h.startswith(want + ".") for want in (w.lower() for w in hosts))


def pod_hosts(dc: DorisCluster, comp: Component, pod: Obj) -> list[str]:
    """The names a pod's member may be registered under (match with :func:`host_matches`): its FQDN
    without the cluster domain, else (FQDN mode off) its IP."""
    name = pod["metadata"]["name"]
    ordinal = name.rsplit("-", 1)[-1]
    hosts = [_pod_name(dc, comp, int(ordinal))] if ordinal.isdigit() else []
    if pod.get("podIP"):
        hosts.append(str(pod["podIP"]))
    return hosts


def member_alive(view: MemberView, dc: DorisCluster, comp: Component, pod: Obj) -> bool | None:
    """True/False as Doris says; None when unknown (no FE answered, or the member is not listed)."""
    if not view.known:
        return None
    row = view.row(comp, pod_hosts(dc, comp, pod))
    return None if row is None else bool(row.alive)


def _read(client: DorisClient, brokers: bool) -> tuple[list[Frontend], list[Backend], list[Broker] | None]:
    return client.show_frontends(), client.show_backends(), client.show_brokers() if brokers else None


async def read_members(
    dc: DorisCluster,
    fe_access: FeAccess,
    credentials: Callable[[], Awaitable[Credentials]],
    connect_timeout: float = 3.0,
    refused: Callable[[], None] | None = None,
) -> MemberView:
    """Ask the FEs in turn; the first that answers all three statements gives the view.  ``refused``:
    called once when an FE denies the login, before the credentials are read again (from the
    apiserver: :class:`~doris_operator.k8s.SecretCache`) and that FE is asked with them."""
    errors: list[str] = []
    creds: Credentials | None = None
    timeouts = Timeouts(connect=connect_timeout, read=15, write=15)
    for host, port in fe_candidates(dc, fe_access):
        try:
            creds = creds or await credentials()
            try:
                client = await asyncio.to_thread(fe_access.connect, host, port, creds, timeouts)
            except AccessDeniedError:
                if refused is None:
                    raise
                refused()
                refused, stale, creds = None, creds, await credentials()
                if creds == stale:
                    raise
                client = await asyncio.to_thread(fe_access.connect, host, port, creds, timeouts)
        except (DorisError, OSError) as err:
            errors.append(f"{host}:{port}: {err}")
            continue
        try:
            fes, bes, brokers = await asyncio.to_thread(_read, client, dc.spec.broker_spec is not None)
        except (DorisError, OSError) as err:
            errors.append(f"{host}:{port}: {err}")
            continue
        finally:
            await asyncio.to_thread(client.close)
        return MemberView(fes, bes, brokers, source=f"{host}:{port}")
    return MemberView(error="; ".join(errors) or "no FE address to ask")
