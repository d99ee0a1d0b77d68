"""Play the official Doris images' part for the pods of one DorisCluster on a live Kubernetes cluster.

In Kubernetes, ``fe_entrypoint.sh``, ``be_entrypoint.sh`` and ``broker_entrypoint.sh`` register each pod
with the FE master and start the process, whose heartbeats keep it alive. :class:`ImageDriver` watches
the pods labelled ``app.doris.cluster=<name>`` (list, then watch from that resourceVersion; list again
after an error) and does the same to a :class:`~doris_sim.model.SimCluster`, whose FE it serves
over MySQL on 127.0.0.1 in place of ``{cluster}-fe-service:9030``:

* FE pod 0 finding no live master bootstraps the cluster: the SimCluster's first master is
  ``{cluster}-fe-0`` (moved to the pod's ``edit-log-port`` if that is not 9010).
* Every other pod runs its image's steps once per container start, waiting for a live master first:
  FE ``ADD FOLLOWER`` (ordinal < ``ELECT_NUMBER``) or ``ADD OBSERVER``; BE/CN ``ADD BACKEND`` (a new BE
  holds ``tablets_per_be`` tablets, a CN reports the computation role) or, when registered already,
  ``MODIFY BACKEND ... SET ("disable_query" = "false","disable_load"="false")``; broker
  ``ADD BROKER broker001`` unless registered. A registered FE starts at once (its doris-meta holds
  its role).
* A node is alive while its pod's containers are ready (readiness gates aside) and it is not being
  deleted. Deleting a pod never unregisters it.
* The FE server answers as the master while it is alive, else as the lowest alive FE (which cannot
  forward ALTER SYSTEM), as the Service would route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.core_v1 import Pod

from .fe import Clock, SimCluster, SimFeServer, SimSqlError

log = logging.getLogger(__name__)

Component = Literal["fe", "be", "cn", "broker"]
COMPONENTS: tuple[Component, ...] = ("fe", "be", "cn", "broker")
# What the images and the official operator's pods agree on (doris-sql-and-images.md §3): the pod label
# naming the component and the one naming the cluster.
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_CLUSTER = "app.doris.cluster"
DEFAULT_ELECT_NUMBER = 3
"""fe_entrypoint.sh's default when ``ELECT_NUMBER`` is unset."""

BROKER_NAME = "broker001"
"""The name broker_entrypoint.sh registers every broker under."""

# The container port each component registers with, by name, and Doris's default for it
# (fe.conf edit_log_port, be.conf heartbeat_service_port, apache_hdfs_broker.conf broker_ipc_port).
_REGISTERED_PORT: dict[Component, tuple[str, int]] = {
    "fe": ("edit-log-port", 9010),
    "be": ("heartbeat-port", 9050),
    "cn": ("heartbeat-port", 9050),
    "broker": ("broker-ipc-port", 8000),
}
_NODE_ROLE = {"be": "mix", "cn": "computation"}
# be_entrypoint.sh's settings for a BE that finds itself registered, spelled as it spells them.
_ENABLE_QUERY_AND_LOAD = '("disable_query" = "false","disable_load"="false")'


@dataclass(frozen=True)
class _Pod:
    """What the images read from their pod: identity, port, ELECT_NUMBER; plus its readiness."""

    name: str
    comp: Component
    ordinal: int
    address: tuple[str, int]  # `hostname -f` and the port the node registers with
    elect_number: int
    start: str  # changes with every container start: pod uid and restart count
    ready: bool

    @classmethod
    def parse(cls, pod: Pod) -> _Pod | None:
        """None for a pod that is not an FE, BE, CN or broker of a StatefulSet."""
        meta, spec, status = pod.metadata, pod.spec, pod.status
        if meta is None or spec is None or not meta.name:
            return None
        label = (meta.labels or {}).get(LABEL_COMPONENT)
        comp = next((c for c in COMPONENTS if c == label), None)
        base, _, ordinal = meta.name.rpartition("-")
        if comp is None or not base or not ordinal.isdigit():
            return None
        container = next((c for c in spec.containers if c.name == comp), spec.containers[0])
        port_name, default_port = _REGISTERED_PORT[comp]
        port = next((p.containerPort for p in container.ports or [] if p.name == port_name), default_port)
        env = {e.name: e.value for e in container.env or [] if e.value is not None}
        elect = env.get("ELECT_NUMBER", "")
        hostname = spec.hostname or meta.name
        host = (
            f"{hostname}.{spec.subdomain}.{meta.namespace}.svc.cluster.local" if spec.subdomain else hostname
        )
        statuses = (status.containerStatuses if status else None) or []
        restarts = next((s.restartCount for s in statuses if s.name == container.name), 0)
        conditions = {c.type: c.status for c in (status.conditions if status else None) or []}
        # The process runs once its containers are ready; the pod's Ready may also wait on readiness
        # gates (set by whoever watches Doris), which the process does not.
        running = conditions.get("ContainersReady", conditions.get("Ready"))
        ready = meta.deletionTimestamp is None and running == "True"
        return cls(
            name=meta.name,
            comp=comp,
            ordinal=int(ordinal),
            address=(host, port),
            elect_number=int(elect) if elect.isdigit() else DEFAULT_ELECT_NUMBER,
            start=f"{meta.uid}/{restarts}",
            ready=ready,
        )


