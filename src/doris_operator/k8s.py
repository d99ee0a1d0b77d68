"""The operator's own Kubernetes API calls (lightkube, async): server-side apply with one field
manager, deletes with a uid precondition, live reads, taking over field ownership, status patches,
Events.  Every call is counted in :data:`metrics.API_REQUESTS`.

Writes go through a :class:`Fence`: once leader election says this replica may no longer be the leader
(its renew deadline passed), every write raises :class:`NotLeading` before it is sent."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import Status
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import ConfigMap, Event, Pod, Secret, Service, ServiceAccount
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding
from lightkube.types import PatchType

from . import jsoncodec
from .api import doriscluster as dc
from .api import dorisclusterautoscaler as dca
from .api import dorisinitializer as di
from .api import dorismonitor as dm
from .metrics import API_REQUESTS, FENCED_WRITES
from .transport import Http11Transport

FIELD_MANAGER = "doris-operator"
APPLY_QUERY = f"fieldManager={FIELD_MANAGER}&force=true"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"
"""Answer a write with the object's metadata only (a PartialObjectMetadata), like client-go's metadata
client: a StatefulSet's whole answer to an apply is ten times its metadata, all of it decoded for
nothing.  An apiserver that can't answer so sends the whole object."""
log = logging.getLogger(__name__)

DorisClusterResource = create_namespaced_resource(dc.GROUP, dc.VERSION, dc.KIND, dc.PLURAL)
DorisClusterAutoscalerResource = create_namespaced_resource(dc.GROUP, dc.VERSION, dca.KIND, dca.PLURAL)
DorisInitializerResource = create_namespaced_resource(dc.GROUP, dc.VERSION, di.KIND, di.PLURAL)
DorisMonitorResource = create_namespaced_resource(dc.GROUP, dc.VERSION, dm.KIND, dm.PLURAL)
PodMonitorResource = create_namespaced_resource("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors")
PrometheusRuleResource = create_namespaced_resource(
    "monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules"
)

KINDS: dict[str, Any] = {
    "StatefulSet": StatefulSet,
    "Service": Service,
    "PodDisruptionBudget": PodDisruptionBudget,
    "HorizontalPodAutoscaler": HorizontalPodAutoscaler,
    "Secret": Secret,
    "Pod": Pod,
    # DorisMonitor's children (reconcile/monitor.py)
    "ConfigMap": ConfigMap,
    "Deployment": Deployment,
    "ServiceAccount": ServiceAccount,
    "Role": Role,
    "RoleBinding": RoleBinding,
    "PodMonitor": PodMonitorResource,
    "PrometheusRule": PrometheusRuleResource,
    dm.KIND: DorisMonitorResource,
    dc.KIND: DorisClusterResource,
}


def register_kind(kind: str, resource: Any) -> None:
    """Let the executor apply, read and delete another kind (a lightkube resource class), e.g. a Job
    or a ServiceMonitor made by another custom resource's reconcile."""
    KINDS.setdefault(kind, resource)


def _count(verb: str, kind: str) -> None:
    API_REQUESTS.labels(verb=verb, kind=kind).inc()


class NotLeading(Exception):
    """A write was refused: this replica's leadership can't be vouched for any more."""


class Fence:
    """Whether this process may write.  Without leader election it always may; with it, only until the
    deadline leader election last granted (monotonic clock), which it moves forward on each renewal."""

    def __init__(self, elected: bool = False) -> None:
        self._until: float | None = None if not elected else 0.0

    def grant(self, until: float) -> None:
        self._until = until

    def revoke(self) -> None:
        self._until = 0.0

    def may_write(self) -> bool:
        return self._until is None or time.monotonic() < self._until

    def check(self, verb: str, kind: str) -> None:
        if not self.may_write():
            FENCED_WRITES.labels(verb=verb, kind=kind).inc()
            raise NotLeading(f"not the leader: {verb} {kind} refused")


def owner_uids(obj: dict[str, Any], controller: bool = False) -> set[str]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return {str(r.get("uid")) for r in refs if r.get("uid") and (r.get("controller") or not controller)}


