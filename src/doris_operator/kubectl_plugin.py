"""``kubectl doris``: a kubectl plugin for the clusters this operator runs.

Commands: ``status``, ``error-url``, ``connect`` and ``debug on|off``; see docs/kubectl-doris.md.
Exit codes: 0 success, 1 a failure at run time (not found, unreachable), 2 a usage error (bad URL,
bad option).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from .builders import names

DEBUG_ANNOTATION = names.ANNOTATION_DEBUG_KEYS[0]
FE_ADDRESS_ANNOTATION = "doris.apache.org/fe-address"  # same key as reconcile.membership
WEBSERVER_PORT_NAME = "webserver-port"
QUERY_PORT_NAME = "query-port"
VIAS = ("auto", "pod-ip", "nodeport", "loadbalancer", "port-forward")
_POD_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


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
# Error URLs


@dataclass(frozen=True)
class ErrorUrl:
    """A BE ``ErrorURL``/``tracking_url``: ``http://{pod}.{svc}.{ns}.svc.cluster.local:8040/api/...``."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    query: str
    pod: str | None
    """The pod (the host's first label), or None when the host is an IP address."""
    namespace: str | None

    def with_authority(self, host: str, port: int, scheme: str | None = None) -> str:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return urlunsplit((scheme or self.scheme, netloc, self.path, self.query, ""))

    @property
    def is_ip(self) -> bool:
        return self.pod is None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_error_url(url: str) -> ErrorUrl:
    """Parse an ErrorURL. Raises UsageError (exit 2) for anything that isn't a BE http URL."""
    text = url.strip()
    if not text:
        raise UsageError("empty URL")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        raise UsageError(f"not a valid URL: {url!r} ({err})") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"not an http URL: {url!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise UsageError(f"no host in URL: {url!r}")
    if not parts.path.startswith("/api/"):
        raise UsageError(f"not a Doris BE API URL (path should start with /api/): {url!r}")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    pod: str | None = None
    namespace: str | None = None
    if not _is_ip(host):
        labels = host.split(".")
        pod = labels[0]
        if not _POD_RE.match(pod):
            raise UsageError(f"the URL's host {host!r} doesn't start with a pod name")
        # {pod}.{service}.{namespace}[.svc[.cluster.local]]; other names carry no namespace
        if (len(labels) >= 4 and labels[3] == "svc") or (
            len(labels) == 3 and labels[1].endswith("-internal")
        ):
            namespace = labels[2]
    return ErrorUrl(url, parts.scheme, host, port, parts.path, parts.query, pod, namespace)


@dataclass
class Rewrite:
    via: str
    url: str
    command: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def container_port(pod: dict[str, Any], name: str, default: int) -> int:
    for container in pod.get("spec", {}).get("containers", []):
        for port in container.get("ports") or []:
            if port.get("name") == name and port.get("containerPort"):
                return int(port["containerPort"])
    return default


def via_pod_ip(eu: ErrorUrl, pod: dict[str, Any]) -> Rewrite:
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        raise PluginError(f"pod {eu.pod} has no IP (is it running?)")
    port = container_port(pod, WEBSERVER_PORT_NAME, eu.port)
    return Rewrite("pod-ip", eu.with_authority(ip, port), notes=["reachable from inside the cluster only"])


def _service_port(service: dict[str, Any], target: int) -> dict[str, Any]:
    ports = service.get("spec", {}).get("ports") or []
    for port in ports:
        if port.get("name") == WEBSERVER_PORT_NAME:
            return dict(port)
    for port in ports:
        if target in (port.get("targetPort"), port.get("port")):
            return dict(port)
    raise PluginError(f"Service {service['metadata']['name']} has no port for the BE web server ({target})")


def node_addresses(nodes: Sequence[dict[str, Any]]) -> list[str]:
    """One address per node: its ExternalIP, else its InternalIP."""
    out: list[str] = []
    for node in nodes:
        found = {a.get("type"): a.get("address") for a in (node.get("status") or {}).get("addresses") or []}
        address = found.get("ExternalIP") or found.get("InternalIP")
        if address and address not in out:
            out.append(str(address))
    return out


def node_address(nodes: Sequence[dict[str, Any]]) -> str:
    """A node address for NodePort access: the first ExternalIP, else the first InternalIP."""
    found: dict[str, str] = {}
    for node in nodes:
        for addr in (node.get("status") or {}).get("addresses") or []:
            found.setdefault(addr.get("type", ""), addr.get("address", ""))
    for kind in ("ExternalIP", "InternalIP", "Hostname"):
        if found.get(kind):
            return found[kind]
    raise PluginError("no node has an ExternalIP or InternalIP address")


