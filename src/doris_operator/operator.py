"""``doris-operator run``: the controller manager."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lightkube import AsyncClient
from lightkube.config.client_adapter import verify_cluster
from lightkube.config.kubeconfig import KubeConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import allocator, handlers
from .imports import hidden
from .informers import Informers
from .k8s import FIELD_MANAGER, Fence, Kube
from .leader import LeaderElector
from .metrics import REGISTRY
from .reconcile.autoscaler import AutoscalerLoop, fe_backends
from .reconcile.controller import Controller
from .reconcile.initializer import InitializerController
from .reconcile.monitor import MonitorController
from .transport import Http11Transport

if TYPE_CHECKING:  # the webhook (and cryptography) is imported only when it is served
    from .webhook.server import WebhookOptions, WebhookServer

log = logging.getLogger("doris_operator")


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


async def _serve(opts: Options, state: dict[str, bool]) -> asyncio.Server:
    """/metrics, /healthz and /readyz: plain HTTP/1.1 GETs, one response per connection."""

    def ready() -> bool:
        return (state.get("standby", False) or state.get("synced", False)) and state.get("webhook", True)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            status, body, kind = "404 Not Found", b"not found", "text/plain; charset=utf-8"
            if method not in ("GET", "HEAD"):
                status, body = "405 Method Not Allowed", b"method not allowed"
            elif path == "/metrics":
                status, body, kind = "200 OK", generate_latest(REGISTRY), CONTENT_TYPE_LATEST
            elif path == "/healthz":
                status, body = "200 OK", b"ok"
            elif path == "/readyz":
                status, body = ("200 OK", b"ok") if ready() else ("503 Service Unavailable", b"not ready")
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(answer, opts.metrics_host, opts.metrics_port)


async def _operate(opts: Options, kube: Kube, state: dict[str, bool]) -> None:
    controller = Controller(kube, workers=opts.workers, resync=opts.resync)
    controller.ctx.allow_fe_address_annotation = opts.allow_fe_address_annotation
    initializers = InitializerController(kube, resync=opts.resync)
    initializers.allow_fe_address_annotation = opts.allow_fe_address_annotation
    backends = fe_backends(kube, opts.allow_fe_address_annotation)
    autoscaler = AutoscalerLoop(
        kube, lambda: controller.indexes, backends, opts.autoscaler_interval, opts.namespaces
    )
    monitors = MonitorController(kube, resync=opts.resync)
    wiring = handlers.Wiring(controller, initializers, autoscaler, monitors)
    informers = Informers(kube.client._client._client, wiring.watches(), opts.namespaces)

    def synced() -> None:
        wiring.synced()
        state["synced"] = True

    watching = asyncio.create_task(informers.run(synced), name="informers")
    work = asyncio.create_task(controller.run())
    init_work = asyncio.create_task(initializers.run())
    scaling = asyncio.create_task(autoscaler.run())
    monitoring = asyncio.create_task(monitors.run())
    trimming = asyncio.create_task(allocator.trim_every(allocator.TRIM_INTERVAL))
    tasks = (watching, work, init_work, scaling, monitoring, trimming)
    try:
        running = {watching, work, init_work, monitoring}
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # none ends but by raising
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def environment_proxy(server: str) -> str | None:
    """The proxy the environment names for the apiserver's URL (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY),
    unless NO_PROXY exempts its host: what lightkube's own client would use."""
    url = urllib.parse.urlsplit(server)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.hostname or ""):
        return None
    return proxy


def kube_client(config: KubeConfig) -> AsyncClient:
    """lightkube's client on :class:`~.transport.Http11Transport` (HTTP/1.1 on asyncio's streams),
    with the TLS settings of the kubeconfig's current context (its CA, its client certificate).

    A proxy the environment names for the server (:func:`environment_proxy`) is used as lightkube's
    client would: httpx2 then mounts its own transport for it, in front of this one.
    httpcore2 imports h2 (its HTTP/2 support) whenever it is installed; should httpx2 make its own
    transport (for that proxy), h2 is hidden while it does, so it stays unloaded (1 MiB
    of RSS: docs/benchmarks.md, Memory).  A process that imported h2 already keeps it."""
    single = config.get()
    if single is None:
        raise ValueError("the kubeconfig names no context to use")
    with hidden("h2"):  # lightkube makes a context without a CA file by httpx2's, which loads httpcore2
        tls = None
        if single.cluster.server.startswith("https:"):
            if single.user is None:
                raise ValueError("the kubeconfig's context names no user")
            tls = verify_cluster(single.cluster, single.user, single.abs_file)
        proxy = environment_proxy(single.cluster.server)  # through a proxy: httpx2's own transport
        return AsyncClient(single, field_manager=FIELD_MANAGER, transport=Http11Transport(tls), proxy=proxy)


async def main(opts: Options) -> int:
    """Run until SIGTERM/SIGINT (exit status 0) or, with leader election, until the lease is lost (1:
    the pod restarts and comes back as a standby)."""
    client = kube_client(KubeConfig.from_env())
    fence = Fence(elected=opts.leader_elect)  # closed until the Lease is held
    kube = Kube(client, fence)
    state: dict[str, bool] = {}
    server = await _serve(opts, state)
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
        server.close()
        await server.wait_closed()
        await client.close()


def run(opts: Options) -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    allocator.limit_arenas()
    allocator.freeze_startup()
    try:
        return asyncio.run(_until_signalled(opts))
    except KeyboardInterrupt:
        return 0


async def _until_signalled(opts: Options) -> int:
    """SIGTERM/SIGINT cancel ``main``: its cleanup runs (a leader gives its Lease up) and the exit
    status is 0."""
    task = asyncio.create_task(main(opts), name="main")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        log.info("stopped by a signal")
        return 0
