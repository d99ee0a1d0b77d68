"""The admission webhook server: aiohttp over TLS, a certificate that is reloaded in place, and the
loops that keep the certificate, the Secret and the webhook configurations in step.

aiohttp is imported only here: a process that serves no webhook never loads it.  Why not a framework's
admission support (kopf's, for one): those generate a throw-away certificate at each start (or read
files), register one webhook per handler, and tie the webhook to the framework's loop.  The operator
needs a certificate kept in a Secret that several replicas share, a CA rotation whose bundle is
published before the new certificate is served, the configurations' failure policies and
matchConditions, and a ValidatingAdmissionPolicy; all of that is a few hundred lines here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.resources.core_v1 import Secret

from . import certs, configs
from .admission import (
    REGISTRY,
    AdmissionKind,
    Registry,
    mutate_review,
    validate_review,
    validate_review_live,
)
from .eviction import PATH as EVICTION_PATH
from .eviction import EvictionGuard

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass
class WebhookOptions:
    host: str = "0.0.0.0"
    port: int = 9443
    """0 picks a free port (see :attr:`WebhookServer.port`)."""
    namespace: str = field(default_factory=lambda: os.environ.get("POD_NAMESPACE") or "default")
    """Namespace of the certificate Secret and of the webhook Service."""
    service_name: str = "doris-operator-webhook"
    service_port: int = 443
    url: str | None = None
    """Base URL for the configurations instead of the Service (local runs: ``https://127.0.0.1:9443``)."""
    secret_name: str = "doris-operator-webhook-cert"
    cert_dir: Path | None = None
    """cert-manager mode: read tls.crt/tls.key from this directory (the mounted Certificate Secret)."""
    cert_manager_certificate: str = "doris-operator-webhook"
    """cert-manager mode: the Certificate named in the cainjector annotation."""
    cert_validity: dt.timedelta = dt.timedelta(days=90)
    renew_fraction: float = 1 / 3
    ca_propagation: dt.timedelta = dt.timedelta(seconds=30)
    check_interval: float | None = None
    """Seconds between certificate checks; default min(60, validity / 20) (10 in cert-manager mode)."""
    resync: float = 600.0
    """Seconds between re-applies of the configurations (repairs manual edits)."""
    install: bool = True
    """Apply the webhook configurations (always in self-signed mode: they carry the CA bundle)."""
    install_policy: bool = True
    """Apply the ValidatingAdmissionPolicy guarding managed StatefulSets."""
    ca_bundle_only: bool = False
    """The configurations belong to the installer (the Helm chart renders them, per release): in
    self-signed mode only their caBundle is patched, by name; nothing is created."""
    config_name: str = "doris-operator"
    policy_name: str = "doris-operator-managed-statefulsets"
    validation_failure_policy: configs.FailurePolicy = "Fail"
    mutation_failure_policy: configs.FailurePolicy = "Ignore"
    timeout_seconds: int = 5
    operator_users: list[str] = field(default_factory=list)
    """Who may change managed StatefulSets; empty: this process's own identity (a SelfSubjectReview asks
    the apiserver), which is the operator's ServiceAccount when the webhook runs in the operator."""
    exempt_users: list[str] = field(default_factory=lambda: list(configs.SYSTEM_USERS))
    extra_hosts: list[str] = field(default_factory=list)
    """More names or IPs for the serving certificate."""
    evictions: bool = True
    """Serve and register the drain-safe eviction webhook (pods/eviction, failurePolicy Ignore)."""
    allow_fe_address_annotation: bool = False
    """The eviction webhook honours a DorisCluster's fe-address annotation (as the operator does with
    ``run --allow-fe-address-annotation``); else it asks the FE pods by their DNS names."""

    def hosts(self) -> list[str]:
        """Names the serving certificate covers: the URL's host, or the Service's DNS names."""
        if self.url:
            hosts = [urlsplit(self.url).hostname or "localhost"]
        else:
            svc, ns = self.service_name, self.namespace
            hosts = [f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local", f"{svc}.{ns}", svc]
        return list(dict.fromkeys(hosts + self.extra_hosts))

    def rotation(self) -> certs.RotationPolicy:
        return certs.RotationPolicy(self.cert_validity, self.renew_fraction, self.ca_propagation)

    def interval(self) -> float:
        if self.check_interval is not None:
            return self.check_interval
        if self.cert_dir is not None:
            return 10.0
        return min(60.0, self.cert_validity.total_seconds() / 20)

    def config_options(self, operator_users: list[str]) -> configs.ConfigOptions:
        return configs.ConfigOptions(
            name=self.config_name,
            namespace=self.namespace,
            service_name=self.service_name,
            service_port=self.service_port,
            url=self.url,
            validation_failure_policy=self.validation_failure_policy,
            mutation_failure_policy=self.mutation_failure_policy,
            timeout_seconds=self.timeout_seconds,
            cert_manager_certificate=self.cert_manager_certificate if self.cert_dir else None,
            policy_name=self.policy_name,
            operator_users=operator_users,
            exempt_users=self.exempt_users,
            evictions=self.evictions,
        )


class ReloadableTLS:
    """One ``ssl.SSLContext`` for the life of the server; a new certificate is loaded into it in place.

    OpenSSL copies the certificate into each connection when the connection is made, so connections
    (and requests on them) already open keep theirs; the next handshake gets the new one.  A pair is
    first loaded into a scratch context, so a bad pair never touches the live one."""

    def __init__(self) -> None:
        self.context = self._new_context()
        self.pair: certs.KeyPair | None = None
        self._dir = tempfile.mkdtemp(prefix="doris-webhook-")

    @staticmethod
    def _new_context() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def load(self, pair: certs.KeyPair) -> bool:
        """Serve ``pair`` from the next handshake on; False when it is already served."""
        if self.pair is not None and self.pair.fingerprint == pair.fingerprint:
            return False
        pair.check()
        fd, path = tempfile.mkstemp(dir=self._dir, suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pair.key_pem + b"\n" + pair.cert_pem)
            self._new_context().load_cert_chain(path)  # raises on a bad pair before the live context
            self.context.load_cert_chain(path)
        finally:
            os.unlink(path)
        self.pair = pair
        log.info("serving certificate serial %x, valid until %s", pair.serial, pair.not_after.isoformat())
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


def build_app(
    registry: Registry,
    ready: Callable[[], bool] | None = None,
    client: AsyncClient | None = None,
    timeout: float = 5.0,
    eviction: Callable[[Obj], Awaitable[Obj]] | None = None,
) -> web.Application:
    """The HTTP side: ``POST /validate/<group>/<plural>``, ``POST /mutate/<group>/<plural>``,
    ``GET /healthz`` and ``/readyz``.  Denials are AdmissionReviews with HTTP 200; a malformed review
    is a 400 and a failure in a handler a 500, which the apiserver treats per failurePolicy.  With a
    ``client``, validators that read from the apiserver (ConfigMaps, pods, dry-runs) get it, within
    ``timeout`` seconds (the configurations' timeoutSeconds)."""

    async def validate(kind: AdmissionKind, body: Obj) -> Obj:
        if client is not None and kind.validate_live is not None:
            return await validate_review_live(kind, body, client, timeout)
        return validate_review(kind, body)

    async def mutate(kind: AdmissionKind, body: Obj) -> Obj:
        return mutate_review(kind, body)

    def handler(review: Callable[[AdmissionKind, Obj], Awaitable[Obj]], hook: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            kind = registry.get(request.match_info["group"], request.match_info["plural"])
            if kind is None:
                return web.json_response({"error": f"no {hook} webhook for {request.path}"}, status=404)
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                return web.json_response({"error": "the body is not JSON"}, status=400)
            try:
                response = await review(kind, body)
            except ValueError as err:
                return web.json_response({"error": str(err)}, status=400)
            except Exception:
                log.exception("%s %s failed", hook, kind.kind)
                return web.json_response({"error": f"{hook} failed"}, status=500)
            result = response["response"]
            if hook == "validate" and not result["allowed"]:
                log.info(
                    "denied %s %s/%s: %s",
                    kind.kind,
                    body["request"].get("namespace"),
                    body["request"].get("name"),
                    result["status"]["message"].replace("\n", "; "),
                )
            return web.json_response(response)

        return handle

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        ok = ready() if ready is not None else True
        return web.Response(text="ok" if ok else "not ready", status=200 if ok else 503)

    async def evict(request: web.Request) -> web.Response:
        assert eviction is not None
        try:
            body = await request.json()
            return web.json_response(await eviction(body))
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
            return web.json_response({"error": str(err)}, status=400)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.add_routes(
        [
            web.post("/validate/{group}/{plural}", handler(validate, "validate")),
            web.post("/mutate/{group}/{plural}", handler(mutate, "mutate")),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
        ]
    )
    if eviction is not None:
        app.add_routes([web.post(EVICTION_PATH, evict)])
    return app


class SecretStore:
    """The certificate Secret (type kubernetes.io/tls), read and written with optimistic concurrency:
    when replicas race, one write wins and the others reread."""

    def __init__(self, client: AsyncClient, namespace: str, name: str) -> None:
        self.client, self.namespace, self.name = client, namespace, name

    async def read(self) -> certs.CertState:
        try:
            secret = await self.client.get(Secret, self.name, namespace=self.namespace)
        except ApiError as err:
            if err.status.code == 404:
                return certs.CertState()
            raise
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        meta = secret.metadata
        return certs.CertState.from_secret(
            data, dict(meta.annotations or {}) if meta else {}, meta.resourceVersion if meta else None
        )

    async def write(self, state: certs.CertState) -> certs.CertState | None:
        """Store ``state``; None when another writer got there first."""
        data = {k: base64.b64encode(v).decode() for k, v in state.data().items()}
        meta = ObjectMeta(
            name=self.name,
            namespace=self.namespace,
            labels={"app.kubernetes.io/part-of": "doris-operator", "app.kubernetes.io/component": "webhook"},
            annotations=state.annotations(),
            resourceVersion=state.resource_version,
        )
        secret = Secret(metadata=meta, type="kubernetes.io/tls", data=data)
        try:
            if state.resource_version is None:
                stored = await self.client.create(secret, field_manager=configs.FIELD_MANAGER)
            else:
                stored = await self.client.replace(secret, field_manager=configs.FIELD_MANAGER)
        except ApiError as err:
            if err.status.code in (409, 422) and err.status.reason in ("AlreadyExists", "Conflict"):
                log.info("certificate Secret %s/%s changed meanwhile; rereading", self.namespace, self.name)
                return None
            raise
        version = stored.metadata.resourceVersion if stored.metadata else None
        return certs.CertState(state.current, state.next, state.bundle, state.published_at, version)


async def whoami(client: AsyncClient) -> str:
    """This process's username as the apiserver sees it (SelfSubjectReview)."""
    review = await client.create(SelfSubjectReview())
    info = review.status.userInfo if review.status else None
    return str(info.username) if info and info.username else ""


class WebhookServer:
    """The webhook: ``await start()``, then ``await run()`` until cancelled, then ``await stop()``."""

    def __init__(
        self,
        options: WebhookOptions,
        client: AsyncClient,
        registry: Registry | None = None,
        now: Callable[[], dt.datetime] = certs.utcnow,
    ) -> None:
        self.options = options
        self.client = client
        self.registry = registry or REGISTRY
        self.now = now
        self.tls = ReloadableTLS()
        self.store = SecretStore(client, options.namespace, options.secret_name)
        self.state = certs.CertState()
        self.port = options.port
        self.rotations = 0
        """How many times a new serving certificate was loaded after the first."""
        self._runner: web.AppRunner | None = None
        self._published: bytes | None = None
        self._published_at = 0.0
        self._operator_users: list[str] = list(options.operator_users)
        self._ready = False

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        opts = self.options
        if not self._operator_users and opts.install_policy:  # the identity is only needed in the policy
            user = await self._self_identity()
            self._operator_users = [user] if user else []
        if opts.cert_dir is not None:
            await self._wait_for(self._reload_files, 30, f"certificate files in {opts.cert_dir}")
        else:
            await self._sync_secret()
        guard = EvictionGuard(self.client, opts.allow_fe_address_annotation) if opts.evictions else None
        app = build_app(
            self.registry,
            lambda: self._ready,
            self.client,
            opts.timeout_seconds,
            guard.review if guard else None,
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, opts.host, opts.port, ssl_context=self.tls.context)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("admission webhook listening on %s:%d", opts.host, self.port)
        await self._publish(force=True)
        self._ready = True

    async def run(self) -> None:
        """Check the certificate every interval until cancelled; errors are logged and retried."""
        while True:
            await asyncio.sleep(self.options.interval())
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("webhook certificate check failed (retrying): %s", err)

    async def tick(self) -> None:
        """One check: certificate (Secret or files), then the configurations if the bundle changed or
        ``resync`` has passed."""
        if self.options.cert_dir is not None:
            self._reload_files()
        else:
            await self._sync_secret()
        loop = asyncio.get_running_loop()
        await self._publish(force=loop.time() - self._published_at > self.options.resync)

    async def stop(self) -> None:
        self._ready = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.tls.close()

    @property
    def ready(self) -> bool:
        """Listening with a certificate, configurations applied."""
        return self._ready

    async def uninstall(self) -> None:
        await configs.uninstall(self.client, self.options.config_options(self._operator_users))

    # ---- certificates --------------------------------------------------------------------------------

    async def _self_identity(self) -> str:
        try:
            user = await whoami(self.client)
        except ApiError as err:
            log.warning("SelfSubjectReview failed (%s): no operator identity exempt", err.status.message)
            return ""
        if not user.startswith("system:serviceaccount:"):
            log.warning(
                "running as %r, not a ServiceAccount: %r may change managed StatefulSets (pass the "
                "operator's identity with --operator-user to choose)",
                user,
                user,
            )
        return user

    async def _wait_for(self, attempt: Callable[[], bool], timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                attempt()
                return
            except (OSError, ValueError) as err:
                if loop.time() > deadline:
                    raise RuntimeError(f"no usable {what} after {timeout:.0f}s: {err}") from err
            await asyncio.sleep(1)

    def _reload_files(self) -> bool:
        assert self.options.cert_dir is not None
        try:
            pair = certs.CertDir(self.options.cert_dir).read()
        except (OSError, ValueError) as err:
            if self.tls.pair is None:
                raise
            log.warning("keeping the current certificate: %s unreadable: %s", self.options.cert_dir, err)
            return False
        return self._serve(pair)

    def _serve(self, pair: certs.KeyPair) -> bool:
        first = self.tls.pair is None
        changed = self.tls.load(pair)
        if changed and not first:
            self.rotations += 1
        return changed

    async def _sync_secret(self) -> None:
        """One step of the rotation (see :mod:`.certs`): read the Secret, plan, write, serve."""
        hosts = self.options.hosts()
        for _ in range(3):
            state = stored = await self.store.read()
            now = self.now()
            served = self.tls.pair
            if state.current is None and served is not None and not served.expired(now):
                # The Secret is gone (deleted by hand?): keep what clients already trust, don't start over.
                log.warning("the certificate Secret lost its certificate; restoring the one being served")
                state = dataclasses.replace(state, current=served, bundle=self.state.bundle + state.bundle)
            planned = certs.plan(state, hosts, self.options.rotation(), now)
            promoting = (
                state.next is not None
                and planned.current is state.next
                and state.current is not None
                and not state.current.expired(now)
            )
            if promoting and state.next is not None and not await self._configs_trust(state.next, now):
                # Another writer put an older bundle back meanwhile: publish again, wait again.
                log.warning("the webhook configurations don't trust the staged certificate yet; republishing")
                self._published = None
                planned = dataclasses.replace(state, published_at=None)
            if planned == stored:
                state = stored
                break
            if planned.next is not None and state.next is None:
                log.info("staged a new CA and serving certificate (valid until %s)", planned.next.not_after)
            if planned.current is not state.current and state.current is not None:
                log.info("promoting the staged serving certificate")
            written = await self.store.write(planned)
            if written is not None:
                state = written
                break
        else:
            return
        self.state = state
        if state.current is not None:
            self._serve(state.current)

    async def _configs_trust(self, pair: certs.KeyPair, now: dt.datetime) -> bool:
        """Whether the live webhook configurations' caBundles verify ``pair``."""
        host = self.options.hosts()[0]
        for obj in configs.webhook_configurations(
            self.options.config_options(self._operator_users), self.registry, b""
        ):
            try:
                live = await self.client.get(configs.RESOURCES[obj["kind"]], obj["metadata"]["name"])
            except ApiError as err:
                if err.status.code == 404:
                    return False
                raise
            for hook in live.webhooks or []:
                bundle = base64.b64decode(hook.clientConfig.caBundle or "")
                try:
                    trusted = certs.verify_chain(pair, certs.load_bundle(bundle), host, now)
                except ValueError:
                    trusted = False
                if not trusted:
                    return False
        return True

    async def _publish(self, force: bool = False) -> None:
        """Apply the configurations (with the CA bundle in self-signed mode) when the bundle changed,
        then record that a staged certificate's CA is published."""
        opts = self.options
        bundle = None if opts.cert_dir is not None else self.state.bundle_pem
        objects: list[Obj] = []
        if opts.ca_bundle_only:
            if bundle is not None and (force or bundle != self._published):
                await configs.patch_ca_bundle(
                    self.client, opts.config_options(self._operator_users), self.registry, bundle
                )
                self._published = bundle
                self._published_at = asyncio.get_running_loop().time()
                log.info("patched the CA bundle into the webhook configurations %s", opts.config_name)
        elif (opts.install or bundle is not None) and (force or bundle != self._published):
            objects += configs.webhook_configurations(
                opts.config_options(self._operator_users), self.registry, bundle
            )
        if force and opts.install_policy:
            objects += configs.statefulset_policy(opts.config_options(self._operator_users))
        if objects:
            await configs.apply(self.client, objects)
            self._published = bundle
            self._published_at = asyncio.get_running_loop().time()
            log.info("applied %s", ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects))
        state = self.state
        if (
            opts.cert_dir is None
            and state.next is not None
            and state.published_at is None
            and self._published == state.bundle_pem
        ):
            stamped = certs.CertState(
                state.current, state.next, state.bundle, self.now(), state.resource_version
            )
            written = await self.store.write(stamped)
            if written is not None:
                self.state = written


async def serve(
    options: WebhookOptions,
    client: AsyncClient,
    registry: Registry | None = None,
    started: Callable[[WebhookServer], Awaitable[None] | None] | None = None,
) -> None:
    """Run the webhook until cancelled: certificate, TLS server, configurations, rotation.

    The operator calls this as a task next to its controller (in every replica: the webhook Service
    routes to all of them); ``started`` is called once it is listening."""
    server = WebhookServer(options, client, registry)
    try:
        await server.start()
        if started is not None:
            result = started(server)
            if asyncio.iscoroutine(result):
                await result
        await server.run()
    finally:
        await server.stop()


def run(options: WebhookOptions, uninstall_on_exit: bool = False) -> int:
    """``doris-operator webhook``: serve until SIGINT/SIGTERM, with the client of KUBECONFIG (or the pod's
    ServiceAccount)."""
    import signal

    from lightkube.config.kubeconfig import KubeConfig

    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    async def main() -> None:
        client = AsyncClient(KubeConfig.from_env(), field_manager=configs.FIELD_MANAGER)
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            if task is not None:
                loop.add_signal_handler(sig, task.cancel)
        server = WebhookServer(options, client)
        try:
            await server.start()
            print(f"serving on port {server.port}", flush=True)
            await server.run()
        except asyncio.CancelledError:
            pass
        finally:
            if uninstall_on_exit:
                with contextlib.suppress(Exception):
                    await server.uninstall()
            await server.stop()
            await client.close()

    asyncio.run(main())
    return 0