def _shared_service_note(service: dict[str, Any]) -> str:
    return (
        f"Service {service['metadata']['name']} balances over every BE pod, and the log file is only on the "
        "pod of the URL: if you get a 404, use --expose (a Service for that pod only) or --via port-forward"
    )


def via_nodeport(eu: ErrorUrl, service: dict[str, Any], address: str, shared: bool) -> Rewrite:
    if service.get("spec", {}).get("type") not in ("NodePort", "LoadBalancer"):
        raise PluginError(
            f"Service {service['metadata']['name']} is {service.get('spec', {}).get('type')}, not NodePort"
        )
    port = _service_port(service, eu.port)
    if not port.get("nodePort"):
        raise PluginError(f"Service {service['metadata']['name']} has no node port allocated yet")
    rw = Rewrite("nodeport", eu.with_authority(address, int(port["nodePort"])))
    if shared:
        rw.notes.append(_shared_service_note(service))
    return rw


def via_loadbalancer(eu: ErrorUrl, service: dict[str, Any], shared: bool) -> Rewrite:
    name = service["metadata"]["name"]
    if service.get("spec", {}).get("type") != "LoadBalancer":
        raise PluginError(f"Service {name} is {service.get('spec', {}).get('type')}, not LoadBalancer")
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addresses = [i.get("hostname") or i.get("ip") for i in ingress if i.get("hostname") or i.get("ip")]
    if not addresses:
        raise PluginError(f"Service {name} has no load-balancer address yet")
    port = _service_port(service, eu.port)
    rw = Rewrite("loadbalancer", eu.with_authority(str(addresses[0]), int(port["port"])))
    if shared:
        rw.notes.append(_shared_service_note(service))
    return rw


def via_port_forward(
    eu: ErrorUrl, pod: str, namespace: str, local_port: int, kubectl_args: Sequence[str] = ()
) -> Rewrite:
    command = [
        "kubectl",
        *kubectl_args,
        "port-forward",
        "-n",
        namespace,
        f"pod/{pod}",
        f"{local_port}:{eu.port}",
    ]
    return Rewrite(
        "port-forward",
        eu.with_authority("127.0.0.1", local_port),
        command=command,
        notes=["run the command first (it keeps running), then open the URL"],
    )


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
    "dmon": "DorisMonitor",
}


def _resource(kind: str) -> Any:
    from lightkube.resources.core_v1 import Node, Pod, Secret, Service

    from .k8s import DorisClusterResource, DorisMonitorResource

    return {
        "pod": Pod,
        "service": Service,
        "node": Node,
        "secret": Secret,
        "dcr": DorisClusterResource,
        "dmon": DorisMonitorResource,
    }[kind]


# ---------------------------------------------------------------------------------------------
# error-url