def merge_fields(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """The union of two managedFields field sets (FieldsV1: nested maps of ``f:``/``k:``/``v:`` keys)."""
    out = dict(into)
    for key, value in other.items():
        if key in out and isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = merge_fields(out[key], value)
        elif key not in out:
            out[key] = value
    return out


def _split(fields: dict[str, Any], path: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``fields`` without the subtree at ``path`` (FieldsV1 keys, e.g. ("f:spec", "f:template")), and it."""
    if not path:
        return {}, fields
    head, rest = path[0], path[1:]
    if head not in fields or not isinstance(fields[head], dict):
        return fields, None
    remaining, taken = _split(fields[head], rest)
    out = dict(fields)
    if remaining and set(remaining) != {"."}:
        out[head] = remaining
    else:
        del out[head]
    return out, taken


def take_ownership(
    managed: list[dict[str, Any]], manager: str, keep: Iterable[tuple[str, ...]] = ()
) -> list[dict[str, Any]]:
    """managedFields after moving every other manager's fields (status and other subresources aside) to
    ``manager``'s Apply entry, except the subtrees in ``keep``: from then on, a field the operator stops
    applying is removed instead of lingering under a former owner (the official operator, kubectl)."""
    keep = list(keep)
    ours: dict[str, Any] = {}
    api_version = ""
    out: list[dict[str, Any]] = []
    for entry in managed:
        if entry.get("subresource"):
            out.append(entry)
            continue
        fields = entry.get("fieldsV1") or {}
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            ours = merge_fields(ours, fields)
            api_version = entry.get("apiVersion") or api_version
            continue
        left: dict[str, Any] = {}
        for path in keep:
            fields, kept = _split(fields, path)
            if kept is not None:
                node = left
                for key in path[:-1]:
                    node = node.setdefault(key, {})
                node[path[-1]] = kept
        ours = merge_fields(ours, fields)
        api_version = api_version or entry.get("apiVersion") or ""
        if left:
            out.append({**entry, "fieldsV1": left})
    if ours:
        out.insert(
            0,
            {
                "manager": manager,
                "operation": "Apply",
                "apiVersion": api_version,
                "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "fieldsType": "FieldsV1",
                "fieldsV1": ours,
            },
        )
    return out


@dataclass
class _Written:
    name: str
    count: int


class EventLog:
    """What :meth:`Kube.event` remembers of the Events it wrote, to aggregate them as client-go's
    EventCorrelator does: an Event repeated (same involved object, type, reason and message) patches
    the ``count`` and ``lastTimestamp`` of the one written before instead of creating another; and a
    token bucket per involved object (``burst`` Events, then one per ``refill`` seconds) so a flapping
    reason can't flood the apiserver: past it, Events are dropped (logged).  In memory, bounded (least
    recently used first out); a restart forgets it, and the next Event is created anew."""

    def __init__(
        self,
        burst: int = 25,
        refill: float = 10.0,
        size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst, self.refill, self.size, self.clock = burst, refill, size, clock
        self._written: OrderedDict[Hashable, _Written] = OrderedDict()
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self.dropped = 0

    def admit(self, involved: Hashable) -> bool:
        """Take a token of ``involved``'s bucket; False when it is empty."""
        now = self.clock()
        tokens, at = self._buckets.pop(involved, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) / self.refill)
        ok = tokens >= 1.0
        self._buckets[involved] = (tokens - 1.0 if ok else tokens, now)
        _trim(self._buckets, self.size)
        if not ok:
            self.dropped += 1
        return ok

    def written(self, key: Hashable) -> _Written | None:
        entry = self._written.get(key)
        if entry is not None:
            self._written.move_to_end(key)
        return entry

    def remember(self, key: Hashable, name: str, count: int) -> None:
        self._written[key] = _Written(name, count)
        self._written.move_to_end(key)
        _trim(self._written, self.size)

    def forget(self, key: Hashable) -> None:
        self._written.pop(key, None)