@dataclass
class _Node:
    """A node whose image ran, as last told to the SimCluster."""

    pod: str
    comp: Component
    ordinal: int
    address: tuple[str, int]
    start: str
    alive: bool = False


class ImageDriver:
    """The images of DorisCluster ``namespace/name`` against a SimCluster (:attr:`cluster`) and its FE.

    Use :meth:`start` / :meth:`stop` (background threads; also a context manager), or await :meth:`run`
    with the FE :attr:`server` started separately. ``kubeconfig=None`` means ``$KUBECONFIG``, then the
    in-cluster service account.
    """

    def __init__(
        self,
        kubeconfig: str | Path | None,
        namespace: str,
        name: str,
        *,
        port: int = 0,
        version: str = "2.1.8",
        tablets_per_be: int = 100,
        decommission_rate: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.name = name
        self.tablets_per_be = tablets_per_be
        self.cluster = SimCluster(
            version,
            clock=clock,
            master_host=f"{name}-fe-0.{name}-fe-internal.{namespace}.svc.cluster.local",
            decommission_rate=decommission_rate,
        )
        self.server = SimFeServer(self.cluster, port=port)
        self._pods: dict[str, _Pod] = {}
        self._nodes: dict[str, _Node] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        """The FE's MySQL port on :attr:`host` (once started)."""
        return self.server.port

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Self:
        """Serve the FE and play the images in background threads; returns once the pods are listed."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self.server.start(timeout)
        synced = threading.Event()
        failures: list[BaseException] = []

        def main() -> None:
            try:
                asyncio.run(self._main(synced.set))
            except Exception as exc:  # reported to start()
                failures.append(exc)
            finally:
                synced.set()

        self._thread = threading.Thread(target=main, name=f"sim-images-{self.name}", daemon=True)
        self._thread.start()
        if not synced.wait(timeout) or failures:
            self.stop()
            raise RuntimeError("the image driver failed to start") from (failures[0] if failures else None)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is not None and loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: the driver ended already
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout)
        self._thread = None
        self.server.stop(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _main(self, on_synced: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        task = asyncio.create_task(self.run(on_synced))
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # raises a failure of the first listing

    async def run(self, on_synced: Callable[[], None] | None = None) -> None:
        """Watch the pods and play the images until cancelled; ``on_synced`` runs after the first list.

        A failure of the first list is raised; later API errors are logged and the pods listed again.
        """
        config = KubeConfig.from_file(self.kubeconfig) if self.kubeconfig else KubeConfig.from_env()
        selector: dict[str, Any] = {LABEL_CLUSTER: self.name}
        if not self._master_alive():
            self.cluster.set_frontend_alive(*self.cluster.master, False)  # no FE runs before pod 0
        async with AsyncClient(config) as client:
            while True:
                try:
                    listing = client.list(Pod, namespace=self.namespace, labels=selector)
                    parsed = [_Pod.parse(pod) async for pod in listing]
                    self._pods = {pod.name: pod for pod in parsed if pod is not None}
                    self._sync()
                    if on_synced is not None:
                        on_synced()
                        on_synced = None
                    async for event, obj in client.watch(
                        Pod,
                        namespace=self.namespace,
                        labels=selector,
                        resource_version=listing.resourceVersion,
                        server_timeout=300,
                    ):
                        pod = _Pod.parse(obj)
                        if pod is None:
                            continue
                        if event == "DELETED":
                            self._pods.pop(pod.name, None)
                        else:
                            self._pods[pod.name] = pod
                        self._sync()
                except Exception as err:  # API and transport errors
                    if on_synced is not None:
                        raise
                    log.warning("pods of %s/%s: %s; listing them again", self.namespace, self.name, err)
                    await asyncio.sleep(1)

    # -- tests ---------------------------------------------------------------------------------

    def wait_registered(self, n_fe: int, n_be: int, timeout: float = 60.0) -> None:
        """Wait until the FE server shows ``n_fe`` alive frontends and ``n_be`` alive backends (BE + CN)."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self._alive_counts()
            if counts == (n_fe, n_be):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.namespace}/{self.name}: {counts[0]} alive frontends and {counts[1]} alive "
                    f"backends after {timeout}s, expected {n_fe} and {n_be}"
                )
            time.sleep(0.1)

    def _alive_counts(self) -> tuple[int, int]:
        counts = []
        for statement in ("SHOW FRONTENDS", "SHOW BACKENDS"):
            result = self.server.run(statement)
            counts.append(sum(row["Alive"] == "true" for row in result.dicts()) if result else 0)
        return counts[0], counts[1]

    # -- the images ----------------------------------------------------------------------------

    def _sync(self) -> None:
        """Bring the SimCluster in line with the pods (called after every change; cheap)."""
        for name, gone in self._nodes.items():
            if name not in self._pods:
                self._set_alive(gone, False)
        for pod in sorted(self._pods.values(), key=lambda p: (COMPONENTS.index(p.comp), p.ordinal)):
            node = self._nodes.get(pod.name)
            if not pod.ready:
                if node is not None:
                    self._set_alive(node, False)
                continue
            if node is None or node.start != pod.start:
                if node is not None:
                    self._set_alive(node, False)  # the container restarted: its process is gone
                if not self._entrypoint(pod):
                    continue
                node = self._nodes[pod.name] = _Node(pod.name, pod.comp, pod.ordinal, pod.address, pod.start)
            self._set_alive(node, True)
        self._route()

    def _entrypoint(self, pod: _Pod) -> bool:
        """The image's registration steps; False while it has to wait (no live master, or an error)."""
        host, port = pod.address
        if pod.comp == "fe" and pod.address in self._registered("SHOW FRONTENDS", "EditLogPort"):
            return True  # doris-meta holds the FE's role: it starts without asking the master
        master = self.cluster.master
        if pod.comp == "fe" and pod.ordinal == 0 and master[0] == host and not self._master_alive():
            log.info("%s bootstraps the cluster as its first master", pod.name)
            self.cluster.move_frontend(*master, host, port)
            return True
        if not self._master_alive():
            log.debug("%s waits for a master FE", pod.name)
            return False
        target = f'"{host}:{port}"'
        try:
            if pod.comp == "fe":
                role = "FOLLOWER" if pod.ordinal < pod.elect_number else "OBSERVER"
                self._execute(pod, f"ALTER SYSTEM ADD {role} {target}")
            elif pod.comp == "broker":
                if pod.address not in self._registered("SHOW BROKER", "Port"):
                    self._execute(pod, f"ALTER SYSTEM ADD BROKER {BROKER_NAME} {target}")
            elif pod.address in self._registered("SHOW BACKENDS", "HeartbeatPort"):
                self._execute(pod, f"ALTER SYSTEM MODIFY BACKEND {target} SET {_ENABLE_QUERY_AND_LOAD}")
            else:
                self._execute(pod, f"ALTER SYSTEM ADD BACKEND {target}")
                if pod.comp == "be":
                    self.cluster.set_tablets(host, port, self.tablets_per_be)
        except SimSqlError as err:
            log.warning("%s: %s", pod.name, err.message)
            return False
        return True

    def _execute(self, pod: _Pod, sql: str) -> None:
        log.info("%s: %s", pod.name, sql)
        self.cluster.execute(sql)

    def _registered(self, statement: str, port_column: str) -> set[tuple[str, int]]:
        result = self.cluster.execute(statement)
        rows = result.dicts() if result else []
        return {(str(row["Host"]), int(row[port_column])) for row in rows}

    def _master_alive(self) -> bool:
        master = self.cluster.master
        return any(n.comp == "fe" and n.alive and n.address == master for n in self._nodes.values())

    def _set_alive(self, node: _Node, alive: bool) -> None:
        """Start or stop the node's process; one that was dropped meanwhile has nothing to tell."""
        if node.alive == alive:
            return
        node.alive = alive
        log.info("%s: %s", node.pod, "alive" if alive else "dead")
        with contextlib.suppress(KeyError):
            if node.comp == "fe":
                self.cluster.set_frontend_alive(*node.address, alive)
            elif node.comp == "broker":
                self.cluster.set_broker_alive(*node.address, alive)
            else:
                self.cluster.set_backend_alive(*node.address, alive, node_role=_NODE_ROLE[node.comp])

    def _route(self) -> None:
        """Serve as the master while it is alive, else as the first alive registered FE."""
        registered = self._registered("SHOW FRONTENDS", "EditLogPort")
        alive = sorted(
            (n for n in self._nodes.values() if n.comp == "fe" and n.alive and n.address in registered),
            key=lambda n: n.ordinal,
        )
        target = self.cluster.master
        if alive and not self._master_alive():
            target = alive[0].address
        if target != self.server.frontend:
            self.server.serve_as(target)
