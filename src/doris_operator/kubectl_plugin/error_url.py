"""``kubectl doris error-url``: fetch a Doris error URL that names a pod IP, the way that reaches it."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..builders import names
from .common import (
    WEBSERVER_PORT_NAME,
    Kube,
    PluginError,
    UsageError,
    fetch,
    parse_resolve,
    port_forward,
)

_POD_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


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
