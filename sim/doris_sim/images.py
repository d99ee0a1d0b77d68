"""Play the official Doris images' part for the pods of one DorisCluster on a live Kubernetes cluster.

In Kubernetes, ``fe_entrypoint.sh``, ``be_entrypoint.sh`` and ``broker_entrypoint.sh`` register each pod
with the FE master and start the process, whose heartbeats keep it alive. :class:`ImageDriver` watches
the pods labelled ``app.doris.cluster=<name>`` (list, then watch from that resourceVersion; list again
after an error) and does the same to a :class:`~doris_sim.model.SimCluster`, whose FE it serves over
MySQL on 127.0.0.1 in place of ``{cluster}-fe-service:9030`` (``../shared/reference/doris-sql-and-images.md``
§3):

* The name a node registers with is what the script computes inside the pod. FE: ``hostname -f``
  (``<hostname>.<subdomain>.<namespace>.svc.<cluster domain>``) when fe.conf has
  ``enable_fqdn_mode = true`` or lacks the key (the script appends it), else ``POD_IP``; fe.conf is read
  from the ConfigMap the pod mounts at ``/etc/doris``. BE/CN: ``hostname -i`` (the pod IP) when the
  container has ``HOST_TYPE=IP``, else ``hostname -f``. The driver option ``fqdn_mode`` forces one way
  for every component.
* FE pod 0 finding no live master bootstraps the cluster (once): the SimCluster's first master takes
  the pod's address and ``edit-log-port``.
* Every other pod runs its image's steps once per container start, waiting for a live master first:
  FE ``ADD FOLLOWER`` (ordinal < ``ELECT_NUMBER``) or ``ADD OBSERVER``; BE/CN ``ADD BACKEND``, or, when
  ``SHOW BACKENDS`` lists it already, ``MODIFY BACKEND ... SET ("disable_query" = "false","disable_load"
  ="false")``; broker ``ADD BROKER broker001`` unless registered. A registered FE starts at once (its
  doris-meta holds its role).
* Data: once every BE pod is registered and alive (at least one), and the set of BE pods has stayed
  the same for ``DATA_SETTLE`` seconds (a StatefulSet's pods show up one by one: a user creates tables
  once the cluster is up, not between two of its pods), ``tablets_per_be * BEs / replication_num``
  tablets of ``replication_num`` replicas are created, so each of those BEs holds ``tablets_per_be``
  replicas; BEs added later start empty and the balancer fills them.
* A BE whose storage is not on a PersistentVolumeClaim (no PVC mounted under
  ``/opt/apache-doris/be/storage``: emptyDir or the container's own filesystem) comes back empty in a
  new pod: its replicas are gone and the tablet scheduler re-replicates them. ``ephemeral_storage``
  forces this either way. A container restart in the same pod keeps the data.
* A node is alive while its pod's containers are ready (readiness gates aside: whoever watches Doris
  sets them, the process does not wait on them) and it is not being deleted. Deleting a pod never
  unregisters it.
* The FE server (the Service) answers as the master while it is alive, else as the lowest alive FE
  (which cannot forward ALTER SYSTEM), unless :meth:`ImageDriver.route_to` pins it to one FE pod. With
  ``serve_each_fe`` every alive FE pod also gets its own server, whose port is that FE's ``QueryPort``.
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
from lightkube.resources.core_v1 import ConfigMap, Pod

from .model import Clock, SimCluster, SimSqlError
from .server import SimFeServer

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

DATA_SETTLE = 1.0
"""Seconds the set of BE pods stays the same, every one alive, before the data set is created."""

CONFIGMAP_MOUNT_PATH = "/etc/doris"
BE_STORAGE_PREFIX = "/opt/apache-doris/be/storage"

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


def parse_conf(text: str) -> dict[str, str]:
    """``key = value`` lines of a Doris .conf file (comments and blank lines skipped)."""
    conf = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        conf[key.strip()] = value.strip()
    return conf


@dataclass(frozen=True)
class _Pod:
    """What the images read from their pod: identity, port, ELECT_NUMBER; plus its readiness."""

    name: str
    comp: Component
    ordinal: int
    fqdn: str  # `hostname -f`
    ip: str | None  # `hostname -i`, POD_IP
    port: int  # the port the node registers with
    elect_number: int
    uid: str
    start: str  # changes with every container start: pod uid and restart count
    ready: bool
    host_type_ip: bool = False  # HOST_TYPE=IP in the container (be_entrypoint.sh)
    persistent_storage: bool = False  # a PVC mounted under /opt/apache-doris/be/storage
    conf_map: str | None = None  # the ConfigMap mounted at /etc/doris

    @property
    def address(self) -> tuple[str, int]:
        """The FQDN-mode address (``hostname -f`` and port)."""
        return self.fqdn, self.port

    @classmethod
    def parse(cls, pod: Pod, cluster_domain: str = "cluster.local") -> _Pod | None:
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
        fqdn = (
            f"{hostname}.{spec.subdomain}.{meta.namespace}.svc.{cluster_domain}"
            if spec.subdomain
            else hostname
        )
        statuses = (status.containerStatuses if status else None) or []
        restarts = next((s.restartCount for s in statuses if s.name == container.name), 0)
        conditions = {c.type: c.status for c in (status.conditions if status else None) or []}
        # The process runs once its containers are ready; the pod's Ready may also wait on readiness
        # gates (set by whoever watches Doris), which the process does not.
        running = conditions.get("ContainersReady", conditions.get("Ready"))
        ready = meta.deletionTimestamp is None and running == "True"
        volumes = {v.name: v for v in spec.volumes or []}
        mounts = {m.mountPath: volumes.get(m.name) for m in container.volumeMounts or []}
        persistent = any(
            path.startswith(BE_STORAGE_PREFIX)
            and volume is not None
            and volume.persistentVolumeClaim is not None
            for path, volume in mounts.items()
        )
        conf_volume = mounts.get(CONFIGMAP_MOUNT_PATH)
        conf_map = conf_volume.configMap.name if conf_volume is not None and conf_volume.configMap else None
        return cls(
            name=meta.name,
            comp=comp,
            ordinal=int(ordinal),
            fqdn=fqdn,
            ip=(status.podIP if status else None) or None,
            port=port,
            elect_number=int(elect) if elect.isdigit() else DEFAULT_ELECT_NUMBER,
            uid=meta.uid or "",
            start=f"{meta.uid}/{restarts}",
            ready=ready,
            host_type_ip=env.get("HOST_TYPE") == "IP",
            persistent_storage=persistent,
            conf_map=conf_map,
        )


@dataclass
class _Node:
    """A node whose image ran, as last told to the SimCluster."""

    pod: str
    comp: Component
    ordinal: int
    address: tuple[str, int]
    start: str
    uid: str
    alive: bool = False


class ImageDriver:
    """The images of DorisCluster ``namespace/name`` against a SimCluster (:attr:`cluster`) and its FE.

    Use :meth:`start` / :meth:`stop` (background threads; also a context manager), or await :meth:`run`
    with the FE :attr:`server` started separately. ``kubeconfig=None`` means ``$KUBECONFIG``, then the
    in-cluster service account.

    Options: ``cluster_domain`` (the cluster's DNS domain in ``hostname -f``), ``fqdn_mode`` (None: as
    each image decides; True/False: every node registers by FQDN / by pod IP), ``ephemeral_storage``
    (None: per pod, from its volumes), ``replication_num``, ``tablets_per_be``, the tablet scheduler's
    ``decommission_rate``/``clone_rate``/``balance_rate`` (replicas per second) and ``repair_delay``
    (seconds before a dead BE's replicas are re-replicated), ``replay_lag`` (how far non-master FEs lag),
    ``master_failover`` (a majority of alive followers elects a new master when the master's pod is
    down; default off: the master stays the dead master), ``decommission_precheck`` (newer Doris refuses
    a DECOMMISSION that leaves fewer BEs than the replication number; default off: it stalls) and
    ``serve_each_fe``.
    """

    def __init__(
        self,
        kubeconfig: str | Path | None,
        namespace: str,
        name: str,
        *,
        port: int = 0,
        version: str = "2.1.8",
        cluster_domain: str = "cluster.local",
        fqdn_mode: bool | None = None,
        ephemeral_storage: bool | None = None,
        replication_num: int = 3,
        tablets_per_be: int = 100,
        decommission_rate: float = 10.0,
        clone_rate: float = 10.0,
        balance_rate: float = 2.0,
        repair_delay: float = 60.0,
        replay_lag: float = 0.0,
        master_failover: bool = False,
        decommission_precheck: bool = False,
        serve_each_fe: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.name = name
        self.cluster_domain = cluster_domain
        self.fqdn_mode = fqdn_mode
        self.ephemeral_storage = ephemeral_storage
        self.tablets_per_be = tablets_per_be
        self.serve_each_fe = serve_each_fe
        self.cluster = SimCluster(
            version,
            clock=clock,
            master_host=f"{name}-fe-0.{name}-fe-internal.{namespace}.svc.{cluster_domain}",
            decommission_rate=decommission_rate,
            replication_num=replication_num,
            clone_rate=clone_rate,
            balance_rate=balance_rate,
            repair_delay=repair_delay,
            replay_lag=replay_lag,
            master_failover=master_failover,
            decommission_precheck=decommission_precheck,
        )
        self.server = SimFeServer(self.cluster, port=port, advertise=not serve_each_fe)
        self.fe_servers: dict[str, SimFeServer] = {}
        """With ``serve_each_fe``: the server of each alive FE pod, by pod name."""
        self._pods: dict[str, _Pod] = {}
        self._nodes: dict[str, _Node] = {}
        self._fe_conf: dict[str, dict[str, str]] = {}  # ConfigMap name -> fe.conf
        self._bootstrapped = False
        self._data_loaded = tablets_per_be <= 0
        self._be_set: tuple[str, ...] = ()
        self._be_set_since = 0.0
        self._settle_timer: asyncio.TimerHandle | None = None
        self._pinned: str | None = None
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
        for server in list(self.fe_servers.values()):
            server.stop(timeout)
        self.fe_servers.clear()
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
                    parsed = [_Pod.parse(pod, self.cluster_domain) async for pod in listing]
                    self._pods = {pod.name: pod for pod in parsed if pod is not None}
                    await self._read_fe_conf(client, self._pods.values())
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
                        pod = _Pod.parse(obj, self.cluster_domain)
                        if pod is None:
                            continue
                        if event == "DELETED":
                            self._pods.pop(pod.name, None)
                        else:
                            self._pods[pod.name] = pod
                            await self._read_fe_conf(client, [pod])
                        self._sync()
                except Exception as err:  # API and transport errors
                    if on_synced is not None:
                        raise
                    log.warning("pods of %s/%s: %s; listing them again", self.namespace, self.name, err)
                    await asyncio.sleep(1)

    async def _read_fe_conf(self, client: AsyncClient, pods: Any) -> None:
        """fe.conf of the ConfigMaps FE pods mount at /etc/doris, read when a container (re)starts."""
        if self.fqdn_mode is not None:
            return
        for pod in pods:
            node = self._nodes.get(pod.name)
            if pod.comp != "fe" or pod.conf_map is None or (node is not None and node.start == pod.start):
                continue
            try:
                cm = await client.get(ConfigMap, pod.conf_map, namespace=self.namespace)
            except Exception as err:  # a missing ConfigMap: the pod would not start either
                log.debug("ConfigMap %s: %s", pod.conf_map, err)
                continue
            self._fe_conf[pod.conf_map] = parse_conf((cm.data or {}).get("fe.conf", ""))

    # -- tests ---------------------------------------------------------------------------------

    def wait_registered(self, n_fe: int, n_be: int, timeout: float = 60.0) -> None:
        """Wait until the FE server shows ``n_fe`` alive frontends and ``n_be`` alive backends (BE + CN),
        and the data set is there if it is due (every BE pod alive: it follows within ``DATA_SETTLE``)."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self._alive_counts()
            if counts == (n_fe, n_be) and not self._data_pending():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.namespace}/{self.name}: {counts[0]} alive frontends and {counts[1]} alive "
                    f"backends after {timeout}s, expected {n_fe} and {n_be}"
                )
            time.sleep(0.1)

    def route_to(self, pod: str | None) -> None:
        """Make the Service answer as the FE of ``pod`` while it is alive (None: the usual routing)."""
        self._pinned = pod
        self._call_in_loop(self._route)

    def set_fault(self, fault: str | None, pod: str | None = None) -> None:
        """A fault (``EMPTY_BACKENDS``, ``UNREACHABLE``, None) on the Service, or on one FE pod's server."""
        (self.server if pod is None else self.fe_servers[pod]).set_fault(fault)

    def fe_address(self, pod: str) -> tuple[str, int]:
        """127.0.0.1 and the port of an FE pod's own server (``serve_each_fe``)."""
        server = self.fe_servers[pod]
        return server.host, server.port

    def fe_endpoints(self) -> dict[str, tuple[str, int]]:
        """``serve_each_fe``: each alive FE's registered host (the ``Host`` of its SHOW FRONTENDS row,
        whose ``QueryPort`` is the port here) -> 127.0.0.1 and that port, for a test's resolver."""
        out = {}
        for pod, server in list(self.fe_servers.items()):
            node = self._nodes.get(pod)
            if node is not None:
                out[node.address[0]] = (server.host, server.port)
        return out

    def registered_address(self, pod: str) -> tuple[str, int] | None:
        """The host and port the pod's node registered with, or None before its image ran."""
        node = self._nodes.get(pod)
        return node.address if node is not None else None

    def _call_in_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            fn()
            return
        done = threading.Event()

        def call() -> None:
            try:
                fn()
            finally:
                done.set()

        loop.call_soon_threadsafe(call)
        done.wait(10)

    def _data_pending(self) -> bool:
        """Every BE pod is alive but the data set is not made yet (asked on the loop's thread)."""
        answer: list[bool] = []
        self._call_in_loop(lambda: answer.append(not self._data_loaded and self._all_bes_alive()))
        return bool(answer and answer[0])

    def _all_bes_alive(self) -> bool:
        be_pods = [p for p in self._pods.values() if p.comp == "be"]
        alive = [n for n in self._nodes.values() if n.comp == "be" and n.alive]
        return bool(alive) and len(alive) >= len(be_pods)

    def _alive_counts(self) -> tuple[int, int]:
        counts = []
        for statement in ("SHOW FRONTENDS", "SHOW BACKENDS"):
            result = self.server.run(statement)
            counts.append(sum(row["Alive"] == "true" for row in result.dicts()) if result else 0)
        return counts[0], counts[1]

    # -- the images ----------------------------------------------------------------------------

    def _address(self, pod: _Pod) -> tuple[str, int] | None:
        """``MYSELF`` as the pod's entrypoint computes it; None while an IP-mode pod has no IP yet."""
        if self.fqdn_mode is not None:
            by_ip = not self.fqdn_mode
        elif pod.comp == "fe":
            conf = self._fe_conf.get(pod.conf_map or "", {})
            by_ip = conf.get("enable_fqdn_mode", "true").lower() != "true"
        elif pod.comp in ("be", "cn"):
            by_ip = pod.host_type_ip
        else:
            by_ip = False
        if not by_ip:
            return pod.fqdn, pod.port
        return (pod.ip, pod.port) if pod.ip else None

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
                address = self._address(pod)
                if address is None or not self._entrypoint(pod, address):
                    continue
                wiped = (
                    node is not None
                    and node.uid != pod.uid
                    and pod.comp == "be"
                    and self._ephemeral(pod)
                    and node.address == address
                )
                node = self._nodes[pod.name] = _Node(
                    pod.name, pod.comp, pod.ordinal, address, pod.start, pod.uid
                )
                self._set_alive(node, True, wiped=wiped)
            else:
                self._set_alive(node, True)
        self._load_data()
        self._route()

    def _ephemeral(self, pod: _Pod) -> bool:
        return self.ephemeral_storage if self.ephemeral_storage is not None else not pod.persistent_storage

    def _entrypoint(self, pod: _Pod, address: tuple[str, int]) -> bool:
        """The image's registration steps; False while it has to wait (no live master, or an error)."""
        host, port = address
        if pod.comp == "fe" and address in self._registered("SHOW FRONTENDS", "EditLogPort"):
            return True  # doris-meta holds the FE's role: it starts without asking the master
        master = self.cluster.master
        if pod.comp == "fe" and pod.ordinal == 0 and not self._bootstrapped and not self._master_alive():
            log.info("%s bootstraps the cluster as its first master", pod.name)
            self.cluster.move_frontend(*master, host, port)
            self._bootstrapped = True
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
                if address not in self._registered("SHOW BROKER", "Port"):
                    self._execute(pod, f"ALTER SYSTEM ADD BROKER {BROKER_NAME} {target}")
            elif host in self._registered_hosts("SHOW BACKENDS"):  # `grep -w $MY_SELF`
                self._execute(pod, f"ALTER SYSTEM MODIFY BACKEND {target} SET {_ENABLE_QUERY_AND_LOAD}")
            else:
                self._execute(pod, f"ALTER SYSTEM ADD BACKEND {target}")
        except SimSqlError as err:
            log.warning("%s: %s", pod.name, err.message)
            return False
        return True

    def _load_data(self) -> None:
        """Create the data set once every BE pod is registered and alive."""
        if self._data_loaded:
            return
        now = time.monotonic()
        be_set = tuple(sorted(p.name for p in self._pods.values() if p.comp == "be"))
        if be_set != self._be_set:
            self._be_set, self._be_set_since = be_set, now
        if not self._all_bes_alive():
            return
        wait = self._be_set_since + DATA_SETTLE - now
        if wait > 0:
            if self._settle_timer is None and self._loop is not None:
                self._settle_timer = self._loop.call_later(wait, self._settled)
            return
        alive = [n for n in self._nodes.values() if n.comp == "be" and n.alive]
        replicas = min(self.cluster.replication_num, len(alive))
        count = self.tablets_per_be * len(alive) // replicas
        try:
            self.cluster.create_tablets(count, replicas)
        except SimSqlError as err:
            log.warning("creating %d tablets: %s", count, err.message)
            return
        log.info("created %d tablets of %d replicas on %d BEs", count, replicas, len(alive))
        self._data_loaded = True

    def _settled(self) -> None:
        self._settle_timer = None
        self._load_data()

    def _execute(self, pod: _Pod, sql: str) -> None:
        log.info("%s: %s", pod.name, sql)
        self.cluster.execute(sql)

    def _registered(self, statement: str, port_column: str) -> set[tuple[str, int]]:
        result = self.cluster.execute(statement)
        rows = result.dicts() if result else []
        return {(str(row["Host"]), int(row[port_column])) for row in rows}

    def _registered_hosts(self, statement: str) -> set[str]:
        result = self.cluster.execute(statement)
        return {str(row["Host"]) for row in (result.dicts() if result else [])}

    def _master_alive(self) -> bool:
        master = self.cluster.master
        return any(n.comp == "fe" and n.alive and n.address == master for n in self._nodes.values())

    def _set_alive(self, node: _Node, alive: bool, *, wiped: bool = False) -> None:
        """Start or stop the node's process; one that was dropped meanwhile has nothing to tell."""
        if node.alive == alive:
            return
        node.alive = alive
        log.info("%s: %s%s", node.pod, "alive" if alive else "dead", " with empty storage" if wiped else "")
        with contextlib.suppress(KeyError):
            if node.comp == "fe":
                self.cluster.set_frontend_alive(*node.address, alive)
                self._serve_fe(node, alive)
            elif node.comp == "broker":
                self.cluster.set_broker_alive(*node.address, alive)
            else:
                self.cluster.set_backend_alive(
                    *node.address, alive, node_role=_NODE_ROLE[node.comp], wiped=wiped and alive
                )

    def _serve_fe(self, node: _Node, alive: bool) -> None:
        if not self.serve_each_fe:
            return
        server = self.fe_servers.pop(node.pod, None)
        if server is not None:
            server.stop()
        if alive:
            self.fe_servers[node.pod] = SimFeServer(self.cluster, frontend=node.address).start()

    def _route(self) -> None:
        """Serve as the pinned FE or the master while alive, else as the first alive registered FE."""
        registered = self._registered("SHOW FRONTENDS", "EditLogPort")
        alive = sorted(
            (n for n in self._nodes.values() if n.comp == "fe" and n.alive and n.address in registered),
            key=lambda n: n.ordinal,
        )
        pinned = next((n for n in alive if n.pod == self._pinned), None)
        target = self.cluster.master
        if pinned is not None:
            target = pinned.address
        elif alive and not self._master_alive():
            target = alive[0].address
        if target != self.server.frontend:
            self.server.serve_as(target)