def plan_error_url(
    kube: Kube,
    eu: ErrorUrl,
    via: str,
    local_port: int | None,
    node: str | None,
    expose: bool = False,
) -> Rewrite:
    namespace = eu.namespace or kube.ns
    if eu.pod is None:
        matches = [p for p in kube.list("pod", namespace) if (p.get("status") or {}).get("podIP") == eu.host]
        if not matches:
            raise PluginError(f"no pod in namespace {namespace} has IP {eu.host}")
        pod = matches[0]
    else:
        pod = kube.get("pod", eu.pod, namespace)
    pod_name = pod["metadata"]["name"]
    labels = pod["metadata"].get("labels") or {}
    cluster = labels.get(names.LABEL_CLUSTER)
    comp = labels.get(names.LABEL_COMPONENT, "be")
    if via == "auto" and expose:
        via = "nodeport"
        if cluster:
            with contextlib.suppress(PluginError):
                svc = kube.get("service", names.access_service(cluster, comp), namespace)
                if svc.get("spec", {}).get("type") == "LoadBalancer":
                    via = "loadbalancer"
    if expose and via not in ("nodeport", "loadbalancer"):
        raise UsageError(
            "--expose makes a NodePort or LoadBalancer Service: use it with --via nodeport|loadbalancer"
        )
    if via == "auto":
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            via = "pod-ip"
        else:
            via = "port-forward"
            if cluster:
                with contextlib.suppress(PluginError):
                    svc = kube.get("service", names.access_service(cluster, comp), namespace)
                    kind = svc.get("spec", {}).get("type")
                    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")
                    if kind == "LoadBalancer" and ingress:
                        via = "loadbalancer"
                    elif kind in ("NodePort", "LoadBalancer"):
                        via = "nodeport"
    if via == "pod-ip":
        return via_pod_ip(eu, pod)
    if via == "port-forward":
        port = local_port if local_port is not None else eu.port
        return via_port_forward(eu, pod_name, namespace, port, kube.kubectl_args())
    if not cluster:
        raise PluginError(f"pod {pod_name} has no {names.LABEL_CLUSTER} label: is it a Doris BE pod?")
    if expose:
        kind = "LoadBalancer" if via == "loadbalancer" else "NodePort"
        body = debug_service(pod, comp, container_port(pod, WEBSERVER_PORT_NAME, eu.port), kind)
        svc, shared = kube.apply(body), False
        cleanup = f"kubectl delete service -n {namespace} {body['metadata']['name']}"
    else:
        svc = kube.get("service", names.access_service(cluster, comp), namespace)
        selector = svc.get("spec", {}).get("selector") or {}
        shared = len(kube.list("pod", namespace, selector)) > 1 if selector else True
        cleanup = ""
    if via == "loadbalancer":
        try:
            rw = via_loadbalancer(eu, svc, shared)
        except PluginError as err:
            if not cleanup:
                raise
            raise PluginError(f"{err}: run this again once it has one (then: {cleanup})") from None
    else:
        nodes = kube.list("node")
        if node:
            nodes = [n for n in nodes if n["metadata"]["name"] == node]
            if not nodes:
                raise PluginError(f"node {node} not found")
        rw = via_nodeport(eu, svc, node_address(nodes), shared)
    if cleanup:
        rw.notes.append(
            f"Service {svc['metadata']['name']} reaches only pod {pod_name}; remove it after use: {cleanup}"
        )
    return rw


