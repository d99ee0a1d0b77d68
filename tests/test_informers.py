"""informers.py against a fake API server (httpx2's MockTransport): paging, watch events, bookmarks,
410 Gone and the relist that finds what went while nothing watched, errors and backoff, and the gate
that holds every handler until every informer has its first listing.  The same code runs against the
real kube-apiserver in every cluster test (``doris-operator run``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Hashable, Mapping
from typing import Any

import httpx2
import pytest

from doris_operator.informers import Index, Informer, Informers, Kind, Watch


class FakeAPI:
    """One kind's objects, versions and event log, as the API server serves list and watch."""

    def __init__(self, kind: str = "Pod", api_version: str = "v1") -> None:
        self.kind = kind
        self.api_version = api_version
        self.version = 100
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.log: list[tuple[int, str, dict[str, Any]]] = []
        self.oldest = 0
        self.requests: list[httpx2.Request] = []
        self.fail: list[int] = []
        self.gone_as_status = False
        self.chunk = 0
        """Stream a watch's answer in pieces of this many bytes (0: all at once)."""

    def put(
        self, name: str, namespace: str = "ns", labels: dict[str, str] | None = None, **spec: Any
    ) -> None:
        self.version += 1
        key = (namespace, name)
        kind = "MODIFIED" if key in self.objects else "ADDED"
        obj = {
            "kind": self.kind,
            "apiVersion": self.api_version,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{name}",
                "labels": labels or {},
                "resourceVersion": str(self.version),
            },
            "spec": spec,
        }
        self.objects[key] = obj
        self.log.append((self.version, kind, obj))

    def delete(self, name: str, namespace: str = "ns") -> None:
        self.version += 1
        obj = self.objects.pop((namespace, name))
        self.log.append((self.version, "DELETED", obj))

    def compact(self) -> None:
        """The versions before now are no longer served to a watch."""
        self.oldest = self.version

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(0)
        self.requests.append(request)
        if self.fail:
            return httpx2.Response(self.fail.pop(0), json={"message": "boom"})
        params = request.url.params
        if params.get("watch"):
            since = int(params.get("resourceVersion") or 0)
            if since < self.oldest:
                if self.gone_as_status:
                    return httpx2.Response(410, json={"message": "too old resource version"})
                error = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
                return httpx2.Response(200, content=json.dumps(error).encode() + b"\n")
            lines = [
                json.dumps({"type": t, "object": o}, ensure_ascii=False) for v, t, o in self.log if v > since
            ]
            lines.append(
                json.dumps(
                    {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(self.version)}}}
                )
            )
            data = ("\n".join(lines) + "\n").encode()
            if self.chunk:
                return httpx2.Response(200, content=_pieces(data, self.chunk))
            return httpx2.Response(200, content=data)
        limit = int(params.get("limit") or 0) or len(self.objects)
        start = int(params.get("continue") or 0)
        keys = sorted(self.objects)[start : start + limit]
        items = [{k: v for k, v in self.objects[k].items() if k not in ("kind", "apiVersion")} for k in keys]
        meta: dict[str, str] = {"resourceVersion": str(self.version)}
        if start + limit < len(self.objects):
            meta["continue"] = str(start + limit)
        return httpx2.Response(
            200,
            json={
                "kind": f"{self.kind}List",
                "apiVersion": self.api_version,
                "metadata": meta,
                "items": items,
            },
        )


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[start : start + size]


def by_owner(obj: dict[str, Any]) -> Mapping[Hashable, Any]:
    owner = (obj["metadata"].get("labels") or {}).get("owner")
    return {(obj["metadata"]["namespace"], owner): obj["metadata"]["name"]} if owner else {}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def __call__(self, kind: str, obj: dict[str, Any]) -> None:
        self.calls.append((kind, obj["metadata"]["name"], obj))


def informer(api: FakeAPI, gate_open: bool = True, page: int = 500) -> tuple[Informer, Index, Recorder]:
    index, recorder = Index(), Recorder()
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(api.handle), base_url="https://apiserver.test")
    gate = asyncio.Event()
    if gate_open:
        gate.set()
    watch = Watch(Kind("", "v1", "pods", selector="owner"), [(index, by_owner)], recorder)
    return Informer(http, watch, "ns", gate, page=page), index, recorder


