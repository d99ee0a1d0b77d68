"""The Doris side of scaling in: before a StatefulSet shrinks, its leaving BEs are decommissioned until
the master FE confirms them empty or gone, and its leaving FE observers are dropped.  Doris (the
master's SHOW BACKENDS / FRONTENDS) and the ``members`` annotation on the StatefulSet are the record
of progress, so a restarted operator carries on where it was.  BEs and CNs are decided before FEs, so
lowering FE and BE together never drops the FE that answers the BE questions first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..access import FE_ADDRESS_ANNOTATION as FE_ADDRESS_ANNOTATION  # the FE endpoint and credentials
from ..access import credentials as credentials  # live in ..access, shared with kubectl doris
from ..access import fe_endpoint as fe_endpoint
from ..api.doriscluster import BaseSpec, Component, DorisCluster, FeSpec
from ..builders import names
from ..builders.pod import election_number
from ..doris import membership
from ..doris.client import (
    AccessDeniedError,
    Backend,
    Credentials,
    DorisClient,
    DorisError,
    Frontend,
    Timeouts,
    UnreachableError,
)
from ..doris.identity import Members, PodRef, dump_members, parse_members, remember
from ..doris.master import MasterUnknownError, MasterView, open_master_view
from .intent import MEMBERS, Annotate, annotations_of
from .observed import Obj
from .status import Findings

log = logging.getLogger(__name__)
T = TypeVar("T")
Record = Callable[[str, str, str], Awaitable[None]]
MEMBERSHIP_ORDER: tuple[Component, ...] = ("be", "cn", "fe")


class FeSession:
    """One MySQL session for one reconcile, opened on first use, whose answers are the master FE's:
    ``forward_to_master`` on, and an alive IsMaster row verified (else :class:`MasterUnknownError`).
    The client is blocking: its calls run in a thread."""

    def __init__(
        self,
        host: str,
        port: int,
        credentials: Callable[[], Awaitable[Credentials]],
        tls: bool = False,
        *,
        connect: Callable[[str, int, Credentials, Timeouts | None], DorisClient] = DorisClient.connect,
        problem: str | None = None,
        refused: Callable[[], None] | None = None,
    ) -> None:
        """``refused``: called when the FE denies the login, before the credentials are read once more
        (they came from a cache: :class:`~doris_operator.k8s.SecretCache`); a login with other
        credentials is then tried once."""
        self.host, self.port, self._credentials, self.tls = host, port, credentials, tls
        self._refused = refused
        if tls:  # every connection of the session, the master's too, over TLS (fe.conf enable_ssl)
            plain = connect

            def connect(h: str, p: int, c: Credentials, t: Timeouts | None = None) -> DorisClient:
                return plain(h, p, c, t, tls=True)  # type: ignore[call-arg]

        self._connect = connect
        self._problem = problem
        self._client: DorisClient | None = None
        self._view: MasterView | None = None
        self._backends: list[Backend] | None = None
        self._view_current = False
        """No statement has run since the view's SHOW FRONTENDS (its frontends are the last word)."""

    @classmethod
    def unusable(cls, problem: str) -> FeSession:
        """A session whose every call fails with ``problem`` (e.g. a malformed FE address)."""

        async def none() -> Credentials:
            return Credentials()

        return cls("", 0, none, problem=problem)

    async def _open(self) -> tuple[DorisClient, MasterView]:
        if self._problem is not None:
            raise UnreachableError(0, self._problem)
        if self._client is None or self._view is None:
            client = await self._login()
            try:
                opened, view = await asyncio.to_thread(open_master_view, client, self._connect)
            except BaseException:
                await asyncio.to_thread(client.close)
                raise
            self._client, self._view = opened, view
            self._backends, self._view_current = None, True
            return opened, view
        return self._client, self._view

    async def _login(self) -> DorisClient:
        timeouts = Timeouts(connect=5, read=30, write=30)
        creds = await self._credentials()
        try:
            return await asyncio.to_thread(self._connect, self.host, self.port, creds, timeouts)
        except AccessDeniedError:
            if self._refused is None:
                raise
            self._refused()
            again = await self._credentials()
            if again == creds:
                raise
            return await asyncio.to_thread(self._connect, self.host, self.port, again, timeouts)

    async def view(self) -> MasterView:
        """The master's SHOW FRONTENDS, read when the session opened."""
        return (await self._open())[1]

    async def call(self, fn: Callable[[DorisClient], T]) -> T:
        """Any statement: what :meth:`backends` and :meth:`frontends` read is read again after it."""
        self._backends, self._view_current = None, False
        return await self._run(fn)

    async def _run(self, fn: Callable[[DorisClient], T]) -> T:
        client, _ = await self._open()
        return await asyncio.to_thread(fn, client)

    async def backends(self) -> list[Backend]:
        """The master's SHOW BACKENDS, read once until a statement runs through :meth:`call` (the
        membership step, the rolling update and fault recovery of one reconcile ask in turn)."""
        if self._backends is None:
            self._backends = await self._run(lambda c: c.show_backends())
        return list(self._backends)

    async def frontends(self) -> list[Frontend]:
        """The master's SHOW FRONTENDS: the view's, until a statement runs through :meth:`call`."""
        _, view = await self._open()
        if self._view_current:
            return list(view.frontends)
        return await self._run(lambda c: c.show_frontends())

    @property
    def opened(self) -> bool:
        """Logged in, and the master's view read, in this reconcile."""
        return self._client is not None and self._view is not None

    async def close(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
        self._client, self._view = None, None
        self._backends, self._view_current = None, False


def pod_refs(dc: DorisCluster, comp: Component, count: int, pods: list[Obj]) -> list[PodRef]:
    """Ordinals ``0 .. count-1`` of the component's StatefulSet as Kubernetes sees them now."""
    by_name = {p["metadata"]["name"]: p for p in pods}
    sts = names.statefulset(dc.name, comp)
    out = []
    for ordinal in range(count):
        name = f"{sts}-{ordinal}"
        pod = by_name.get(name)
        out.append(
            PodRef(
                ordinal=ordinal,
                name=name,
                service=names.internal_service(dc.name, comp),
                namespace=dc.namespace,
                ip=str(pod["podIP"]) if pod is not None and pod.get("podIP") else None,
                exists=pod is not None,
                ready=bool(pod and pod.get("ready")),
                unschedulable=bool(pod and pod.get("unschedulable")),
            )
        )
    return out


def members_of(live: Obj | None) -> Members:
    return parse_members(annotations_of(live).get(MEMBERS))


async def save_members(
    annotate: Annotate | None, sts: Obj, old: Members, new: Members, findings: Findings, comp: str
) -> bool:
    """Write the records when they changed; False (and Degraded) when that failed."""
    if annotate is None or new == old:
        return True
    try:
        await annotate("StatefulSet", sts["metadata"]["name"], {MEMBERS: dump_members(new) if new else None})
    except Exception as err:
        findings.degrade(comp, "IntentNotRecorded", f"can't record the members on the StatefulSet: {err}")
        return False
    sts["metadata"].setdefault("annotations", {})[MEMBERS] = dump_members(new)
    return True


def _degrade_error(findings: Findings, comp: str, session: FeSession, err: Exception) -> None:
    if isinstance(err, MasterUnknownError):
        findings.degrade(comp, "MasterUnknown", f"not deciding on the FE's answer: {err.detail}")
    elif isinstance(err, (DorisError, OSError)):
        findings.degrade(comp, "FEUnreachable", f"can't ask the FE at {session.host}:{session.port}: {err}")
    else:
        log.exception("membership of %s", comp)
        findings.degrade(comp, "MembershipError", f"{type(err).__name__}: {err}")


async def reconcile_membership(
    dc: DorisCluster,
    desired: list[Obj],
    observed: dict[tuple[str, str], Obj],
    pods: list[Obj],
    old_status: Obj,
    session: FeSession,
    findings: Findings,
    record: Record,
    annotate: Annotate | None = None,
) -> None:
    """Set each desired StatefulSet's replicas to what is safe now, sending the statements that move
    toward the spec.  Doris is asked only when a StatefulSet shrinks or something drains; the pod IPs
    are recorded every time (no Doris call), so an IP-registered BE is still known when its pod is down."""
    specs = dict(dc.components())
    for comp in MEMBERSHIP_ORDER:
        spec = specs.get(comp)
        if spec is None:
            continue
        sts_name = names.statefulset(dc.name, comp)
        live = observed.get(("StatefulSet", sts_name))
        obj = next(
            (o for o in desired if o["kind"] == "StatefulSet" and o["metadata"]["name"] == sts_name), None
        )
        if live is None or obj is None:
            continue
        if obj["spec"].get("replicas") is None:
            continue  # a HorizontalPodAutoscaler sets them (cnSpec.autoScalingPolicy)
        current = int(live["spec"].get("replicas") or 0)
        want = int(obj["spec"]["replicas"])
        members = members_of(live)
        try:
            refs = pod_refs(dc, comp, current, pods)
            seen = {o: m for o, m in remember(members, refs, {}).items() if o < max(current, want)}
            if await save_members(annotate, live, members, seen, findings, comp):
                members = seen
        except Exception as err:
            _degrade_error(findings, comp, session, err)
        draining = (old_status.get(f"{comp}Status") or {}).get("decommissioning")
        leaving = any(m.leaving for m in members.values())
        if want >= current and not draining and not leaving:
            continue
        try:
            obj["spec"]["replicas"] = await _component(
                dc, comp, spec, want, current, pods, members, live, session, findings, record, annotate
            )
        except Exception as err:
            obj["spec"]["replicas"] = max(want, current)  # never shrink blind
            _degrade_error(findings, comp, session, err)


async def _component(
    dc: DorisCluster,
    comp: Component,
    spec: BaseSpec,
    want: int,
    current: int,
    pods: list[Obj],
    members: Members,
    live: Obj,
    session: FeSession,
    findings: Findings,
    record: Record,
    annotate: Annotate | None,
) -> int:
    refs = pod_refs(dc, comp, max(want, current), pods)
    view = await session.view()
    if isinstance(spec, FeSpec):
        fe_plan = membership.plan_frontends(
            want, current, election_number(spec), refs, list(view.frontends), members
        )
        if fe_plan.refused:
            findings.degrade(comp, "ScaleInRefused", fe_plan.refused)
        if fe_plan.unknown:
            findings.degrade(comp, "MembershipUnknown", "; ".join(fe_plan.unknown))
        if not await save_members(annotate, live, members, fe_plan.members, findings, comp):
            return current
        for host, port in fe_plan.drop_observers:
            await session.call(lambda c, h=host, p=port: c.drop_observer(h, p))  # type: ignore[misc]
            await record("Normal", "ObserverDropped", f"dropped FE observer {host}:{port} before scaling in")
            if view.connected is not None and (view.connected.host, view.connected.edit_log_port) == (
                host,
                port,
            ):
                await session.close()  # that FE is gone: the next call opens a new session
        if fe_plan.drop_observers:
            findings.waiting[comp] = ("DroppingObservers", f"dropped {len(fe_plan.drop_observers)} observers")
            findings.polling[comp] = "DroppingObservers"
        return fe_plan.replicas
    backends = await session.backends()
    plan = membership.plan_backends(want, current, refs, backends, members)
    if plan.registration:
        log.debug("%s/%s %s registered by %s", dc.namespace, dc.name, comp, plan.registration)
    if plan.refused:
        findings.degrade(comp, "ScaleInRefused", plan.refused)
        return plan.replicas
    if plan.unknown:
        findings.degrade(comp, "MembershipUnknown", "; ".join(plan.unknown))
    if not await save_members(annotate, live, members, plan.members, findings, comp):
        return current  # no statement without its record
    if plan.cancel:
        await session.call(lambda c: c.cancel_decommission_backends(plan.cancel))
        await record("Normal", "DecommissionCanceled", f"{comp.upper()} kept: {_nodes(plan.cancel)}")
    if plan.decommission:
        await session.call(lambda c: c.decommission_backends(plan.decommission))
        await record("Normal", "Decommissioning", f"moving the tablets off {_nodes(plan.decommission)}")
    if plan.dropp:
        await session.call(lambda c: c.dropp_backends(plan.dropp))
        await record("Normal", "Dropped", f"dropped decommissioned, empty {_nodes(plan.dropp)}")
    if plan.draining:
        left = ", ".join(f"{pod}: {n} tablets" for pod, n in sorted(plan.draining.items()))
        findings.waiting[comp] = ("Decommissioning", f"moving tablets off {left}")
        findings.draining[comp] = dict(plan.draining)
    if plan.replicas < current:
        await record(
            "Normal",
            "ScaledIn",
            f"{comp.upper()} {current} -> {plan.replicas}: the master FE confirms the leaving BEs "
            "hold no data",
        )
    return plan.replicas


def _nodes(nodes: list[tuple[str, int]]) -> str:
    return ", ".join(f"{h}:{p}" for h, p in nodes)