def _trim(cache: OrderedDict[Hashable, Any], size: int) -> None:
    while len(cache) > size:
        cache.popitem(last=False)


SECRET_TTL = 120.0
"""Seconds a Secret read is reused (:class:`SecretCache`)."""
LOGIN_SECRET_TTL = 3600.0
"""Seconds an FE login's Secret (a DorisCluster's ``authSecret``) is reused: whoever is refused with it
forgets it at once (:meth:`Kube.secret_refused`), so what works is kept; an edit the FE doesn't refuse
(the Secret rotated before the password) is read within this."""


class SecretCache:
    """Secrets read by name, reused for ``ttl`` seconds: the operator may not list or watch Secrets, and
    every FE login (a DorisClusterAutoscaler's every 15 s, each resync's) would otherwise be a GET.  A
    Secret found missing is not kept (it is read again next time).  Whoever finds what it got refused
    (a login denied) calls :meth:`forget` and reads again, so a rotated password is used at once; other
    edits (a DorisInitializer's SQL Secret) are seen within ``ttl`` (an FE login's Secret within
    :data:`LOGIN_SECRET_TTL`).  Bounded, in memory; never logged."""

    def __init__(
        self, ttl: float = SECRET_TTL, size: int = 4096, clock: Callable[[], float] = time.monotonic
    ):
        self.ttl, self.size, self.clock = ttl, size, clock
        self._entries: OrderedDict[Hashable, tuple[float, dict[str, Any]]] = OrderedDict()

    def get(self, namespace: str, name: str, ttl: float | None = None) -> dict[str, Any] | None:
        """The kept read, if younger than ``ttl`` (default: the cache's)."""
        entry = self._entries.get((namespace, name))
        if entry is None:
            return None
        if self.clock() - entry[0] >= (self.ttl if ttl is None else ttl):
            del self._entries[(namespace, name)]
            return None
        return entry[1]

    def put(self, namespace: str, name: str, secret: dict[str, Any]) -> None:
        self._entries[(namespace, name)] = (self.clock(), secret)
        self._entries.move_to_end((namespace, name))
        _trim(self._entries, self.size)

    def forget(self, namespace: str, name: str) -> None:
        self._entries.pop((namespace, name), None)


def api_path(resource: Any, namespace: str, name: str = "", subresource: str = "") -> str:
    """The URL path of a namespaced lightkube resource class's object (or of its collection)."""
    info = resource._api_info
    group, version = info.resource.group, info.resource.version
    path = (
        f"/apis/{group}/{version}" if group else f"/api/{version}"
    ) + f"/namespaces/{namespace}/{info.plural}"
    if name:
        path += f"/{name}"
    return f"{path}/{subresource}" if subresource else path


def api_error(status: int, content: bytes) -> ApiError:
    """The apiserver's answer ``status`` (>= 400) as lightkube's :class:`ApiError`, as
    lightkube raises it: from the answer's Status object, or from its status code and text."""
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("kind") == "Status":
        return ApiError(status=Status.from_dict(data))  # type: ignore[arg-type]
    text = content[:200].decode("utf-8", "replace").strip()
    return ApiError(status=Status(code=status, status="Failure", message=text or f"HTTP {status}"))


