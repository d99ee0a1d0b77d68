"""List+watch of the objects the operator reads, into in-memory indexes.

Each watched kind is listed (in pages), then watched from the list's resourceVersion with bookmarks;
a watch that ends is resumed from the last version seen, and one the API server no longer serves (410
Gone) is replaced by a new list, in which an object that went while nothing was watching is reported as
deleted.  Each change updates the kind's indexes (an index function maps an object to the entries it
puts under some keys: the trimmed copies of reconcile/observed.py, never the raw object) and then calls
the kind's handler, which only wakes a work queue.

No handler runs before every informer has its first listing: until then the indexes are incomplete,
and a reconcile from them could mistake an object not listed yet for one that is gone.  A kind the API
server does not serve (its CRD not installed yet) counts as listed and empty, and is listed again with
backoff, up to one list per watch period.  The objects
themselves are not kept: per object only its resourceVersion and a small stub (name, namespace, labels,
``spec.cluster``) for the deletion a relist finds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2

from . import jsoncodec

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ObjId = tuple[str, str]
"""(namespace, name); the namespace is "" for a cluster-scoped object."""
IndexFn = Callable[[Obj], Mapping[Hashable, Any]]
Handler = Callable[[str, Obj], Awaitable[None]]

PAGE = 500
WATCH_TIMEOUT = 300
"""Seconds a watch request asks the API server to keep the stream open (it ends it, and we resume)."""
REQUEST_TIMEOUT = 30.0
MAX_BACKOFF = 30.0
NOT_SERVED_BACKOFF = float(WATCH_TIMEOUT)
"""The longest wait before listing a kind the API server does not serve again: an unserved kind
costs, once its retries have backed off, a request per watch period, as a served one does (a CRD
installed later is found within that)."""


class Index(Mapping[Any, list[Any]]):
    """key -> the values the objects put under it (an object may put values under several keys, or
    under none); an object's entries are replaced at each change and dropped when it goes."""

    def __init__(self) -> None:
        self._values: dict[Hashable, dict[ObjId, Any]] = {}
        self._keys: dict[ObjId, tuple[Hashable, ...]] = {}

    def put(self, obj: ObjId, entries: Mapping[Hashable, Any]) -> None:
        self.drop(obj)
        for key, value in entries.items():
            self._values.setdefault(key, {})[obj] = value
        if entries:
            self._keys[obj] = tuple(entries)

    def drop(self, obj: ObjId) -> None:
        for key in self._keys.pop(obj, ()):
            values = self._values.get(key)
            if values is not None:
                values.pop(obj, None)
                if not values:
                    del self._values[key]

    def __getitem__(self, key: Any) -> list[Any]:
        return list(self._values[key].values())

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._values))

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class Kind:
    group: str
    """"" for the core API group."""
    version: str
    plural: str
    namespaced: bool = True
    selector: str = ""
    """A label selector, as the API takes it (``key=value``, or ``key`` for "has the label")."""

    def path(self, namespace: str | None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        return f"{base}/{self.plural}"

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


@dataclass
class Watch:
    kind: Kind
    indexes: list[tuple[Index, IndexFn]] = field(default_factory=list)
    handler: Handler | None = None
    served: Callable[[bool], None] | None = None
    """Told whether the API server serves the kind: True at each listing, False at a 404 on one."""


class Gone(Exception):
    """410: the resourceVersion is older than the API server keeps; list again."""


class WatchFailed(Exception):
    pass


class NotServed(WatchFailed):
    """404 on the list: the API server does not serve the kind (a CRD not installed yet)."""


def _stub(obj: Obj) -> Obj:
    """What a relist's deletion reports of an object it no longer finds: what the handlers read."""
    meta = obj.get("metadata") or {}
    stub: Obj = {
        "kind": obj.get("kind"),
        "apiVersion": obj.get("apiVersion"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "labels") if k in meta},
    }
    cluster = (obj.get("spec") or {}).get("cluster")
    if isinstance(cluster, str):
        stub["spec"] = {"cluster": cluster}
    return stub


def _failure(response: httpx2.Response, what: str) -> Exception:
    if response.status_code == 410:
        return Gone(what)
    if response.status_code == 404:
        return NotServed(f"{what}: the API server does not serve it (is its CRD installed?)")
    try:
        message = str(response.json().get("message") or "")
    except Exception:  # not JSON
        message = ""
    return WatchFailed(f"{what}: HTTP {response.status_code} {message}".strip())