def recorded_sleeps(inf: Informer) -> list[float]:
    """The informer's backoff sleeps, recorded and not slept."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    inf.sleep = sleep
    return sleeps


def test_an_index_keeps_each_objects_entries_until_they_change_or_it_goes() -> None:
    index = Index()
    index.put(("ns", "a"), {"k1": 1, "k2": 2})
    index.put(("ns", "b"), {"k1": 3})
    assert index["k1"] == [1, 3] and index.get("k2") == [2] and len(index) == 2
    index.put(("ns", "a"), {"k3": 4})  # a's entries move
    assert sorted(index) == ["k1", "k3"] and index["k1"] == [3]
    index.put(("ns", "b"), {})  # under no key: its old entry goes (not kept from before)
    assert "k1" not in index and index.get("k1", ()) == ()
    index.drop(("ns", "a"))
    index.drop(("ns", "never"))
    assert dict(index.items()) == {}


async def test_a_paged_list_fills_the_index_with_the_kind_each_item_lacks() -> None:
    api = FakeAPI()
    for i in range(5):
        api.put(f"p{i}", labels={"owner": "c1" if i < 3 else "c2"})
    inf, index, recorder = informer(api, gate_open=False, page=2)
    await inf.relist()
    lists = [r for r in api.requests if not r.url.params.get("watch")]
    assert len(lists) == 3  # 2 + 2 + 1
    assert all(r.url.path == "/api/v1/namespaces/ns/pods" for r in lists)
    assert all(r.url.params["labelSelector"] == "owner" and r.url.params["limit"] == "2" for r in lists)
    assert sorted(index[("ns", "c1")]) == ["p0", "p1", "p2"] and sorted(index[("ns", "c2")]) == ["p3", "p4"]
    assert inf.version == str(api.version)
    assert recorder.calls == []  # the gate is closed: the indexes fill, no handler runs


async def test_watch_events_change_the_index_and_wake_the_handler() -> None:
    api = FakeAPI()
    api.put("p0", labels={"owner": "c1"})
    inf, index, recorder = informer(api)
    await inf.relist()
    recorder.calls.clear()
    api.put("p1", labels={"owner": "c1"})
    api.put("p0", labels={"owner": "c2"})  # moved to another owner
    api.delete("p1")
    await inf.follow()
    assert [(k, n) for k, n, _ in recorder.calls] == [("ADDED", "p1"), ("MODIFIED", "p0"), ("DELETED", "p1")]
    assert index[("ns", "c2")] == ["p0"] and ("ns", "c1") not in index
    watch = [r for r in api.requests if r.url.params.get("watch")][-1]
    assert watch.url.params["allowWatchBookmarks"] == "true" and watch.url.params["resourceVersion"] == "101"
    assert inf.version == str(api.version)  # the bookmark's
    await inf.follow()  # nothing new: no handler call, the version is the bookmark's
    assert len(recorder.calls) == 3


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096])
async def test_watch_events_split_across_chunks_or_several_in_one_are_each_delivered_once(chunk: int) -> None:
    api = FakeAPI()
    inf, index, recorder = informer(api)
    await inf.relist()
    api.chunk = chunk
    for i in range(4):
        api.put(f"p{i}", labels={"owner": "c1"}, text="é" * i)  # non-ASCII split mid-character too
    api.delete("p2")
    await inf.follow()
    assert [(k, n) for k, n, _ in recorder.calls] == [
        ("ADDED", "p0"),
        ("ADDED", "p1"),
        ("ADDED", "p2"),
        ("ADDED", "p3"),
        ("DELETED", "p2"),
    ]
    assert recorder.calls[3][2]["spec"] == {"text": "ééé"}
    assert sorted(index[("ns", "c1")]) == ["p0", "p1", "p3"] and inf.version == str(api.version)


@pytest.mark.parametrize("as_status", [False, True], ids=["error-event", "http-410"])
async def test_after_410_a_relist_reports_what_went_unwatched_and_only_what_changed(as_status: bool) -> None:
    api = FakeAPI()
    api.gone_as_status = as_status
    for name in ("keep", "change", "go"):
        api.put(name, labels={"owner": "c1"}, cluster="dc1")
    inf, index, recorder = informer(api)
    proceed = asyncio.Event()

    async def sleep(_: float) -> None:
        await proceed.wait()
        proceed.clear()

    inf.sleep = sleep
    runner = asyncio.create_task(inf.run())
    await asyncio.wait_for(inf.synced.wait(), timeout=5)
    for _ in range(100):  # listed, watched once, and now waiting before the next watch
        await asyncio.sleep(0.01)
    assert inf.lists == 1 and inf.watches == 1
    recorder.calls.clear()
    api.put("change", labels={"owner": "c1"}, cluster="dc1", x=1)
    api.delete("go")
    api.compact()  # the watch can't resume: its version is gone
    proceed.set()
    for _ in range(200):
        if inf.lists >= 2 and len(recorder.calls) >= 2:
            break
        await asyncio.sleep(0.01)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert inf.lists == 2
    assert [(k, n) for k, n, _ in recorder.calls] == [("MODIFIED", "change"), ("DELETED", "go")]
    gone = recorder.calls[1][2]  # what the handlers read of an object nobody saw go
    assert gone["metadata"]["labels"] == {"owner": "c1"} and gone["spec"] == {"cluster": "dc1"}
    assert sorted(index[("ns", "c1")]) == ["change", "keep"]


async def test_a_failing_list_backs_off_and_recovers() -> None:
    api = FakeAPI()
    api.put("p0", labels={"owner": "c1"})
    api.fail = [500, 403, 503]
    inf, index, _ = informer(api)
    sleeps = recorded_sleeps(inf)
    runner = asyncio.create_task(inf.run())
    await asyncio.wait_for(inf.synced.wait(), timeout=5)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert sleeps[:3] == [1.0, 2.0, 4.0]
    assert index[("ns", "c1")] == ["p0"]


async def test_no_handler_runs_until_every_informer_has_listed() -> None:
    pods, nodes = FakeAPI(), FakeAPI("Node")
    pods.put("p0", labels={"owner": "c1"})
    nodes.fail = [500]  # the second kind lists late
    nodes.put("n1", namespace="", labels={"owner": "x"})
    http = httpx2.AsyncClient(
        transport=httpx2.MockTransport(
            lambda r: nodes.handle(r) if r.url.path.endswith("/nodes") else pods.handle(r)
        ),
        base_url="https://apiserver.test",
    )
    pod_index, node_index, recorder = Index(), Index(), Recorder()
    seen_at_sync: list[tuple[int, int]] = []
    informers = Informers(
        http,
        [
            Watch(Kind("", "v1", "pods"), [(pod_index, by_owner)], recorder),
            Watch(Kind("", "v1", "nodes", namespaced=False), [(node_index, by_owner)], recorder),
        ],
        ["ns", "other"],
    )
    assert [i.path for i in informers.informers] == [
        "/api/v1/namespaces/ns/pods",
        "/api/v1/namespaces/other/pods",
        "/api/v1/nodes",
    ]
    for i in informers.informers:
        i.sleep = lambda _: asyncio.sleep(0)

    def synced() -> None:
        seen_at_sync.append((len(pod_index), len(node_index)))

    runner = asyncio.create_task(informers.run(synced))
    for _ in range(200):
        if seen_at_sync:
            break
        await asyncio.sleep(0.01)
    assert seen_at_sync == [(1, 1)] and recorder.calls == []  # both listed, nothing handled yet
    pods.put("p1", labels={"owner": "c1"})
    for _ in range(300):
        if recorder.calls:
            break
        await asyncio.sleep(0.01)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert [(k, n) for k, n, _ in recorder.calls][:1] == [("ADDED", "p1")]
    assert seen_at_sync == [(1, 1)]


async def test_a_kind_not_served_counts_as_listed_empty_and_is_listed_again_later() -> None:
    """A CRD not installed yet must not hold every other kind's handlers back; once it is, its
    objects come in."""
    api = FakeAPI()
    api.fail = [404, 404]
    inf, index, _ = informer(api)
    served: list[bool] = []
    inf.watch.served = served.append
    sleeps = recorded_sleeps(inf)
    runner = asyncio.create_task(inf.run())
    await asyncio.wait_for(inf.synced.wait(), timeout=5)
    assert len(index) == 0
    api.put("p0", labels={"owner": "c1"})
    for _ in range(200):
        if ("ns", "c1") in index:
            break
        await asyncio.sleep(0.01)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert index[("ns", "c1")] == ["p0"] and sleeps[:2] == [1.0, 2.0]
    assert served == [False, False, True]  # what a DorisMonitor reads of the Prometheus Operator's CRDs


async def test_a_dorismonitors_children_are_watched_by_its_label_and_wake_it() -> None:
    """Every kind a DorisMonitor owns is watched by its label (StatefulSets and Services on the
    clusters' children's watches, which see them too), never Secrets; a child's change or deletion
    wakes its monitor, the echo of the monitor's own apply does not, a StatefulSet's (its status)
    does."""
    from doris_operator.builders import monitor as mb
    from doris_operator.handlers import Wiring
    from doris_operator.reconcile.controller import Controller
    from doris_operator.reconcile.monitor import OWNED_KINDS, MonitorController, child_index

    class Kube:
        pass

    monitors = MonitorController(Kube())  # type: ignore[arg-type]
    woken: list[tuple[str, str]] = []
    monitors.enqueue = woken.append  # type: ignore[method-assign]
    controller = Controller(Kube())  # type: ignore[arg-type]
    wiring = Wiring(controller, None, None, monitors)  # type: ignore[arg-type]
    watches = wiring.watches()
    selectors = {w.kind.plural: w.kind.selector for w in watches}
    assert "secrets" not in selectors
    for plural in ("podmonitors", "prometheusrules", "configmaps", "serviceaccounts", "roles", "rolebindings",
                   "deployments"):  # fmt: skip
        assert selectors[plural] == mb.LABEL_MONITOR, plural
    optional = [w for w in watches if w.kind.group == "monitoring.coreos.com"]
    assert len(optional) == 2 and all(w.served is not None for w in optional)
    optional[0].served(False)  # type: ignore[misc]
    assert wiring.unserved == {"PodMonitor"}
    optional[0].served(True)  # type: ignore[misc]
    assert wiring.unserved == set()
    sts = next(w for w in watches if w.kind.plural == "statefulsets")
    assert any(i is wiring.indexes[child_index("StatefulSet")] for i, _ in sts.indexes)
    assert all(child_index(k) in wiring.indexes for k in OWNED_KINDS)

    def child(kind: str, version: str) -> dict[str, Any]:
        meta = {"name": "mon-fe", "namespace": "ns", "uid": "u1", "generation": int(version),
                "resourceVersion": version, "labels": {mb.LABEL_MONITOR: "mon"}}  # fmt: skip
        return {"kind": kind, "metadata": meta}

    monitors.ctx.memory.remember(child("PodMonitor", "1"))
    await wiring.monitor_child_event("MODIFIED", child("PodMonitor", "1"))  # the echo of our apply
    assert woken == []
    await wiring.monitor_child_event("MODIFIED", child("PodMonitor", "2"))  # someone else's edit
    await wiring.monitor_child_event("DELETED", child("PodMonitor", "1"))
    assert woken == [("ns", "mon"), ("ns", "mon")]
    monitors.ctx.memory.remember(child("StatefulSet", "1"))
    await wiring.child_event("MODIFIED", child("StatefulSet", "1"))  # the echo of the apply
    assert len(woken) == 2
    await wiring.child_event("MODIFIED", child("StatefulSet", "2"))  # its status, by its controller
    assert woken[-1] == ("ns", "mon") and len(woken) == 3


async def test_the_echo_of_a_clusters_own_write_wakes_it_not() -> None:
    """A DorisCluster's reconcile wakes on what changed, not on the watch's echo of its own writes:
    the version a child's apply or the status patch returned; the next version (another writer's) does
    wake it, and so does a deletion."""
    from doris_operator.handlers import Wiring
    from doris_operator.reconcile.act import AppliedMemory
    from doris_operator.reconcile.controller import Controller

    class Quiet:
        def cluster_changed(self, key: Any) -> None:
            pass

        def wake_cluster(self, key: Any) -> None:
            pass

        def child_changed(self, type: str, obj: Any) -> None:
            pass

    controller = Controller(None)  # type: ignore[arg-type]
    woken: list[Any] = []
    controller.enqueue = lambda key, urgent=True: woken.append(key)  # type: ignore[method-assign]
    wiring = Wiring(controller, Quiet(), None, Quiet())  # type: ignore[arg-type]
    memory: AppliedMemory = controller.ctx.memory

    def obj(version: str, uid: str = "u-svc") -> dict[str, Any]:
        labels = {"app.doris.ownerreference/name": "dc"}
        meta = {"name": "x", "namespace": "ns", "uid": uid, "resourceVersion": version, "labels": labels}
        return {"metadata": meta}

    memory.remember({"metadata": {**obj("7")["metadata"], "generation": 1}})  # the apply's answer
    await wiring.child_event("MODIFIED", obj("7"))
    assert woken == []
    await wiring.child_event("MODIFIED", obj("8"))  # someone else's edit
    await wiring.child_event("DELETED", obj("8"))
    assert woken == [("ns", "dc"), ("ns", "dc")]
    memory.wrote("u-dc", "12")  # the status patch's answer
    await wiring.cluster_event("MODIFIED", obj("12", "u-dc"))
    assert len(woken) == 2
    await wiring.cluster_event("MODIFIED", obj("13", "u-dc"))
    assert len(woken) == 3
    memory.wrote("u-dc", None)  # an answer without a version: nothing is taken for an echo
    await wiring.cluster_event("MODIFIED", obj("13", "u-dc"))
    assert len(woken) == 4


async def test_a_node_report_that_changes_nothing_read_wakes_no_cluster() -> None:
    """Kubelets report node status every few minutes (heartbeat times, images); only a change of the
    Ready condition, or the node going, wakes the clusters with a pod on it."""
    from doris_operator.handlers import Wiring

    woken: list[str] = []

    class Controller:
        def wake_node(self, name: str) -> None:
            woken.append(name)

    wiring = Wiring(Controller(), None, None, None)  # type: ignore[arg-type]

    def node(status: str, beat: str, since: str = "t0") -> dict[str, Any]:
        ready = {"type": "Ready", "status": status, "lastHeartbeatTime": beat, "lastTransitionTime": since}
        return {"metadata": {"name": "n1"}, "status": {"conditions": [ready]}}

    await wiring.node_event("MODIFIED", node("True", "h1"))  # first seen: wakes
    await wiring.node_event("MODIFIED", node("True", "h2"))  # heartbeat only
    await wiring.node_event("MODIFIED", node("True", "h3"))
    assert woken == ["n1"]
    await wiring.node_event("MODIFIED", node("Unknown", "h3", since="t1"))
    await wiring.node_event("MODIFIED", node("Unknown", "h3", since="t1"))
    await wiring.node_event("DELETED", node("Unknown", "h3", since="t1"))
    assert woken == ["n1", "n1", "n1"]


async def test_an_unserved_kind_backs_off_to_a_list_per_watch_period() -> None:
    """A CRD that stays uninstalled (the Prometheus Operator's, say) costs, once backed off, one list
    per watch period: what a watch renewal of a served kind costs."""
    from doris_operator.informers import NOT_SERVED_BACKOFF, WATCH_TIMEOUT

    api = FakeAPI()
    api.fail = [404] * 12
    inf, _, _ = informer(api)
    sleeps = recorded_sleeps(inf)
    runner = asyncio.create_task(inf.run())
    for _ in range(500):
        if len(sleeps) >= 12:
            break
        await asyncio.sleep(0.01)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert NOT_SERVED_BACKOFF == WATCH_TIMEOUT
    assert sleeps[:12] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0, 300.0]


async def test_a_clusters_status_change_wakes_its_monitors_not() -> None:
    """A DorisMonitor reads its cluster's spec (the FE followers of its rules): a status-only change
    of the DorisCluster (the same generation) does not reconcile every monitor again; a spec change,
    its creation and its deletion do."""
    from doris_operator.handlers import Wiring
    from doris_operator.reconcile.controller import Controller

    changed: list[Any] = []

    class Monitors:
        def cluster_changed(self, key: Any) -> None:
            changed.append(key)

    class Initializers:
        def wake_cluster(self, key: Any) -> None:
            pass

    controller = Controller(None)  # type: ignore[arg-type]
    controller.enqueue = lambda key, urgent=True: None  # type: ignore[method-assign]
    wiring = Wiring(controller, Initializers(), None, Monitors())  # type: ignore[arg-type]

    def dc(generation: int, version: str) -> dict[str, Any]:
        meta = {
            "name": "dc",
            "namespace": "ns",
            "uid": "u",
            "generation": generation,
            "resourceVersion": version,
        }
        return {"metadata": meta, "status": {"phase": version}}

    await wiring.cluster_event("ADDED", dc(1, "1"))
    await wiring.cluster_event("MODIFIED", dc(1, "2"))  # status only
    await wiring.cluster_event("MODIFIED", dc(1, "3"))
    assert changed == [("ns", "dc")]
    await wiring.cluster_event("MODIFIED", dc(2, "4"))  # a spec change
    await wiring.cluster_event("DELETED", dc(2, "5"))
    assert changed == [("ns", "dc")] * 3


async def test_the_echo_of_a_monitors_own_status_write_wakes_it_not() -> None:
    from doris_operator.handlers import Wiring
    from doris_operator.reconcile.monitor import MonitorController, _write_status

    class Kube:
        async def patch_status(self, name: str, namespace: str, status: Any, *, kind: str) -> str:
            return "5"

    monitors = MonitorController(Kube())  # type: ignore[arg-type]
    woken: list[tuple[str, str]] = []
    monitors.enqueue = woken.append  # type: ignore[method-assign]
    wiring = Wiring(None, None, None, monitors)  # type: ignore[arg-type]
    assert await _write_status(("ns", "mon"), "u-1", {}, {"phase": "Ready"}, monitors.ctx) == 1

    def obj(version: str) -> dict[str, Any]:
        return {"metadata": {"name": "mon", "namespace": "ns", "uid": "u-1", "resourceVersion": version}}

    await wiring.monitor_event("MODIFIED", obj("5"))  # the write's echo
    assert woken == []
    await wiring.monitor_event("MODIFIED", obj("6"))  # someone's edit
    assert woken == [("ns", "mon")]