class Direct:
    """The operator's hot calls (applies, live reads, status and annotation patches, Events) as
    HTTP/1.1 requests written straight onto :class:`~.transport.Http11Transport`, the transport under
    lightkube's client: no httpx2 URL handling, no lightkube model decoding; the answer is the JSON
    the apiserver sent.  While converging 50 clusters those two were about a fifth of the operator's
    CPU (docs/benchmarks.md, CPU).

    The requests carry the client's own credentials: the ``Authorization`` header its httpx2 auth
    flow puts on a request (none with a client certificate, which is the transport's TLS context).
    A 401 (a rotated ServiceAccount token, an expired exec credential) is sent again through httpx2,
    whose auth flow renews them, and the header is taken afresh for the next request."""

    def __init__(self, http: httpx2.AsyncClient, transport: Http11Transport) -> None:
        base = http.base_url
        self.http, self.transport = http, transport
        self.origin = (base.scheme, base.host, base.port or (443 if base.scheme == "https" else 80))
        self.prefix = base.raw_path.rstrip(b"/")
        timeout = http.timeout
        self.timeouts = {"connect": timeout.connect, "read": timeout.read, "write": timeout.write}
        self.fixed = b"Host: " + base.netloc + b"\r\nUser-Agent: doris-operator\r\n"
        self._authorization: bytes | None = None
        self._auth_known = False

    @classmethod
    def of(cls, client: Any) -> Direct | None:
        """For lightkube's AsyncClient on an :class:`~.transport.Http11Transport` (none through a
        proxy: httpx2 mounts its own transport for one); else None, and the calls go through httpx2."""
        http = getattr(getattr(client, "_client", None), "_client", None)
        if not isinstance(http, httpx2.AsyncClient):
            return None
        transport = http._transport_for_url(http.base_url)
        return cls(http, transport) if isinstance(transport, Http11Transport) else None

    async def _auth_line(self) -> bytes:
        if not self._auth_known:
            value = None
            auth = self.http.auth
            if auth is not None:
                flow = auth.async_auth_flow(httpx2.Request("GET", self.http.base_url))
                value = (await flow.__anext__()).headers.get("Authorization")
                await flow.aclose()
            self._authorization = b"Authorization: " + value.encode("latin-1") + b"\r\n" if value else None
            self._auth_known = True
        return self._authorization or b""

    async def call(
        self, method: str, path: str, query: str, body: bytes | None, content_type: str, accept: str
    ) -> tuple[int, bytes]:
        """``method`` on ``path`` (below the server's URL; ``query`` already encoded): status, body."""
        target = self.prefix + path.encode("ascii") + (b"?" + query.encode("ascii") if query else b"")
        head = b"%s %s HTTP/1.1\r\n%s%sAccept: %s\r\n" % (
            method.encode("ascii"),
            target,
            self.fixed,
            await self._auth_line(),
            accept.encode("ascii"),
        )
        if body is not None:
            head += (
                b"Content-Type: "
                + content_type.encode("ascii")
                + b"\r\nContent-Length: "
                + str(len(body)).encode("ascii")
                + b"\r\n"
            )
        status, content = await self.transport.fetch(
            self.origin, method, head + b"\r\n", body or b"", self.timeouts
        )
        if status == 401:  # credentials that changed: httpx2's auth flow renews them
            self._auth_known = False
            headers = {"Accept": accept, "Content-Type": content_type}
            url = path + (f"?{query}" if query else "")
            response = await self.http.request(method, url, content=body, headers=headers)
            status, content = response.status_code, response.content
        return status, content


