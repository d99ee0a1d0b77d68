"""The Doris side of scaling in: before a StatefulSet shrinks, its leaving BEs are decommissioned until
they hold no tablet, and its leaving FE observers are dropped.  Doris (SHOW BACKENDS / FRONTENDS) is the
record of progress, so a restarted operator carries on where it was."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..api.doriscluster import BaseSpec, Component, DorisCluster, FeSpec
from ..builders import names
from ..builders.config import ComponentConfig
from ..builders.pod import election_number
from ..doris import membership
from ..doris.client import Credentials, DorisClient, DorisError, Timeouts, resolve_credentials
from .observed import Obj
from .status import Findings

log = logging.getLogger(__name__)
FE_ADDRESS_ANNOTATION = "doris.apache.org/fe-address"
"""``host:port`` of an FE's MySQL port, for an operator that can't resolve cluster DNS (local runs); honoured
only with ``run --allow-fe-address-annotation``."""
T = TypeVar("T")


def fe_endpoint(
    dc: DorisCluster, fe_config: ComponentConfig, allow_annotation: bool = False
) -> tuple[str, int]:
    override = (dc.metadata.annotations or {}).get(FE_ADDRESS_ANNOTATION) if allow_annotation else None
    if override:
        host, _, port = override.rpartition(":")
        return host, int(port)
    for _, spec in dc.components():
        endpoints = spec.fe_address.endpoints if spec.fe_address else None
        if dc.spec.fe_spec is None and endpoints is not None and endpoints.address:
            return endpoints.address[0], endpoints.port or fe_config.port("query_port")
    service = f"{names.access_service(dc.name, 'fe')}.{dc.namespace}.svc.cluster.local"
    return service, fe_config.port("query_port")


class FeSession:
    """One MySQL connection to an FE for one reconcile, opened on first use (the client is blocking:
    its calls run in a thread)."""

    def __init__(
        self, host: str, port: int, credentials: Callable[[], Awaitable[Credentials]], tls: bool = False
    ) -> None:
        self.host, self.port, self._credentials, self.tls = host, port, credentials, tls
        self._client: DorisClient | None = None

    async def call(self, fn: Callable[[DorisClient], T]) -> T:
        if self._client is None:
            creds = await self._credentials()
            self._client = await asyncio.to_thread(
                DorisClient.connect,
                self.host,
                self.port,
                creds,
                Timeouts(connect=5, read=30, write=30),
                tls=self.tls,
            )
        client = self._client
        return await asyncio.to_thread(fn, client)

    async def close(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None


async def credentials(
    dc: DorisCluster, secret_data: Callable[[str], Awaitable[dict[str, str] | None]]
) -> Credentials:
    data = await secret_data(dc.spec.auth_secret) if dc.spec.auth_secret else None
    decoded = {k: base64.b64decode(v) for k, v in data.items()} if data else None
    admin = dc.spec.admin_user
    return resolve_credentials(decoded, (admin.name, admin.password) if admin and admin.name else None)


def _pods(dc: DorisCluster, comp: Component, count: int, pods: list[Obj]) -> membership.Pods:
    ips = {p["metadata"]["name"]: p.get("podIP") for p in pods}
    out: dict[int, tuple[str, list[str]]] = {}
    for ordinal in range(count):
        pod = f"{names.statefulset(dc.name, comp)}-{ordinal}"
        hosts = [names.pod_fqdn(dc.name, comp, ordinal, dc.namespace)]
        if ips.get(pod):
            hosts.append(str(ips[pod]))
        out[ordinal] = (pod, hosts)
    return out


async def reconcile_membership(
    dc: DorisCluster,
    desired: list[Obj],
    observed: dict[tuple[str, str], Obj],
    pods: list[Obj],
    old_status: Obj,
    session: FeSession,
    findings: Findings,
    record: Callable[[str, str, str], Awaitable[None]],
) -> None:
    """Set each desired StatefulSet's replicas to what is safe now, sending the statements that move
    toward the spec.  Nothing is asked of Doris when no StatefulSet shrinks and nothing drains."""
    for comp, spec in dc.components():
        if comp == "broker":
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
        draining = (old_status.get(f"{comp}Status") or {}).get("decommissioning")
        if want >= current and not draining:
            continue
        try:
            obj["spec"]["replicas"] = await _component(
                dc, comp, spec, want, current, pods, session, findings, record
            )
        except (DorisError, OSError) as err:
            obj["spec"]["replicas"] = max(want, current)  # never shrink blind
            findings.degrade(
                comp, "FEUnreachable", f"can't ask the FE at {session.host}:{session.port}: {err}"
            )


async def _component(
    dc: DorisCluster,
    comp: Component,
    spec: BaseSpec,
    want: int,
    current: int,
    pods: list[Obj],
    session: FeSession,
    findings: Findings,
    record: Callable[[str, str, str], Awaitable[None]],
) -> int:
    pod_names = _pods(dc, comp, max(want, current), pods)
    if isinstance(spec, FeSpec):
        frontends = await session.call(lambda c: c.show_frontends())
        fe_plan = membership.plan_frontends(want, current, election_number(spec), pod_names, frontends)
        if fe_plan.refused:
            findings.degrade(comp, "ScaleInRefused", fe_plan.refused)
        for host, port in fe_plan.drop_observers:
            await session.call(lambda c, h=host, p=port: c.drop_observer(h, p))  # type: ignore[misc]
            await record("Normal", "ObserverDropped", f"dropped FE observer {host}:{port} before scaling in")
        if fe_plan.drop_observers:
            findings.waiting[comp] = ("DroppingObservers", f"dropped {len(fe_plan.drop_observers)} observers")
        return fe_plan.replicas
    backends = await session.call(lambda c: c.show_backends())
    plan = membership.plan_backends(want, current, pod_names, backends)
    if plan.refused:
        findings.degrade(comp, "ScaleInRefused", plan.refused)
        return plan.replicas
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
    elif plan.replicas < current:
        await record(
            "Normal", "ScaledIn", f"{comp.upper()} {current} -> {plan.replicas}: the leaving BEs hold no data"
        )
    return plan.replicas


def _nodes(nodes: list[tuple[str, int]]) -> str:
    return ", ".join(f"{h}:{p}" for h, p in nodes)
