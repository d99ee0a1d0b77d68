"""The work loop: keys come in from watch events and a periodic resync; workers reconcile them, one
reconcile per cluster at a time, clusters in parallel."""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from lightkube import ApiError

from ..api import lenient
from ..k8s import Kube, NotLeading, namespace_gone
from ..metrics import CLUSTERS, QUEUE_DEPTH, RECONCILE_ERRORS, RECONCILE_SECONDS, RECONCILES, export_draining
from .act import AppliedMemory, EventRecorder
from .faults import any_value
from .observed import ClusterKey
from .pipeline import Context, reconcile
from .queue import WorkQueue

log = logging.getLogger(__name__)

CHILD_INDEXES = ("dc_statefulsets", "dc_services", "dc_disruption_budgets", "dc_hpas")
ERROR_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
RESYNC_BUCKETS = 10


class NodeLookup(Mapping[str, Any]):
    """The watched nodes by name, each read from the index when asked for: a reconcile looks up the
    nodes its pods run on, not every node of the cluster (thousands, on a big one)."""

    def __init__(self, index: Mapping[str, Any]) -> None:
        self.index = index

    def __getitem__(self, name: str) -> Any:
        value = any_value(self.index[name]) if name in self.index else None
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


def resync_bucket(key: ClusterKey) -> int:
    """Which tenth of the resync period ``key`` is revisited in (the same in every process)."""
    return zlib.crc32(f"{key[0]}/{key[1]}".encode()) % RESYNC_BUCKETS


class Controller:
    def __init__(self, kube: Kube, workers: int = 4, resync: float = 60.0) -> None:
        self.ctx = Context(kube, AppliedMemory(), EventRecorder(kube))
        self.queue: WorkQueue[ClusterKey] = WorkQueue(resync_slots=max(1, workers // 2))
        self.workers = workers
        self.resync = resync
        self.indexes: Mapping[str, Any] | None = None
        self.synced = asyncio.Event()
        self._failures: dict[ClusterKey, int] = {}
        self._phases: dict[ClusterKey, str] = {}

    def attach(self, indexes: Mapping[str, Any]) -> None:
        """Called once every informer has its first listing (handlers.Wiring.synced)."""
        if self.indexes is None:
            self.indexes = indexes
            if "dc_nodes" in indexes:
                nodes = indexes["dc_nodes"]
                self.ctx.nodes = lambda: NodeLookup(nodes)
            self.synced.set()

    def enqueue(self, key: ClusterKey, urgent: bool = True) -> None:
        self.queue.add(key, urgent)
        QUEUE_DEPTH.set(len(self.queue))

    def wake_node(self, node: str) -> None:
        """A node changed: reconcile every cluster with a pod on it (failover, readiness)."""
        if self.indexes is None:
            return
        pods = self.indexes["dc_pods"]
        for key in list(pods):
            if any(p.get("nodeName") == node for p in pods[key]):
                self.enqueue(key)

    def forget(self, key: ClusterKey) -> None:
        self.queue.forget(key)
        self._failures.pop(key, None)
        self._phases.pop(key, None)
        self.ctx.events.forget(*key)
        self.ctx.written.pop(key, None)
        self.ctx.rollouts.pop(key, None)
        self.ctx.waits.pop(key, None)
        self.ctx.held_created.pop(key, None)
        lenient.forget(*key)
        export_draining(*key, {})
        self._export_phases()

    async def run(self) -> None:
        await self.synced.wait()
        log.info("caches synced; starting %d workers, resync every %ss", self.workers, self.resync)
        tasks = [asyncio.create_task(self._work(), name=f"reconcile-worker-{i}") for i in range(self.workers)]
        tasks.append(asyncio.create_task(self._resync(), name="resync"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _resync(self) -> None:
        """Every cluster once per resync period, spread over it: each tenth of the period, the clusters
        of one bucket (by a hash of the key), so 500 clusters are not 500 reconciles at once."""
        tick = 0
        while True:
            await asyncio.sleep(self.resync / RESYNC_BUCKETS)
            tick = (tick + 1) % RESYNC_BUCKETS
            assert self.indexes is not None
            for key in list(self.indexes["dc_clusters"]):
                if resync_bucket(key) == tick:
                    self.enqueue(key, urgent=False)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            QUEUE_DEPTH.set(len(self.queue))
            try:
                await self.reconcile_key(key)
            finally:
                self.queue.done(key)

    async def reconcile_key(self, key: ClusterKey) -> None:
        assert self.indexes is not None
        bodies = list(self.indexes["dc_clusters"].get(key, ()))
        if not bodies:
            self.forget(key)
            return
        children = [c for name in CHILD_INDEXES for c in self.indexes[name].get(key, ())]
        pods = list(self.indexes["dc_pods"].get(key, ()))
        started = time.monotonic()
        try:
            result = await reconcile(bodies[0], children, pods, self.ctx)
        except NotLeading as err:  # leadership lapsed: leader election stops this process
            log.warning("reconcile of %s/%s stopped: %s", *key, err)
            RECONCILES.labels(result="error").inc()
            RECONCILE_ERRORS.labels(reason="NotLeading").inc()
            return
        except ApiError as err:
            deleted = err.status.code == 404 and not self.indexes["dc_clusters"].get(key)
            if not (deleted or namespace_gone(err)):
                await self._failed(key, bodies[0], err)
                return
            log.info("%s/%s was deleted during its reconcile: %s", *key, err.status.message)
            self.forget(key)
            return
        except Exception as err:  # one cluster's failure must not stop the others
            await self._failed(key, bodies[0], err)
            return
        finally:
            RECONCILE_SECONDS.observe(time.monotonic() - started)
        self._failures.pop(key, None)
        RECONCILES.labels(result="changed" if result.writes else "unchanged").inc()
        if result.phase:
            self._phases[key] = result.phase
            self._export_phases()
        if result.requeue_after is not None:
            if result.wait is not None:
                log.debug(
                    "%s/%s waits on %s (%s): next look in %.1fs",
                    *key,
                    result.wait.on,
                    result.wait.reason,
                    result.requeue_after,
                )
            self.queue.add_after(key, result.requeue_after)

    async def _failed(self, key: ClusterKey, body: Any, err: Exception) -> None:
        """One cluster's failed reconcile: retried with backoff, and reported as an Event."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = ERROR_BACKOFF[min(failures, len(ERROR_BACKOFF) - 1)]
        log.warning("reconcile of %s/%s failed (retry in %ss): %s", *key, delay, err, exc_info=err)
        RECONCILES.labels(result="error").inc()
        RECONCILE_ERRORS.labels(reason=type(err).__name__).inc()
        self.queue.add_after(key, delay)
        await self._report(body, err)

    async def _report(self, body: Any, err: Exception) -> None:
        """A reconcile that failed as a whole (the status could not be written, say): a Warning Event,
        so it is not only a log line."""
        try:
            await self.ctx.events.record(
                body, "Warning", "ReconcileError", f"reconcile failed: {type(err).__name__}: {err}"
            )
        except Exception as event_err:
            log.warning("could not record the ReconcileError event: %s", event_err)

    def _export_phases(self) -> None:
        counts: dict[str, int] = {}
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase in ("Ready", "Progressing", "Degraded", "Paused"):
            CLUSTERS.labels(phase=phase).set(counts.get(phase, 0))