class Kube:
    """A thin, counted wrapper around lightkube's AsyncClient."""

    def __init__(self, client: AsyncClient, fence: Fence | None = None) -> None:
        self.client = client
        self.fence = fence or Fence()
        self.events = EventLog()
        self.secrets = SecretCache()
        self.direct = Direct.of(client)

    async def _send(
        self,
        method: str,
        resource: Any,
        namespace: str,
        name: str = "",
        sub: str = "",
        query: str = "",
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[int, bytes]:
        """One request of the hot calls, on :class:`Direct` when the client allows it, else through
        the client's httpx2 (a proxy, or a client made elsewhere): the status and the raw answer."""
        data = None if body is None else jsoncodec.dumps(body)
        path = api_path(resource, namespace, name, sub)
        return await self._request(method, path, query, data, content_type, accept)

    async def _request(
        self,
        method: str,
        path: str,
        query: str = "",
        data: bytes | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[int, bytes]:
        if self.direct is not None:
            return await self.direct.call(method, path, query, data, content_type, accept)
        http: httpx2.AsyncClient = self.client._client._client
        headers = {"Accept": accept, "Content-Type": content_type}
        response = await http.request(
            method, path + (f"?{query}" if query else ""), content=data, headers=headers
        )
        return response.status_code, response.content

    async def _json(self, method: str, resource: Any, namespace: str, name: str = "", **kw: Any) -> Any:
        """:meth:`_send`, the answer decoded; an answer >= 400 raises :class:`ApiError`."""
        status, content = await self._send(method, resource, namespace, name, **kw)
        if status >= 400:
            raise api_error(status, content)
        return jsoncodec.loads(content) if content else None

    def _write(self, verb: str, kind: str) -> None:
        self.fence.check(verb, kind)
        _count(verb, kind)

    async def _fetch(self, resource: Any, name: str, namespace: str, counted: str) -> dict[str, Any] | None:
        """GET one object (counted as ``counted``), or None when it doesn't exist."""
        _count("get", counted)
        try:
            return await self._json("GET", resource, namespace, name)  # type: ignore[no-any-return]
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise

    async def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The live object, or None when it doesn't exist (a read past the label-selected caches)."""
        return await self.get_object(kind, name, namespace)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply; returns the stored object's metadata (see :data:`METADATA_ONLY`)."""
        kind = obj["kind"]
        self._write("apply", kind)
        meta = obj["metadata"]
        return await self._json(  # type: ignore[no-any-return]
            "PATCH",
            KINDS[kind],
            meta["namespace"],
            meta["name"],
            query=APPLY_QUERY,
            body=obj,
            content_type="application/apply-patch+yaml",
            accept=METADATA_ONLY,
        )

    async def annotate(self, kind: str, name: str, namespace: str, values: dict[str, str | None]) -> None:
        """Merge ``values`` into the object's annotations (None removes one)."""
        self._write("patch", kind)
        body = {"metadata": {"annotations": values}}
        await self._json(
            "PATCH", KINDS[kind], namespace, name, body=body, content_type=MERGE_PATCH, accept=METADATA_ONLY
        )

    async def delete(self, kind: str, name: str, namespace: str, uid: str | None = None) -> bool:
        """Delete ``name``, only if it is still the object with ``uid`` (when given): a replacement made
        since it was observed is never deleted.  False when it was gone or replaced already."""
        self._write("delete", kind)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}} if uid else None
        status, content = await self._send("DELETE", KINDS[kind], namespace, name, body=body)
        if status in (404, 409):  # 409: the uid precondition failed (a new object)
            return False
        if status >= 400:
            raise api_error(status, content)
        return True

    async def take_ownership(
        self, kind: str, name: str, namespace: str, uid: str, keep: Iterable[tuple[str, ...]] = ()
    ) -> bool:
        """Move the fields other managers own on the live object to the operator's apply (see
        :func:`take_ownership`); a JSON patch guarded by the object's uid and resourceVersion."""
        live = await self.get(kind, name, namespace)
        if live is None or live["metadata"].get("uid") != uid:
            return False
        managed = live["metadata"].get("managedFields") or []
        wanted = take_ownership(managed, FIELD_MANAGER, keep)
        if json.dumps(wanted, sort_keys=True) == json.dumps(managed, sort_keys=True):
            return True
        self._write("patch", kind)
        await self.client.patch(
            KINDS[kind],
            name,
            [
                {"op": "test", "path": "/metadata/uid", "value": uid},
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": live["metadata"]["resourceVersion"],
                },
                {"op": "replace", "path": "/metadata/managedFields", "value": wanted},
            ],
            namespace=namespace,
            patch_type=PatchType.JSON,
        )
        return True

    async def config_map(self, name: str, namespace: str) -> dict[str, str] | None:
        cm = await self._fetch(ConfigMap, name, namespace, "ConfigMap")
        return None if cm is None else dict(cm.get("data") or {})

    async def get_object(self, kind: str | Any, name: str, namespace: str) -> dict[str, Any] | None:
        """One object by name (GET, a live read), or None when it doesn't exist: ``kind`` is a name in
        :data:`KINDS` or a lightkube resource (a custom resource)."""
        resource = KINDS[kind] if isinstance(kind, str) else kind
        obj = await self._fetch(
            resource, name, namespace, kind if isinstance(kind, str) else resource.__name__
        )
        if obj is None:
            return None
        out = obj
        if isinstance(kind, str):
            out.setdefault("kind", kind)
            api = resource._api_info.resource
            out.setdefault("apiVersion", f"{api.group}/{api.version}" if api.group else api.version)
        return out

    async def secret_exists(self, name: str, namespace: str, ttl: float | None = None) -> bool:
        """Whether the Secret exists: a missing one is read again each time, one found is believed for
        ``ttl`` (:data:`SECRET_TTL`) seconds (:class:`SecretCache`)."""
        return await self.secret(name, namespace, ttl) is not None

    async def patch_status(
        self,
        name: str,
        namespace: str,
        status: dict[str, Any],
        resource: Any = None,
        *,
        kind: str | None = None,
    ) -> str | None:
        """Set the whole status (a JSON patch: nested fields no longer present go too) of a
        DorisCluster, or of another custom resource given its lightkube ``resource`` class or its
        ``kind`` (a name in :data:`KINDS`).  Returns the object's new resourceVersion (None when the
        answer has none)."""
        resource = resource or (KINDS[kind] if kind else DorisClusterResource)
        self._write("patch", f"{resource.__name__}/status")
        body = [{"op": "add", "path": "/status", "value": status}]
        answer = await self._json(
            "PATCH",
            resource,
            namespace,
            name,
            sub="status",
            body=body,
            content_type=JSON_PATCH,
            accept=METADATA_ONLY,
        )
        version = ((answer or {}).get("metadata") or {}).get("resourceVersion")
        return str(version) if version else None

    async def patch_autoscaler_status(self, name: str, namespace: str, status: dict[str, Any]) -> None:
        await self.patch_status(name, namespace, status, DorisClusterAutoscalerResource)

    async def apply_cluster_replicas(
        self, name: str, namespace: str, replicas: dict[str, int], field_manager: str
    ) -> None:
        """Server-side apply of only ``spec.<comp>Spec.replicas`` under ``field_manager`` (the
        autoscaler's own, so it owns just those fields)."""
        self._write("apply", "DorisCluster")
        body = {
            "apiVersion": dc.API_VERSION,
            "kind": dc.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {comp: {"replicas": n} for comp, n in replicas.items()},
        }
        await self.client.patch(
            DorisClusterResource,
            name,
            body,
            namespace=namespace,
            patch_type=PatchType.APPLY,
            field_manager=field_manager,
            force=True,
        )

    async def pod_metrics(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        """metrics.k8s.io PodMetrics (an aggregated API: metrics-server) of the pods in ``namespace``,
        or in every namespace (None), matching the label ``selector`` (``key``, ``key=value``): one
        GET, decoded as JSON (metrics-server answers a list whole: no pages)."""
        _count("list", "PodMetrics")
        scope = f"/namespaces/{namespace}" if namespace else ""
        path = f"/apis/metrics.k8s.io/v1beta1{scope}/pods"
        query = urllib.parse.urlencode({"labelSelector": selector})
        status, content = await self._request("GET", path, query)
        if status >= 400:
            raise api_error(status, content)
        return list(jsoncodec.loads(content).get("items") or [])

    async def list_labelled(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The objects of ``kind`` in ``namespace`` carrying all ``labels``."""
        _count("list", kind)
        return [
            o.to_dict() async for o in self.client.list(KINDS[kind], namespace=namespace, labels=dict(labels))
        ]

    async def secret_data(self, name: str, namespace: str) -> dict[str, str] | None:
        """An FE login's Secret's data (base64), or None when it doesn't exist; read at most every
        :data:`LOGIN_SECRET_TTL` seconds, and again after :meth:`secret_refused`.  Never logged."""
        secret = await self.secret(name, namespace, LOGIN_SECRET_TTL)
        return None if secret is None else dict(secret["data"])

    async def secret(self, name: str, namespace: str, ttl: float | None = None) -> dict[str, Any] | None:
        """A Secret's resourceVersion and data (base64), or None when it doesn't exist; read at most
        every ``ttl`` (:data:`SECRET_TTL`) seconds (:class:`SecretCache`).  Never logged."""
        cached = self.secrets.get(namespace, name, ttl)
        if cached is not None:
            return {"metadata": dict(cached["metadata"]), "data": dict(cached["data"])}
        _count("get", "Secret")
        try:  # rare (cached), so through lightkube
            secret = await self.client.get(Secret, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        meta = secret.metadata
        out = {
            "metadata": {"resourceVersion": meta.resourceVersion if meta else None},
            "data": dict(secret.data or {}),
        }
        self.secrets.put(namespace, name, out)
        return {"metadata": dict(out["metadata"]), "data": dict(out["data"])}

    def secret_refused(self, name: str, namespace: str) -> None:
        """What the Secret held was refused (a login denied): the next read goes to the apiserver."""
        self.secrets.forget(namespace, name)

    async def event(self, involved: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event on the DorisCluster, or on ``involved``'s kind when it names one (best
        effort: a failure is logged, never raised).  A repeat of the last such Event is aggregated
        into it, and each involved object's Events are rate-limited (:class:`EventLog`)."""
        now = dt.datetime.now(dt.UTC)
        meta = involved["metadata"]
        api_version = involved.get("apiVersion") or dc.API_VERSION
        kind = involved.get("kind") or dc.KIND
        message = message[:1024]
        obj = (meta["namespace"], api_version, kind, meta["name"], meta.get("uid"))
        key = (*obj, event_type, reason, message)
        if not self.events.admit(obj):
            log.info(
                "event %s on %s %s/%s dropped: too many events on it",
                reason,
                kind,
                meta["namespace"],
                meta["name"],
            )
            return
        prior = self.events.written(key)
        # the log tells the same story as the Events (which hold no credentials either)
        log.info("%s %s on %s %s/%s: %s", event_type, reason, kind, meta["namespace"], meta["name"], message)
        try:
            if prior is not None and await self._repeat(prior, meta["namespace"], now):
                self.events.remember(key, prior.name, prior.count + 1)
                return
            self.events.forget(key)
            stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            involved_ref = {"apiVersion": api_version, "kind": kind, "name": meta["name"]}
            involved_ref["namespace"] = meta["namespace"]
            if meta.get("uid"):
                involved_ref["uid"] = meta["uid"]
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": involved_ref,
                "type": event_type,
                "reason": reason,
                "message": message,
                "source": {"component": FIELD_MANAGER},
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "reportingComponent": FIELD_MANAGER,
            }
            self._write("create", "Event")
            created = await self._json("POST", Event, meta["namespace"], body=body, accept=METADATA_ONLY)
            name = ((created or {}).get("metadata") or {}).get("name")
            if name:
                self.events.remember(key, name, 1)
        except ApiError as err:
            if namespace_gone(err):  # the namespace is being deleted with everything in it
                log.debug("no event %s/%s: %s", reason, meta["name"], err.status.message)
                return
            log.warning("could not record event %s/%s: %s", reason, meta["name"], err.status.message)

    async def _repeat(self, prior: _Written, namespace: str, now: dt.datetime) -> bool:
        """Count one more occurrence on the Event written before; False when it is gone (expired)."""
        self._write("patch", "Event")
        body = {"count": prior.count + 1, "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            await self._json(
                "PATCH",
                Event,
                namespace,
                prior.name,
                body=body,
                content_type=MERGE_PATCH,
                accept=METADATA_ONLY,
            )
        except ApiError as err:
            if err.status.code == 404:
                return False
            raise
        return True


def namespace_gone(err: ApiError) -> bool:
    """True for the apiserver's answers about a namespace that is being deleted or is gone: a write
    there can't succeed, and the objects in it are going too (not an RBAC refusal)."""
    message = (err.status.message or "") if err.status else ""
    if err.status.code == 403:
        return "because it is being terminated" in message
    return err.status.code == 404 and message.startswith("namespaces ")