class Informer:
    """One kind in one namespace (or all): list, then watch, forever."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        watch: Watch,
        namespace: str | None,
        gate: asyncio.Event,
        page: int = PAGE,
        watch_timeout: int = WATCH_TIMEOUT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.http = http
        self.watch = watch
        self.namespace = namespace
        self.gate = gate
        self.page = page
        self.watch_timeout = watch_timeout
        self.sleep = sleep
        self.path = watch.kind.path(namespace)
        self.what = f"{watch.kind}" + (f" in {namespace}" if namespace else "")
        self.known: dict[ObjId, tuple[str, Obj]] = {}
        self.version = ""
        self.synced = asyncio.Event()
        self.lists = 0
        self.watches = 0

    def _params(self, **more: str) -> dict[str, str]:
        params = {"labelSelector": self.watch.kind.selector} if self.watch.kind.selector else {}
        params.update(more)
        return params

    async def run(self) -> None:
        backoff = 1.0
        listed = False
        while True:
            try:
                if not listed:
                    await self.relist()
                    listed = True
                    if self.watch.served is not None:
                        self.watch.served(True)
                    self.synced.set()
                started = time.monotonic()
                await self.follow()
                backoff = 1.0
                if time.monotonic() - started < 1.0:  # a stream closed at once (a proxy): not a busy loop
                    await self.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Gone:
                listed = False
                continue
            except NotServed as err:
                # none of them exists: the others' handlers need not wait for a kind nobody can create
                listed = False
                if self.watch.served is not None:
                    self.watch.served(False)
                self.synced.set()
                log.warning("%s (retry in %.0fs)", err, backoff)
                await self.sleep(backoff)
                backoff = min(backoff * 2, NOT_SERVED_BACKOFF)
            except Exception as err:  # the API server restarting, RBAC, a timeout
                log.warning("watching %s failed (retry in %.0fs): %s", self.what, backoff, err)
                await self.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def relist(self) -> None:
        self.lists += 1
        seen: set[ObjId] = set()
        params = self._params(limit=str(self.page))
        while True:
            response = await self.http.get(self.path, params=params, timeout=REQUEST_TIMEOUT)
            if response.status_code != 200:
                if response.status_code == 410 and "continue" in params:  # the paging token expired
                    params.pop("continue")
                    seen.clear()
                    continue
                raise _failure(response, f"listing {self.what}")
            data = jsoncodec.loads(response.content)
            kind = str(data.get("kind") or "")
            kind = kind[: -len("List")] if kind.endswith("List") else kind
            for item in data.get("items") or []:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", data.get("apiVersion"))
                seen.add(self._id(item))
                await self._changed(item)
            meta = data.get("metadata") or {}
            if meta.get("continue"):
                params["continue"] = str(meta["continue"])
                continue
            self.version = str(meta.get("resourceVersion") or "")
            break
        for obj in [o for o in self.known if o not in seen]:
            await self._deleted(self.known[obj][1])

    async def follow(self) -> None:
        """One watch request, from the last version seen, until the API server ends it."""
        self.watches += 1
        params = self._params(
            watch="1",
            resourceVersion=self.version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(self.watch_timeout),
        )
        timeout = httpx2.Timeout(REQUEST_TIMEOUT, read=self.watch_timeout + REQUEST_TIMEOUT)
        async with self.http.stream("GET", self.path, params=params, timeout=timeout) as response:
            if response.status_code != 200:
                await response.aread()
                raise _failure(response, f"watching {self.what}")
            # one JSON object per line, decoded from bytes: httpx2's text and line layers cost ~5% of
            # the operator's CPU while converging (docs/benchmarks.md, CPU)
            rest = b""
            async for chunk in response.aiter_bytes():
                if b"\n" not in chunk:
                    rest += chunk
                    continue
                *lines, rest = (rest + chunk if rest else chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        await self._event(jsoncodec.loads(line))
            if rest.strip():
                await self._event(jsoncodec.loads(rest))

    async def _event(self, event: Obj) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(str(obj.get("message") or ""))
            raise WatchFailed(f"watching {self.what}: {obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            await self._changed(obj)
        elif kind == "DELETED":
            await self._deleted(obj)
        if version:
            self.version = str(version)

    def _id(self, obj: Obj) -> ObjId:
        meta = obj["metadata"]
        return (str(meta.get("namespace") or ""), str(meta["name"]))

    async def _changed(self, obj: Obj) -> None:
        oid = self._id(obj)
        version = str(obj["metadata"].get("resourceVersion") or "")
        prior = self.known.get(oid)
        if prior is not None and version and prior[0] == version:
            return  # a relist finding what the watch delivered already
        for index, entries in self.watch.indexes:
            try:
                index.put(oid, entries(obj) or {})
            except Exception:  # one odd object must not stop the watch
                log.exception("indexing %s %s/%s failed", self.watch.kind, *oid)
        self.known[oid] = (version, _stub(obj))
        await self._handle("MODIFIED" if prior is not None else "ADDED", obj)

    async def _deleted(self, obj: Obj) -> None:
        oid = self._id(obj)
        for index, _ in self.watch.indexes:
            index.drop(oid)
        if self.known.pop(oid, None) is not None:
            await self._handle("DELETED", obj)

    async def _handle(self, kind: str, obj: Obj) -> None:
        if self.watch.handler is None or not self.gate.is_set():
            return
        try:
            await self.watch.handler(kind, obj)
        except Exception:
            log.exception("handling %s of %s %s failed", kind, self.watch.kind, obj["metadata"].get("name"))


class Informers:
    """Every watch, in every namespace it covers (cluster-scoped kinds once)."""

    def __init__(self, http: httpx2.AsyncClient, watches: list[Watch], namespaces: list[str]) -> None:
        self.gate = asyncio.Event()
        self.informers = [
            Informer(http, watch, namespace, self.gate)
            for watch in watches
            for namespace in (namespaces if namespaces and watch.kind.namespaced else [None])
        ]

    async def run(self, synced: Callable[[], None]) -> None:
        """Run the informers; call ``synced`` once all have their first listing, then let handlers run."""
        tasks = [asyncio.create_task(i.run(), name=f"watch {i.what}") for i in self.informers]
        first: asyncio.Future[Any] = asyncio.gather(*(i.synced.wait() for i in self.informers))
        try:
            waiting: set[asyncio.Future[Any]] = {*tasks, first}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if first in done:
                synced()
                self.gate.set()
                await asyncio.gather(*tasks)
            for task in done:
                task.result()  # an informer only ends by raising
        finally:
            first.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(first, *tasks, return_exceptions=True)
