"""A reverse proxy on 127.0.0.1 between one operator process and the local apiserver: plain HTTP in,
TLS with the admin token out.  It records every write the process sends (when it arrived) and can
refuse its Lease requests, as a network fault that hits only leader election would."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "authorization", "keep-alive"}


class ApiProxy:
    def __init__(self, server: str, ca_file: str | Path, token: str) -> None:
        self.upstream = server.rstrip("/")
        self.ca_file = str(ca_file)
        self.token = token
        self.block_leases = threading.Event()
        self.writes: list[tuple[float, str, str]] = []
        """(time.time() on arrival, method, path) of every non-Lease write."""
        self.lease_renewed: list[float] = []
        """time.time() of each successful Lease write's answer."""
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    def start(self, timeout: float = 10) -> ApiProxy:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(ready)), daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the API proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        context = ssl.create_default_context(cafile=self.ca_file)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            app = web.Application()

            async def handle(request: web.Request) -> web.StreamResponse:
                return await self._handle(request, session, context)

            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server: Any = site._server
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stopped.wait()
            await runner.cleanup()

    async def _handle(
        self, request: web.Request, session: aiohttp.ClientSession, context: ssl.SSLContext
    ) -> web.StreamResponse:
        arrived = time.time()
        lease = "/apis/coordination.k8s.io/" in request.path and "/leases" in request.path
        if lease and self.block_leases.is_set():
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                 "reason": "ServiceUnavailable", "message": "blocked by the test"},
                status=503,
            )  # fmt: skip
        write = request.method not in ("GET", "HEAD", "OPTIONS")
        if write and not lease:
            self.writes.append((arrived, request.method, request.path))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Authorization"] = f"Bearer {self.token}"
        body = await request.read()
        async with session.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers, ssl=context
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            if "Content-Type" in upstream.headers:
                response.headers["Content-Type"] = upstream.headers["Content-Type"]
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            if lease and write and upstream.status < 300:
                self.lease_renewed.append(time.time())
            return response
