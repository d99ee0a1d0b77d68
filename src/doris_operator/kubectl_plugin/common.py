"""What every command uses: errors, the Kubernetes client, transport overrides and port-forwards."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from .. import access
from ..api.doriscluster import DorisCluster
from ..builders import names

DEBUG_ANNOTATION = names.ANNOTATION_DEBUG_KEYS[0]
WEBSERVER_PORT_NAME = "webserver-port"
QUERY_PORT_NAME = "query-port"
VIAS = ("auto", "pod-ip", "nodeport", "loadbalancer", "port-forward")


class PluginError(Exception):
    """A failure reported as ``kubectl-doris: <message>`` with exit ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class UsageError(PluginError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


# ---------------------------------------------------------------------------------------------
# Transport overrides (--resolve HOST:PORT=ADDR:PORT), like curl's --resolve


def parse_resolve(specs: Sequence[str]) -> dict[tuple[str, int], tuple[str, int]]:
    out: dict[tuple[str, int], tuple[str, int]] = {}
    for spec in specs:
        left, sep, right = spec.partition("=")
        try:
            if not sep:
                raise ValueError
            host, _, port = left.rpartition(":")
            addr, _, aport = right.rpartition(":")
            if not host or not addr:
                raise ValueError
            out[(host.strip("[]").lower(), int(port))] = (addr.strip("[]"), int(aport))
        except ValueError:
            raise UsageError(f"--resolve {spec!r}: expected HOST:PORT=ADDRESS:PORT") from None
    return out


def resolve(host: str, port: int, table: dict[tuple[str, int], tuple[str, int]]) -> tuple[str, int]:
    return table.get((host.lower(), port), (host, port))


# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# Kubernetes access


@dataclass
class Kube:
    kubeconfig: str | None
    context: str | None
    namespace: str | None

    def __post_init__(self) -> None:
        self._client: Any = None
        self._default_ns = "default"

    @property
    def client(self) -> Any:
        if self._client is None:
            from lightkube import Client
            from lightkube.config.kubeconfig import KubeConfig

            try:
                config = KubeConfig.from_file(self.kubeconfig) if self.kubeconfig else KubeConfig.from_env()
                single = config.get(context_name=self.context)
            except Exception as err:
                raise PluginError(f"can't load the kubeconfig: {err}") from None
            if single is None:
                raise PluginError("the kubeconfig has no current context (use --context)")
            self._default_ns = single.namespace
            self._client = Client(config=single, namespace=self.namespace or single.namespace)
        return self._client

    @property
    def ns(self) -> str:
        _ = self.client
        return self.namespace or self._default_ns

    def kubectl_args(self) -> list[str]:
        out: list[str] = []
        if self.kubeconfig:
            out += ["--kubeconfig", self.kubeconfig]
        if self.context:
            out += ["--context", self.context]
        return out

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from lightkube import ApiError

        try:
            return fn(*args, **kwargs)
        except ApiError as err:
            if err.status.code == 404:
                where = f" in namespace {kwargs['namespace']}" if kwargs.get("namespace") else ""
                raise PluginError(f"{what} not found{where}") from None
            raise PluginError(f"{what}: {err.status.message}") from None
        except OSError as err:
            raise PluginError(f"can't reach the Kubernetes API: {err}") from None
        except Exception as err:  # an HTTP error without a Status body (a kind the apiserver doesn't serve)
            code = getattr(getattr(err, "response", None), "status_code", None)
            if code is None:
                raise
            if code == 404:
                raise PluginError(f"{what}: not served by this cluster (is its CRD installed?)") from None
            raise PluginError(f"{what}: HTTP {code}") from None

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        res = _resource(kind)
        obj = self._call(
            f"{_KIND_NAMES[kind]} {name}", self.client.get, res, name, namespace=namespace or self.ns
        )
        return dict(obj.to_dict() if hasattr(obj, "to_dict") else obj)

    def list(
        self, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None
    ) -> list[Any]:
        res = _resource(kind)
        kwargs: dict[str, Any] = {}
        if kind != "node":
            kwargs["namespace"] = namespace or self.ns
        if labels:
            kwargs["labels"] = labels
        items = self._call(f"list {kind}", lambda: list(self.client.list(res, **kwargs)))
        return [dict(o.to_dict() if hasattr(o, "to_dict") else o) for o in items]

    def patch(self, kind: str, name: str, body: dict[str, Any], namespace: str | None = None) -> None:
        from lightkube.types import PatchType

        res = _resource(kind)
        ns = namespace or self.ns
        self._call(
            f"{kind} {name}", self.client.patch, res, name, body, namespace=ns, patch_type=PatchType.MERGE
        )

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        from lightkube import codecs

        meta = obj["metadata"]
        res = codecs.from_dict(obj)
        what = f"{obj['kind'].lower()} {meta['name']}"
        out = self._call(what, self.client.apply, res, field_manager="kubectl-doris", force=True)
        return dict(out.to_dict())

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        self._call(
            f"{kind} {name}", self.client.delete, _resource(kind), name, namespace=namespace or self.ns
        )


_KIND_NAMES = {
    "pod": "pod",
    "service": "Service",
    "node": "node",
    "secret": "Secret",
    "dcr": "DorisCluster",
    "dinit": "DorisInitializer",
    "dmon": "DorisMonitor",
}


def _resource(kind: str) -> Any:
    from lightkube.resources.core_v1 import Node, Pod, Secret, Service

    from ..k8s import DorisClusterResource, DorisInitializerResource, DorisMonitorResource

    return {
        "dinit": DorisInitializerResource,
        "dmon": DorisMonitorResource,
        "pod": Pod,
        "service": Service,
        "node": Node,
        "secret": Secret,
        "dcr": DorisClusterResource,
    }[kind]


# ---------------------------------------------------------------------------------------------


def fetch(url: str, table: dict[tuple[str, int], tuple[str, int]], timeout: float = 10) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    addr, aport = resolve(host, port, table)
    target = url
    if (addr, aport) != (host, port):
        netloc = f"[{addr}]:{aport}" if ":" in addr else f"{addr}:{aport}"
        target = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    request = urllib.request.Request(target, headers={"Host": parts.netloc})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return bytes(resp.read()).decode(errors="replace")
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace").strip()
        raise PluginError(
            f"GET {url}: HTTP {err.code} {err.reason}" + (f": {body}" if body else "")
        ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise PluginError(f"GET {url}: {reason}") from None


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        if proc is not None and proc.poll() is not None:
            err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip()
            raise PluginError(f"kubectl port-forward exited {proc.returncode}: {err}")
        if time.monotonic() > deadline:
            raise PluginError(f"{host}:{port} didn't open within {timeout:.0f}s")
        time.sleep(0.2)


@contextlib.contextmanager
def port_forward(command: Sequence[str], port: int, timeout: float = 15) -> Iterator[None]:
    proc = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port("127.0.0.1", port, timeout, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------------------------------------
# The FE endpoint and credentials: the operator's own rules (..access)


def cluster_model(dc: dict[str, Any], namespace: str) -> DorisCluster:
    """The stored DorisCluster as the operator reads it; when its spec doesn't parse, only its
    credentials fields are kept (status and connect still work for a broken cluster)."""
    meta = {**(dc.get("metadata") or {}), "namespace": namespace}
    spec = dc.get("spec") or {}
    for attempt in (spec, {k: spec[k] for k in ("authSecret", "adminUser") if k in spec}, {}):
        try:
            return DorisCluster.model_validate({"metadata": meta, "spec": attempt})
        except ValidationError:
            continue
    raise PluginError(f"DorisCluster {meta.get('name')}: its metadata can't be read")


def fe_address(dc: dict[str, Any], namespace: str) -> tuple[str, int, bool]:
    """(host, port, direct): see :func:`..access.fe_endpoint_at`; the query port is the one the status
    reports for the FE access Service."""
    port = access.DEFAULT_QUERY_PORT
    ports = (((dc.get("status") or {}).get("feStatus") or {}).get("access") or {}).get("ports") or []
    for p in ports:
        if p.get("name") == QUERY_PORT_NAME:
            port = int(p["port"])
    endpoint = access.fe_endpoint_at(cluster_model(dc, namespace), port, allow_annotation=True)
    return endpoint.host, endpoint.port, endpoint.direct


def credentials(kube: Kube, dc: dict[str, Any], namespace: str) -> tuple[str, str]:
    """(user, password): see :func:`..access.credentials_from` (an unreadable authSecret counts as none)."""
    model = cluster_model(dc, namespace)
    data = None
    if model.spec.auth_secret:
        with contextlib.suppress(PluginError):
            data = kube.get("secret", model.spec.auth_secret, namespace).get("data") or {}
    found = access.credentials_from(model, data)
    return found.user, found.password
