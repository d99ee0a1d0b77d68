"""``doris-operator run``: the controller manager."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import kopf
from aiohttp import web
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import allocator, handlers
from .k8s import FIELD_MANAGER, Fence, Kube
from .leader import LeaderElector
from .metrics import REGISTRY
from .reconcile.autoscaler import AutoscalerLoop, fe_backends
from .reconcile.controller import Controller
from .reconcile.initializer import InitializerController
from .reconcile.monitor import MonitorController

if TYPE_CHECKING:  # the webhook (and cryptography) is imported only when it is served
    from .webhook.server import WebhookOptions, WebhookServer

log = logging.getLogger("doris_operator")


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds the diff base of every object at every watch event (a deep copy of it, then one more
    to strip its progress), but only create/update/resume handlers read it, and the operator has none
    (indexes and on.event only): 14% of its CPU while 50 clusters converge (docs/benchmarks.md)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()


@dataclass
class Options:
    namespaces: list[str] = field(default_factory=list)
    """Namespaces to watch; empty means all."""
    workers: int = 4
    resync: float = 60.0
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8080
    leader_elect: bool = False
    lease_namespace: str = ""
    lease_name: str = "doris-operator"
    identity: str = ""
    autoscaler_interval: float = 15.0
    """How often each DorisClusterAutoscaler is evaluated (the HPA controller's default sync period)."""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    """The leader stops writing when it could not renew for this long (< lease_duration)."""
    retry_period: float = 2.0
    webhook: WebhookOptions | None = None
    """Serve the admission webhook in this process (every replica, leader or not)."""
    allow_fe_address_annotation: bool = False
    """Honour ``doris.apache.org/fe-address`` (local runs only: whoever may edit a DorisCluster could
    point the operator, and its Doris credentials, at a server of their choice)."""


def _settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # The operator keeps no state in the objects: no kopf progress or diff-base annotations, no
    # finalizers (none of its handlers needs one), no kopf Events (it records its own).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="doris.apache.org")
    settings.persistence.diffbase_storage = NoDiffBase(
        prefix="doris.apache.org", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "doris.apache.org/finalizer"
    settings.posting.enabled = False
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    return settings


async def _serve(opts: Options, state: dict[str, bool]) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        ready = (state.get("standby", False) or state.get("synced", False)) and state.get("webhook", True)
        return web.Response(text="ok" if ready else "not ready", status=200 if ready else 503)

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, opts.metrics_host, opts.metrics_port).start()
    return runner


async def _operate(opts: Options, kube: Kube, state: dict[str, bool]) -> None:
    controller = Controller(kube, workers=opts.workers, resync=opts.resync)
    controller.ctx.allow_fe_address_annotation = opts.allow_fe_address_annotation
    initializers = InitializerController(kube, resync=opts.resync)
    initializers.allow_fe_address_annotation = opts.allow_fe_address_annotation
    backends = fe_backends(kube, opts.allow_fe_address_annotation)
    autoscaler = AutoscalerLoop(kube, lambda: controller.indexes, backends, opts.autoscaler_interval)
    monitors = MonitorController(kube, resync=opts.resync)
    stop = asyncio.Event()
    started = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=handlers.registry,
            settings=_settings(),
            memo=kopf.Memo(
                controller=controller, initializers=initializers, autoscaler=autoscaler, monitors=monitors
            ),
            clusterwide=not opts.namespaces,
            namespaces=opts.namespaces,
            standalone=True,
            stop_flag=stop,
            ready_flag=started,
        )
    )
    work = asyncio.create_task(controller.run())
    init_work = asyncio.create_task(initializers.run())
    scaling = asyncio.create_task(autoscaler.run())
    monitoring = asyncio.create_task(monitors.run())
    trimming = asyncio.create_task(allocator.trim_every(allocator.TRIM_INTERVAL))

    async def synced() -> None:
        await started.wait()  # kopf's watches are up (with no DorisCluster, the controller never syncs)
        state["synced"] = True

    watch = asyncio.create_task(synced())
    try:
        done, _ = await asyncio.wait(
            {operator, work, init_work, monitoring}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if not task.cancelled():  # kopf cancels the loop's tasks when it stops on SIGTERM
                task.result()
    finally:
        stop.set()
        for task in (work, init_work, watch, scaling, monitoring, trimming):
            task.cancel()
        try:
            await asyncio.wait_for(operator, timeout=10)
        except (TimeoutError, asyncio.CancelledError, Exception):
            operator.cancel()


async def main(opts: Options) -> int:
    """Run until SIGTERM/SIGINT (exit status 0) or, with leader election, until the lease is lost (1:
    the pod restarts and comes back as a standby)."""
    config = KubeConfig.from_env()
    client = AsyncClient(config, field_manager=FIELD_MANAGER)
    fence = Fence(elected=opts.leader_elect)  # closed until the Lease is held
    kube = Kube(client, fence)
    state: dict[str, bool] = {}
    runner = await _serve(opts, state)
    webhook: asyncio.Task[None] | None = None
    if opts.webhook is not None:
        from .webhook.server import serve as serve_webhook

        state["webhook"] = False

        def listening(server: WebhookServer) -> None:
            state["webhook"] = True

        webhook = asyncio.create_task(serve_webhook(opts.webhook, client, started=listening))
    try:
        if opts.leader_elect:
            identity = opts.identity or f"{socket.gethostname()}-{os.getpid()}"
            namespace = opts.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"
            state["standby"] = True
            elector = LeaderElector(
                client,
                namespace,
                opts.lease_name,
                identity,
                lease_duration=opts.lease_duration,
                renew_deadline=opts.renew_deadline,
                retry_period=opts.retry_period,
                fence=fence,
            )

            async def lead() -> None:
                state["standby"] = False
                await _operate(opts, kube, state)

            await elector.run(lead)
            return 1 if elector.lost else 0
        await _operate(opts, kube, state)
        return 0
    finally:
        if webhook is not None:
            webhook.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await webhook
        await runner.cleanup()
        await client.close()


def run(opts: Options) -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kopf").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    allocator.limit_arenas()
    allocator.freeze_startup()
    try:
        return asyncio.run(main(opts))
    except KeyboardInterrupt:
        return 0