def debug_service(pod: dict[str, Any], comp: str, port: int, kind: str) -> dict[str, Any]:
    """The Doris docs' per-pod Service for error logs (``app.doris.service/role: debug``)."""
    pod_name = pod["metadata"]["name"]
    suffix = "-error-log"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": pod_name[: 63 - len(suffix)].rstrip("-") + suffix,
            "namespace": pod["metadata"].get("namespace"),
            "labels": {
                names.LABEL_SERVICE_ROLE: "debug",
                names.LABEL_COMPONENT: comp,
                names.LABEL_MANAGED_BY: "kubectl-doris",
            },
        },
        "spec": {
            "type": kind,
            "selector": {names.LABEL_COMPONENT: comp, "statefulset.kubernetes.io/pod-name": pod_name},
            "ports": [{"name": WEBSERVER_PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


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


def cmd_error_url(args: argparse.Namespace, kube: Kube) -> int:
    table = parse_resolve(args.resolve)
    eu = parse_error_url(args.url)
    rw = plan_error_url(kube, eu, args.via, args.local_port, args.node, args.expose)
    if args.output == "json":
        print(json.dumps(asdict(rw), indent=2))
    else:
        if rw.command:
            print(shlex.join(rw.command))
        print(rw.url)
        for note in rw.notes:
            print(f"note: {note}", file=sys.stderr)
    if args.fetch:
        if rw.command and (("127.0.0.1", int(urlsplit(rw.url).port or 0)) not in table):
            port = int(urlsplit(rw.url).port or 0)
            with port_forward(rw.command, port):
                body = fetch(rw.url, table)
        else:
            body = fetch(rw.url, table)
        sys.stdout.write(body if body.endswith("\n") else body + "\n")
    return 0


# ---------------------------------------------------------------------------------------------
# status


def _components(dc: dict[str, Any]) -> list[str]:
    spec = dc.get("spec") or {}
    return [c for c in ("fe", "be", "cn", "broker") if spec.get(f"{c}Spec") is not None]


def fe_address(dc: dict[str, Any], namespace: str) -> tuple[str, int, bool]:
    """(host, port, direct): the fe-address annotation if set, else the FE access Service's DNS name."""
    override = ((dc.get("metadata") or {}).get("annotations") or {}).get(FE_ADDRESS_ANNOTATION)
    if override:
        host, _, port = override.rpartition(":")
        return host, int(port), True
    name = dc["metadata"]["name"]
    port = 9030
    access = (((dc.get("status") or {}).get("feStatus") or {}).get("access") or {}).get("ports") or []
    for p in access:
        if p.get("name") == QUERY_PORT_NAME:
            port = int(p["port"])
    return f"{names.access_service(name, 'fe')}.{namespace}.svc.cluster.local", port, False


def credentials(kube: Kube, dc: dict[str, Any], namespace: str) -> tuple[str, str]:
    import base64

    spec = dc.get("spec") or {}
    if spec.get("authSecret"):
        with contextlib.suppress(PluginError):
            data = kube.get("secret", spec["authSecret"], namespace).get("data") or {}
            user = base64.b64decode(data.get("username", "")).decode() or "root"
            return user, base64.b64decode(data.get("password", "")).decode()
    admin = spec.get("adminUser") or {}
    if admin.get("name"):
        return str(admin["name"]), str(admin.get("password") or "")
    return "root", ""


def members(
    kube: Kube, dc: dict[str, Any], namespace: str, table: dict[tuple[str, int], tuple[str, int]]
) -> dict[str, Any]:
    from .doris.client import Credentials, DorisClient, DorisError, Timeouts

    host, port, _ = fe_address(dc, namespace)
    addr, aport = resolve(host, port, table)
    user, password = credentials(kube, dc, namespace)
    try:
        with DorisClient.connect(addr, aport, Credentials(user, password), Timeouts(3, 10, 10)) as client:
            fes = client.show_frontends()
            bes = client.show_backends()
    except DorisError as err:
        return {"fe": None, "be": None, "error": f"FE {host}:{port} not reachable: {err.detail}"}
    return {
        "fe": [
            {"host": f.host, "role": f.role, "master": f.is_master, "alive": f.alive, "version": f.version}
            for f in fes
        ],
        "be": [
            {
                "host": b.host,
                "alive": b.alive,
                "tablets": b.tablet_num,
                "decommissioned": b.system_decommissioned,
                "queryDisabled": b.query_disabled,
                "computeNode": b.is_compute_node,
            }
            for b in bes
        ],
        "error": None,
    }


def cluster_status(
    kube: Kube, dc: dict[str, Any], table: dict[tuple[str, int], tuple[str, int]], with_members: bool
) -> dict[str, Any]:
    meta = dc["metadata"]
    namespace = meta.get("namespace") or kube.ns
    st = dc.get("status") or {}
    comps: dict[str, Any] = {}
    for comp in _components(dc):
        cs = st.get(f"{comp}Status") or {}
        comps[comp] = {
            "desired": cs.get("replicas", (dc["spec"][f"{comp}Spec"] or {}).get("replicas")),
            "ready": cs.get("readyReplicas"),
            "phase": (cs.get("componentCondition") or {}).get("phase"),
            "running": cs.get("runningInstances") or [],
            "creating": cs.get("creatingInstances") or [],
            "failed": cs.get("failedInstances") or [],
            "conditions": cs.get("conditions") or [],
            "decommissioning": cs.get("decommissioning") or {},
            "access": cs.get("access"),
        }
    out: dict[str, Any] = {
        "name": meta["name"],
        "namespace": namespace,
        "phase": st.get("phase"),
        "generation": meta.get("generation"),
        "observedGeneration": st.get("observedGeneration"),
        "paused": ((meta.get("annotations") or {}).get("doris.apache.org/paused") == "true"),
        "conditions": st.get("conditions") or [],
        "components": comps,
    }
    if any((c["access"] or {}).get("type") in ("NodePort", "LoadBalancer") for c in comps.values()):
        with contextlib.suppress(PluginError):  # listing nodes may be forbidden
            out["nodeAddresses"] = node_addresses(kube.list("node"))
    if with_members:
        out["members"] = members(kube, dc, namespace, table)
    with contextlib.suppress(PluginError):  # no DorisMonitor CRD, or listing it is forbidden
        out["monitors"] = [
            monitor_status(m)
            for m in kube.list("dmon", namespace)
            if (m.get("spec") or {}).get("cluster") == meta["name"]
        ]
    return out


def monitor_status(dm: dict[str, Any]) -> dict[str, Any]:
    """A DorisMonitor of the cluster: mode, phase, parts and URLs (from its status)."""
    st = dm.get("status") or {}
    parts = st.get("parts") or {}
    return {
        "name": dm["metadata"]["name"],
        "mode": (dm.get("spec") or {}).get("mode") or "prometheusOperator",
        "phase": st.get("phase"),
        "parts": {k: bool(v.get("ready")) for k, v in parts.items()},
        "problems": [f"{k}: {v.get('message')}" for k, v in sorted(parts.items()) if not v.get("ready")],
        "prometheusURL": st.get("prometheusURL"),
        "grafanaURL": st.get("grafanaURL"),
    }


def _table(rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def _yes(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _noteworthy(condition: dict[str, Any]) -> bool:
    """Not Ready, Progressing or Degraded: worth a line under the component table."""
    kind, status = condition.get("type"), condition.get("status")
    return (status != "True") if kind == "Ready" else (status == "True")


def short_host(host: str, namespace: str) -> str:
    """``{pod}.{cluster}-{comp}-internal.{ns}.svc...`` -> ``{pod}``; other hosts unchanged."""
    labels = host.split(".")
    if len(labels) >= 3 and labels[1].endswith("-internal") and labels[2] == namespace:
        return labels[0]
    return host


def render_status(s: dict[str, Any]) -> str:
    ns = s["namespace"]
    lines = [f"DorisCluster {ns}/{s['name']}: {s['phase'] or 'Unknown'}"]
    rows: list[list[Any]]
    if s["paused"]:
        lines[0] += " (paused)"
    if s["generation"] is not None and s["observedGeneration"] != s["generation"]:
        lines.append(
            f"  generation {s['generation']}, observed {s['observedGeneration']}: not yet reconciled"
        )
    if s["conditions"]:
        rows = [["CONDITION", "STATUS", "REASON", "MESSAGE"]]
        rows += [[c.get("type"), c.get("status"), c.get("reason"), c.get("message")] for c in s["conditions"]]
        lines += ["", _table(rows)]
    rows = [["COMPONENT", "READY", "PHASE", "RUNNING", "CREATING", "FAILED"]]
    for comp, c in s["components"].items():
        rows.append(
            [
                comp,
                f"{c['ready'] or 0}/{c['desired'] if c['desired'] is not None else '?'}",
                c["phase"] or "-",
                len(c["running"]),
                len(c["creating"]),
                ", ".join(c["failed"]) or 0,
            ]
        )
    lines += ["", _table(rows)]
    for comp, c in s["components"].items():
        bad = [x for x in c["conditions"] if _noteworthy(x)]
        for x in bad:
            lines.append(f"  {comp}: {x.get('type')}={x.get('status')} {x.get('reason')}: {x.get('message')}")
        for pod, tablets in sorted(c["decommissioning"].items()):
            lines.append(f"  {comp}: {pod} decommissioning, {tablets} tablets left")
    m = s.get("members")
    if m is not None:
        if m["error"]:
            lines += ["", f"Members: {m['error']} (showing Kubernetes state only)"]
        else:
            rows = [["FE", "ROLE", "MASTER", "ALIVE", "VERSION"]]
            rows += [
                [short_host(f["host"], ns), f["role"], _yes(f["master"]), _yes(f["alive"]), f["version"]]
                for f in sorted(m["fe"], key=lambda f: str(f["host"]))
            ]
            lines += ["", _table(rows)]
            rows = [["BE", "ALIVE", "TABLETS", "DECOMMISSION", "QUERY DISABLED"]]
            rows += [
                [
                    short_host(b["host"], ns) + (" (CN)" if b["computeNode"] else ""),
                    _yes(b["alive"]),
                    b["tablets"],
                    "decommissioning" if b["decommissioned"] else "no",
                    _yes(b["queryDisabled"]),
                ]
                for b in sorted(m["be"], key=lambda b: str(b["host"]))
            ]
            lines += ["", _table(rows)]
    rows = [["ACCESS", "SERVICE", "TYPE", "CLUSTER-IP", "PORTS", "EXTERNAL"]]
    for comp, c in s["components"].items():
        a = c["access"]
        if not a:
            continue
        ports = ",".join(
            f"{p['port']}" + (f":{p['nodePort']}" if p.get("nodePort") else "") for p in a.get("ports") or []
        )
        rows.append(
            [
                comp,
                a.get("service"),
                a.get("type"),
                a.get("clusterIP"),
                ports,
                ",".join(a.get("ingress") or []),
            ]
        )
    if len(rows) > 1:
        lines += ["", _table(rows)]
    if s.get("nodeAddresses"):
        lines.append(f"  node ports are open on every node: {', '.join(s['nodeAddresses'])}")
    for mon in s.get("monitors") or []:
        ready = sum(mon["parts"].values())
        lines += [
            "",
            f"DorisMonitor {mon['name']} ({mon['mode']}): {mon['phase'] or 'Unknown'}, "
            f"{ready}/{len(mon['parts'])} parts ready ({', '.join(sorted(mon['parts'])) or 'none'})",
        ]
        lines += [f"  {p}" for p in mon["problems"]]
        for what in ("prometheusURL", "grafanaURL"):
            if mon.get(what):
                lines.append(f"  {what[:-3].capitalize()}: {mon[what]}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace, kube: Kube) -> int:
    table = parse_resolve(args.resolve)
    if args.name:
        clusters = [kube.get("dcr", args.name)]
    else:
        clusters = kube.list("dcr")
        if not clusters:
            raise PluginError(f"no DorisCluster in namespace {kube.ns}")
    statuses = [cluster_status(kube, dc, table, not args.no_members) for dc in clusters]
    if args.output == "json":
        print(json.dumps(statuses[0] if args.name else statuses, indent=2, default=str))
    else:
        print("\n\n".join(render_status(s) for s in statuses))
    return 0


# ---------------------------------------------------------------------------------------------
# connect


def _one_cluster(kube: Kube, name: str | None) -> dict[str, Any]:
    if name:
        return kube.get("dcr", name)
    clusters = kube.list("dcr")
    if len(clusters) != 1:
        found = ", ".join(c["metadata"]["name"] for c in clusters) or "none"
        raise UsageError(f"name the DorisCluster (found in namespace {kube.ns}: {found})")
    return dict(clusters[0])


def cmd_connect(args: argparse.Namespace, kube: Kube) -> int:
    dc = _one_cluster(kube, args.name)
    namespace = dc["metadata"].get("namespace") or kube.ns
    host, port, direct = fe_address(dc, namespace)
    user, password = credentials(kube, dc, namespace)
    forward: list[str] | None = None
    if not direct:
        local = args.local_port if args.local_port is not None else port
        service = names.access_service(dc["metadata"]["name"], "fe")
        forward = ["kubectl", *kube.kubectl_args(), "port-forward", "-n", namespace, f"svc/{service}"]
        forward.append(f"{local}:{port}")
        host, port = "127.0.0.1", local
    mysql = ["mysql", "-h", host, "-P", str(port), "-u", user] + (["-p"] if password else [])
    if args.dry_run:
        if forward:
            print(shlex.join(forward) + " &")
        print(shlex.join(mysql))
        return 0
    if forward:
        with port_forward(forward, port):
            return _run_mysql(mysql, host, port, user, password)
    return _run_mysql(mysql, host, port, user, password)


def _run_mysql(mysql: list[str], host: str, port: int, user: str, password: str) -> int:
    if shutil.which("mysql") is None:
        print(f"mysql client not installed; connect with: host={host} port={port} user={user}")
        if password:
            print("password: from the cluster's authSecret / adminUser")
        if sys.stdin.isatty():
            print("(keeping the connection open; Ctrl-C to stop)")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        return 0
    env = dict(os.environ)
    if password:
        env["MYSQL_PWD"] = password
        mysql = [a for a in mysql if a != "-p"]
    return subprocess.call(mysql, env=env)


# ---------------------------------------------------------------------------------------------
# debug


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question}: pass --yes to confirm")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise PluginError("cancelled")


def cmd_debug(args: argparse.Namespace, kube: Kube) -> int:
    pod = kube.get("pod", args.pod)
    labels = pod["metadata"].get("labels") or {}
    if names.LABEL_CLUSTER not in labels:
        print(
            f"warning: pod {args.pod} has no {names.LABEL_CLUSTER} label: not a Doris pod?", file=sys.stderr
        )
    annotations = pod["metadata"].get("annotations") or {}
    if args.mode == "on":
        kube.patch("pod", args.pod, {"metadata": {"annotations": {DEBUG_ANNOTATION: "debug"}}})
        print(f"pod/{args.pod} annotated {DEBUG_ANNOTATION}=debug")
        comp = labels.get(names.LABEL_COMPONENT, "be")
        home = "fe" if comp == "fe" else ("apache_hdfs_broker" if comp == "broker" else "be")
        ports = "query_port and http_port" if comp == "fe" else "heartbeat_service_port and webserver_port"
        print(
            "The image's entrypoint reads it (through /etc/podinfo) when the container next starts, e.g. "
            "after the next crash of a crash-looping pod: it then runs a debug process on the probe port "
            "instead of Doris, so the pod shows Running and stays up. A running Doris is not affected; "
            "don't delete the pod to force it (the new pod would not carry the annotation)."
        )
        print(f"Get a shell: kubectl exec -it -n {kube.ns} {args.pod} -- bash")
        print(
            f"To start {comp} by hand inside, first change {ports} in /opt/apache-doris/{home}/conf "
            f"(so the Services don't route to it), then run /opt/apache-doris/{home}/bin/start_{comp}.sh."
        )
        print(f"Turn it off with: kubectl doris debug off {args.pod} -n {kube.ns}")
        return 0
    present = [k for k in names.ANNOTATION_DEBUG_KEYS if k in annotations]
    _confirm(f"remove the debug annotation and delete pod {args.pod} so it restarts normally", args.yes)
    if present:
        kube.patch("pod", args.pod, {"metadata": {"annotations": dict.fromkeys(present)}})
    kube.delete("pod", args.pod)
    print(f"pod/{args.pod}: debug annotation removed; pod deleted, its StatefulSet recreates it")
    return 0


# ---------------------------------------------------------------------------------------------
# CLI


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config)")
    common.add_argument("--context", help="kubeconfig context")
    common.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    p = argparse.ArgumentParser(
        prog="kubectl doris",
        description="Inspect and reach the Doris clusters of doris-operator (docs/kubectl-doris.md).",
        epilog="Exit status: 0 done, 1 failed (not found, unreachable), 2 usage error.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("status", parents=[common], help="components, members and access endpoints")
    s.add_argument("name", nargs="?", help="DorisCluster (default: every one in the namespace)")
    s.add_argument("-o", "--output", choices=("table", "json"), default="table")
    s.add_argument("--no-members", action="store_true", help="don't ask the FE for its members")
    s.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT=ADDR:PORT",
        help="reach the FE at ADDR:PORT instead of HOST:PORT (repeatable)",
    )

    e = sub.add_parser("error-url", parents=[common], help="rewrite a BE ErrorURL to one you can open")
    e.add_argument("url", help="the ErrorURL / tracking_url Doris returned")
    e.add_argument(
        "--via",
        choices=VIAS,
        default="auto",
        help="how to reach the pod (auto: pod-ip in a pod, else by the BE Service type, else port-forward)",
    )
    e.add_argument("--fetch", action="store_true", help="GET it and print the error log")
    e.add_argument("--local-port", type=int, help="port-forward: local port (default: the URL's port)")
    e.add_argument("--node", help="nodeport: use this node's address")
    e.add_argument(
        "--expose",
        action="store_true",
        help="create a NodePort/LoadBalancer Service for this pod only (the access Service spans all BEs)",
    )
    e.add_argument("-o", "--output", choices=("text", "json"), default="text")
    e.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT=ADDR:PORT",
        help="--fetch: connect to ADDR:PORT for HOST:PORT (repeatable)",
    )

    c = sub.add_parser("connect", parents=[common], help="a mysql session to the FE query port")
    c.add_argument("name", nargs="?", help="DorisCluster (default: the namespace's only one)")
    c.add_argument("--local-port", type=int, help="local port of the port-forward (default 9030)")
    c.add_argument("--dry-run", action="store_true", help="print the commands only")

    d = sub.add_parser("debug", parents=[common], help="debug mode of a Doris pod")
    d.add_argument("mode", choices=("on", "off"))
    d.add_argument("pod", help="a Doris pod, e.g. doriscluster-sample-be-0")
    d.add_argument("-y", "--yes", action="store_true", help="off: don't ask before deleting the pod")
    return p


def _fail(message: str, code: int) -> NoReturn:
    print(f"kubectl-doris: {message}", file=sys.stderr)
    raise SystemExit(code)


def run(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    kube = Kube(args.kubeconfig, args.context, args.namespace)
    if args.kubeconfig and not Path(args.kubeconfig).exists():
        raise UsageError(f"--kubeconfig {args.kubeconfig}: no such file")
    commands = {"status": cmd_status, "error-url": cmd_error_url, "connect": cmd_connect, "debug": cmd_debug}
    return commands[args.command](args, kube)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except PluginError as err:
        _fail(str(err), err.code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
