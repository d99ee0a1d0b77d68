#!/usr/bin/env python3
"""Chaos benchmark: random operations against one DorisCluster, with a continuous invariant watcher.

On its own local control plane (``hack/localcluster.py``: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok on 127.0.0.1) it runs ``doris-operator run`` as a process (``tests/harness.py``'s
``Operator``) and the simulated Doris images (``doris_sim.images.ImageDriver``) for one DorisCluster
(FE 3, electionNumber 3; BE 3..6; CN 0..2), then ``--ops`` random operations from ``--seed``:

* ``scale_be`` / ``scale_cn`` / ``scale_fe`` within the bounds (FE: observers only, 3..5);
* ``image``: every component to the next Doris patch, sometimes the next minor (never skipping one);
* ``restart``: a new ``apache.doris.be/restartedAt`` annotation;
* ``conf``: a new value in the BEs' ConfigMap (``enableRestartWhenConfigChange: true``);
* ``operator_kill``: SIGKILL the operator, start it again (half of them in the middle of a change);
* ``fe_restart``: the master FE pod deleted, or the FE server unreachable for a few seconds;
* ``apiserver_restart``: kube-apiserver stopped and started again (half of them during a change).

Each operation waits until the cluster converged (DorisCluster Ready at its generation, every
StatefulSet at its replicas with every pod on its update revision and Ready, the simulated FE showing
every node alive, no backend decommissioning), bounded per type; a timeout is a failure.

A watcher thread checks all along (every ~0.2 s):

* no BE pod leaves for good (its ordinal at or above the StatefulSet's replicas, gone or terminating)
  while its backend still holds tablets or was not decommissioned (as the simulated master says);
* never two pods of one component down (missing, terminating or unready) during a rollout;
* FE quorum: alive followers > half of the followers;
* the simulator's low-water mark of healthy replicas per tablet (a continuous invariant kept by the
  simulator itself) never below 1; it is reported, with the operation that lowered it.

It prints a report, writes a JSON result and exits 1 on any violation or timeout.

    /work/main/.venv/bin/python bench/chaos.py [--seed 1] [--ops 300] [--json chaos.json]

Everything it starts (control plane, operator, image driver) is stopped before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
from lightkube import ApiError, Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import ConfigMap, Pod
from lightkube.types import PatchType

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "tests")]

import localcluster  # noqa: E402  (hack/ is not a package)
from doris_sim.images import ImageDriver  # noqa: E402
from harness import CRD, Kubectl, Operator, eventually  # noqa: E402

NAME = "chaos"
NAMESPACE = "chaos"
CONF_MAP = "chaos-be-conf"
FE_ADDRESS_ANNOTATION = "doris.apache.org/fe-address"  # reconcile.membership.FE_ADDRESS_ANNOTATION
RESTARTED_AT = "apache.doris.be/restartedAt"
CONFIG_HASH = "doris.apache.org/config-hash"
BOUNDS = {"fe": (3, 5), "be": (3, 6), "cn": (0, 2)}
SPEC_KEY = {"fe": "feSpec", "be": "beSpec", "cn": "cnSpec"}
IMAGES = {
    "fe": "selectdb/doris.fe-ubuntu",
    "be": "selectdb/doris.be-ubuntu",
    "cn": "selectdb/doris.be-ubuntu",
}
# Released Doris versions, oldest first: an image change goes to the next one (a patch, or x.y.0 of the
# next minor), never skipping a minor (doris-sql-and-images.md: upgrade rules).
VERSIONS = (
    [f"2.0.{p}" for p in range(2, 16)]
    + [f"2.1.{p}" for p in range(0, 12)]
    + [f"3.0.{p}" for p in range(0, 9)]
)
WEIGHTS = {
    "scale_be": 4,
    "scale_cn": 2,
    "scale_fe": 2,
    "image": 2,
    "restart": 2,
    "conf": 1,
    "operator_kill": 3,
    "fe_restart": 2,
    "apiserver_restart": 2,
}
TIMEOUT = {
    "scale_be": 300.0,
    "scale_cn": 180.0,
    "scale_fe": 180.0,
    "image": 600.0,
    "restart": 400.0,
    "conf": 400.0,
    "operator_kill": 400.0,
    "fe_restart": 240.0,
    "apiserver_restart": 400.0,
}
ROLLOUTS = {"image", "restart", "conf"}
DorisCluster = create_namespaced_resource("doris.selectdb.com", "v1", "DorisCluster", "dorisclusters")


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def be_conf(generation: int) -> str:
    return (
        "be_port = 9060\nwebserver_port = 8040\nheartbeat_service_port = 9050\nbrpc_port = 8060\n"
        f"# chaos generation {generation}\nmax_tablet_version_num = {2000 + generation}\n"
    )


def _ready(pod: Pod) -> bool:
    if pod.metadata is None or pod.metadata.deletionTimestamp is not None or pod.status is None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _why_down(pod: Pod | None) -> str:
    """For the report: missing, terminating, or which condition is not True."""
    if pod is None:
        return "missing"
    if pod.metadata is not None and pod.metadata.deletionTimestamp is not None:
        return "terminating"
    conditions = (pod.status.conditions if pod.status else None) or []
    off = [
        f"{c.type}={c.status}" + (f" ({c.reason})" if c.reason else "")
        for c in conditions
        if c.status != "True"
    ]
    return ", ".join(off) or "no conditions"


def _ordinal(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


# --------------------------------------------------------------------------------------------
# The invariant watcher
# --------------------------------------------------------------------------------------------


@dataclass
class Violation:
    kind: str
    detail: str
    op: int  # index of the operation running when it was seen
    at: float


@dataclass
class OpRecord:
    index: int
    kind: str
    detail: str
    started: float
    seconds: float | None = None
    timed_out: bool = False
    error: str = ""


class Watcher:
    """Checks the invariants every ``interval`` seconds in a thread, while the operations run."""

    def __init__(self, client: Client, driver: ImageDriver, interval: float = 0.2) -> None:
        self.client, self.driver, self.interval = client, driver, interval
        self.violations: list[Violation] = []
        self.counts: Counter[str] = Counter()
        self.checks = 0
        self.blind = 0  # samples skipped because the apiserver did not answer
        self.blind_since: float | None = None
        self.op = -1
        self.rollout = False
        self.most_down: dict[str, int] = defaultdict(int)  # during rollouts, per component
        self.low_water: int | None = None
        self.low_water_ops: list[tuple[int, int]] = []  # (op index, new low-water mark)
        self.min_followers_alive: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-watcher", daemon=True)

    def start(self) -> Watcher:
        self.driver.cluster.reset_lowest_seen()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._low_water()

    def _violate(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= 20:  # the first ones, with the op that was running
            self.violations.append(Violation(kind, detail, self.op, time.time()))
            log(f"VIOLATION {kind} during op {self.op}: {detail}")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._check()
                self.checks += 1
                if self.blind_since is not None:
                    log(f"watcher: apiserver back after {time.monotonic() - self.blind_since:.1f}s")
                    self.blind_since = None
            except (httpx.HTTPError, OSError, ApiError) as err:
                self.blind += 1
                if self.blind_since is None:
                    self.blind_since = time.monotonic()
                    log(f"watcher: apiserver did not answer ({type(err).__name__}); skipping samples")
                self._stop.wait(self.interval)
                continue
            except Exception as err:  # a watcher that dies silently would prove nothing
                self.blind += 1
                log(f"watcher: {type(err).__name__}: {err}")
            self._stop.wait(self.interval)

    def _low_water(self) -> None:
        low = self.driver.cluster.lowest_healthy_replicas_seen()
        if low is not None and (self.low_water is None or low < self.low_water):
            self.low_water = low
            self.low_water_ops.append((self.op, low))
            log(f"low-water mark of healthy replicas: {low} (op {self.op})")
            if low < 1:
                self._violate("replicas", f"a tablet had {low} healthy replicas")

    def _check(self) -> None:
        rollout = self.rollout
        # Pods and StatefulSets first, then the sim: a pod seen gone must have left the sim earlier.
        pods: dict[str, dict[str, Pod]] = defaultdict(dict)
        for pod in self.client.list(Pod, namespace=NAMESPACE, labels={"app.doris.cluster": NAME}):
            comp = (pod.metadata.labels or {}).get("app.kubernetes.io/component", "") if pod.metadata else ""
            if pod.metadata is not None and pod.metadata.name:
                pods[comp][pod.metadata.name] = pod
        replicas: dict[str, int] = {}
        for sts in self.client.list(StatefulSet, namespace=NAMESPACE):
            if sts.metadata is not None and sts.metadata.name and sts.spec is not None:
                comp = sts.metadata.name.rsplit("-", 1)[1]
                replicas[comp] = sts.spec.replicas if sts.spec.replicas is not None else 1
        backends = self.driver.cluster.show_backends().dicts()
        frontends = self.driver.cluster.show_frontends().dicts()
        self._low_water()

        # 1. no BE pod leaves for good holding tablets or undecommissioned
        be_pods = pods.get("be", {})
        be_replicas = replicas.get("be")
        for row in backends:
            pod_name = str(row["Host"]).split(".")[0]
            if not pod_name.startswith(f"{NAME}-be-") or be_replicas is None:
                continue
            if _ordinal(pod_name) < be_replicas:
                continue
            be_pod = be_pods.get(pod_name)
            gone = be_pod is None or (
                be_pod.metadata is not None and be_pod.metadata.deletionTimestamp is not None
            )
            if not gone:
                continue
            tablets = int(row["TabletNum"])
            decommissioned = str(row["SystemDecommissioned"]) == "true"
            if tablets > 0 or not decommissioned:
                self._violate(
                    "be_deleted",
                    f"{pod_name} gone (StatefulSet at {be_replicas}) with {tablets} tablets, "
                    f"decommissioned={decommissioned}",
                )

        # 2. never two pods of one component down in a rollout
        if rollout:
            for comp, n in replicas.items():
                mine = pods.get(comp, {})
                down = [f"{NAME}-{comp}-{i}" for i in range(n)]
                down = [p for p in down if p not in mine or not _ready(mine[p])]
                self.most_down[comp] = max(self.most_down[comp], len(down))
                if len(down) > 1:
                    why = "; ".join(f"{p}: {_why_down(mine.get(p))}" for p in sorted(down))
                    self._violate("two_down", f"{comp}: {', '.join(sorted(down))} down at once ({why})")

        # 3. FE quorum
        followers = [f for f in frontends if str(f["Role"]) == "FOLLOWER"]
        alive = sum(str(f["Alive"]) == "true" for f in followers)
        if followers:
            if self.min_followers_alive is None or alive < self.min_followers_alive:
                self.min_followers_alive = alive
            if alive <= len(followers) // 2:
                self._violate("fe_quorum", f"{alive} of {len(followers)} followers alive")


# --------------------------------------------------------------------------------------------
# The cluster under test
# --------------------------------------------------------------------------------------------


class Chaos:
    def __init__(self, args: argparse.Namespace, cluster: localcluster.LocalCluster, log_dir: Path) -> None:
        self.args = args
        self.cluster = cluster
        self.log_dir = log_dir
        self.rng = random.Random(args.seed)
        self.kubectl = Kubectl(cluster)
        self.client = Client(KubeConfig.from_file(cluster.kubeconfig), timeout=httpx.Timeout(10.0))
        self.want = {"fe": 3, "be": 3, "cn": 1}
        self.version = 0  # index in VERSIONS
        self.conf_generation = 0
        self.restarts = 0
        self.driver: ImageDriver | None = None
        self.operator: Operator | None = None
        self.watcher: Watcher | None = None
        self.ops: list[OpRecord] = []
        self.stopped = ""  # why the run ended before --ops, if it did

    # -- setup -----------------------------------------------------------------------------------

    def setup(self) -> None:
        self.kubectl("apply", "-f", str(CRD))
        eventually(
            lambda: "dorisclusters" in self.kubectl("api-resources", "--api-group=doris.selectdb.com"), 60
        )
        self.kubectl("create", "namespace", NAMESPACE)
        ephemeral = {"emptydir": True, "pv": False}[self.args.storage]
        self.driver = ImageDriver(
            self.cluster.kubeconfig,
            NAMESPACE,
            NAME,
            ephemeral_storage=ephemeral,
            tablets_per_be=self.args.tablets_per_be,
            decommission_rate=self.args.rate,
            clone_rate=self.args.rate,
            balance_rate=self.args.rate / 4,
            repair_delay=self.args.repair_delay,
        ).start()
        self.operator = Operator(
            self.cluster, self.log_dir, "--resync", str(self.args.resync), "-n", NAMESPACE
        ).start()
        self.kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": CONF_MAP},
                "data": {"be.conf": be_conf(0)},
            },
            NAMESPACE,
        )
        image = VERSIONS[self.version]
        doc: dict[str, Any] = {
            "apiVersion": "doris.selectdb.com/v1",
            "kind": "DorisCluster",
            "metadata": {
                "name": NAME,
                "annotations": {FE_ADDRESS_ANNOTATION: f"{self.driver.host}:{self.driver.port}"},
            },
            "spec": {
                "enableRestartWhenConfigChange": True,
                "feSpec": {"replicas": 3, "electionNumber": 3, "image": f"{IMAGES['fe']}:{image}"},
                "beSpec": {
                    "replicas": 3,
                    "image": f"{IMAGES['be']}:{image}",
                    "configMapInfo": {"configMapName": CONF_MAP},
                },
                "cnSpec": {"replicas": 1, "image": f"{IMAGES['cn']}:{image}"},
            },
        }
        if self.args.storage == "pv":
            doc["spec"]["beSpec"]["persistentVolumes"] = [
                {
                    "name": "be-storage",
                    "mountPath": "/opt/apache-doris/be/storage",
                    "persistentVolumeClaimSpec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ]
        self.kubectl.apply(doc, NAMESPACE)
        t0 = time.monotonic()
        self.wait_converged(lambda: True, 300)
        log(f"cluster Ready in {time.monotonic() - t0:.1f}s; {self._tablets()} tablet replicas")
        self.watcher = Watcher(self.client, self.driver).start()

    def _tablets(self) -> int:
        assert self.driver is not None
        return sum(int(b["TabletNum"]) for b in self.driver.cluster.show_backends().dicts())

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.operator is not None:
            self.operator.stop()
        if self.driver is not None:
            self.driver.stop()
        with contextlib.suppress(Exception):
            self.client.close()

    # -- convergence -----------------------------------------------------------------------------

    def converged(self) -> str:
        """'' once everything is as the spec asks, else what is still missing."""
        assert self.driver is not None
        dc: dict[str, Any] = self.client.get(DorisCluster, NAME, namespace=NAMESPACE).to_dict()  # type: ignore[no-untyped-call]
        st = dc.get("status") or {}
        if st.get("phase") != "Ready":
            return f"phase {st.get('phase')}"
        if (st.get("observedGeneration") or 0) < dc["metadata"]["generation"]:
            return "status behind the generation"
        pods = list(self.client.list(Pod, namespace=NAMESPACE, labels={"app.doris.cluster": NAME}))
        for comp, n in self.want.items():
            try:
                sts = self.client.get(StatefulSet, f"{NAME}-{comp}", namespace=NAMESPACE)
            except ApiError as err:
                if err.status.code != 404:
                    raise
                if n == 0:
                    continue
                return f"no {comp} StatefulSet"
            assert sts.metadata is not None and sts.spec is not None and sts.status is not None
            if sts.spec.replicas != n:
                return f"{comp} StatefulSet at {sts.spec.replicas}, want {n}"
            if (sts.status.observedGeneration or 0) < (sts.metadata.generation or 0):
                return f"{comp} StatefulSet status behind"
            mine = [p for p in pods if (p.metadata.labels or {}).get("app.kubernetes.io/component") == comp]  # type: ignore[union-attr]
            if len(mine) != n or not all(_ready(p) for p in mine):
                return f"{comp}: {sum(_ready(p) for p in mine)}/{len(mine)} pods Ready, want {n}"
            revision = sts.status.updateRevision
            if any((p.metadata.labels or {}).get("controller-revision-hash") != revision for p in mine):  # type: ignore[union-attr]
                return f"{comp}: pods not on revision {revision}"
        frontends = self.driver.cluster.show_frontends().dicts()
        backends = self.driver.cluster.show_backends().dicts()
        if (
            sum(str(f["Alive"]) == "true" for f in frontends) != self.want["fe"]
            or len(frontends) != self.want["fe"]
        ):
            return f"sim: {len(frontends)} frontends"
        if len(backends) != self.want["be"] + self.want["cn"] or not all(
            str(b["Alive"]) == "true" for b in backends
        ):
            return f"sim: {len(backends)} backends, not all alive"
        if any(str(b["SystemDecommissioned"]) == "true" for b in backends):
            return "sim: a backend decommissioning"
        return ""

    def wait_converged(self, expect: Callable[[], bool], timeout: float) -> float:
        t0 = time.monotonic()
        deadline = t0 + timeout
        next_note = t0 + 60
        last = ""
        while True:
            try:
                last = "" if expect() else "the change not applied yet"
                if not last:
                    last = self.converged()
                if not last:
                    return time.monotonic() - t0
            except (httpx.HTTPError, OSError) as err:
                last = f"apiserver: {type(err).__name__}"
            except ApiError as err:
                last = f"apiserver: {err.status.code} {err.status.message}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"not converged after {timeout:.0f}s: {last}")
            if time.monotonic() > next_note:
                log(f"still waiting after {time.monotonic() - t0:.0f}s: {last}")
                next_note += 60
            time.sleep(0.3)

    # -- operations ------------------------------------------------------------------------------

    def _patch_spec(self, spec: dict[str, Any]) -> None:
        self.client.patch(DorisCluster, NAME, {"spec": spec}, namespace=NAMESPACE, patch_type=PatchType.MERGE)

    def _sts(self, comp: str) -> StatefulSet | None:
        try:
            return self.client.get(StatefulSet, f"{NAME}-{comp}", namespace=NAMESPACE)
        except ApiError as err:
            if err.status.code != 404:
                raise
            return None

    def _template_annotation(self, comp: str, key: str) -> str | None:
        sts = self._sts(comp)
        if sts is None or sts.spec is None or sts.spec.template.metadata is None:
            return None
        return (sts.spec.template.metadata.annotations or {}).get(key)

    def _pods_on_image(self, comp: str, image: str) -> bool:
        pods = self.client.list(
            Pod, namespace=NAMESPACE, labels={"app.doris.cluster": NAME, "app.kubernetes.io/component": comp}
        )
        return all(p.spec is not None and p.spec.containers[0].image == image for p in pods)

    def versions_left(self) -> bool:
        return self.version + 1 < len(VERSIONS)

    def change(self, kind: str) -> tuple[str, Callable[[], bool]]:
        """Make a change of this kind; returns its description and what shows it was applied."""
        if kind.startswith("scale_"):
            comp = kind.split("_")[1]
            lo, hi = BOUNDS[comp]
            n = self.rng.choice([r for r in range(lo, hi + 1) if r != self.want[comp]])
            old, self.want[comp] = self.want[comp], n
            self._patch_spec({SPEC_KEY[comp]: {"replicas": n}})
            return f"{comp} {old} -> {n}", lambda: True
        if kind == "image":
            if not self.versions_left():
                raise RuntimeError("no newer Doris release in VERSIONS")  # callers avoid this
            # mostly a patch; now and then the first release of the next minor
            nxt = self.version + 1
            if self.rng.random() < 0.25:
                minor = VERSIONS[self.version].rsplit(".", 1)[0]
                later = [i for i in range(nxt, len(VERSIONS)) if VERSIONS[i].rsplit(".", 1)[0] != minor]
                if later:
                    nxt = later[0]
            previous, self.version = VERSIONS[self.version], nxt
            tag = VERSIONS[nxt]
            self._patch_spec({SPEC_KEY[c]: {"image": f"{IMAGES[c]}:{tag}"} for c in SPEC_KEY})
            comps = [c for c in SPEC_KEY if self.want[c] > 0]
            return f"{previous} -> {tag}", lambda: all(
                self._pods_on_image(c, f"{IMAGES[c]}:{tag}") for c in comps
            )
        if kind == "restart":
            self.restarts += 1
            value = (dt.datetime(2026, 12, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=self.restarts)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            self.client.patch(
                DorisCluster,
                NAME,
                {"metadata": {"annotations": {RESTARTED_AT: value}}},
                namespace=NAMESPACE,
                patch_type=PatchType.MERGE,
            )
            return f"{RESTARTED_AT}={value}", lambda: self._template_annotation("be", RESTARTED_AT) == value
        if kind == "conf":
            before = self._template_annotation("be", CONFIG_HASH)
            self.conf_generation += 1
            self.client.patch(
                ConfigMap,
                CONF_MAP,
                {"data": {"be.conf": be_conf(self.conf_generation)}},
                namespace=NAMESPACE,
                patch_type=PatchType.MERGE,
            )
            return (
                f"be.conf generation {self.conf_generation}",
                lambda: self._template_annotation("be", CONFIG_HASH) not in (None, before),
            )
        raise ValueError(kind)

    def disrupt(self, kind: str) -> tuple[str, Callable[[], bool]]:
        assert self.operator is not None and self.driver is not None
        detail, expect = "", lambda: True
        if kind in ("operator_kill", "apiserver_restart") and self.rng.random() < 0.5:
            during = self.rng.choice(["scale_be", "image", "restart", "scale_fe"])
            if during == "image" and not self.versions_left():
                during = "restart"  # the newest release is reached: no downgrade
            detail, expect = self.change(during)
            pause = self.rng.uniform(0.5, 6.0)
            detail = f"during {during} ({detail}) after {pause:.1f}s; "
            if self.watcher is not None:
                self.watcher.rollout = during in ROLLOUTS
            time.sleep(pause)
        if kind == "operator_kill":
            self.operator.kill(signal.SIGKILL)
            down = self.rng.uniform(0.0, 3.0)
            time.sleep(down)
            self.operator.start()
            return detail + f"SIGKILL, {down:.1f}s down", expect
        if kind == "apiserver_restart":
            down = self.rng.uniform(0.0, 3.0)
            self.cluster.restart("kube-apiserver", down=down)
            # kube-scheduler keeps a pod it was binding when the apiserver went away as "assumed" in
            # its cache ("Scheduler cache is corrupted") and never schedules it again: restart it as
            # a control-plane restart would, so the run measures the operator and not that.
            self.cluster.restart("kube-scheduler")
            return detail + f"{down:.1f}s down", expect
        if kind == "fe_restart":
            if self.rng.random() < 0.5:
                master = next(
                    (
                        str(f["Host"]).split(".")[0]
                        for f in self.driver.cluster.show_frontends().dicts()
                        if str(f["IsMaster"]) == "true"
                    ),
                    f"{NAME}-fe-0",
                )
                old = self.client.get(Pod, master, namespace=NAMESPACE)
                uid = old.metadata.uid if old.metadata is not None else None
                self.client.delete(Pod, master, namespace=NAMESPACE)

                def replaced() -> bool:
                    pod = self.client.get(Pod, master, namespace=NAMESPACE)
                    return pod.metadata is not None and pod.metadata.uid != uid and _ready(pod)

                return f"master FE pod {master} deleted", replaced
            down = self.rng.uniform(2.0, 8.0)
            self.driver.set_fault("unreachable")
            time.sleep(down)
            self.driver.set_fault(None)
            return f"FE server unreachable for {down:.1f}s", expect
        raise ValueError(kind)

    def run_op(self, index: int, kind: str) -> OpRecord:
        assert self.watcher is not None
        self.watcher.op = index
        self.watcher.rollout = kind in ROLLOUTS
        rec = OpRecord(index, kind, "", time.time())
        t0 = time.monotonic()
        try:
            if kind in ("operator_kill", "apiserver_restart", "fe_restart"):
                rec.detail, expect = self.disrupt(kind)
            else:
                rec.detail, expect = self.change(kind)
            self.wait_converged(expect, TIMEOUT[kind])
            rec.seconds = time.monotonic() - t0
        except TimeoutError as err:
            rec.timed_out = True
            rec.error = str(err)
            rec.seconds = time.monotonic() - t0
        except Exception as err:  # a step that could not even be made
            rec.error = f"{type(err).__name__}: {err}"
        finally:
            self.watcher.rollout = False
        return rec

    def run(self) -> None:
        kinds = list(WEIGHTS)
        weights = [WEIGHTS[k] for k in kinds]
        timeouts_in_a_row = 0
        deadline = time.monotonic() + self.args.budget_minutes * 60 if self.args.budget_minutes else None
        for i in range(self.args.ops):
            if deadline is not None and time.monotonic() > deadline:
                self.stopped = f"time budget of {self.args.budget_minutes:g} min used up after {i} ops"
                log(self.stopped)
                break
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "image" and not self.versions_left():
                kind = "restart"  # the newest release is reached: no downgrade
            try:
                rec = self.run_op(i, kind)
            except (KeyboardInterrupt, SystemExit) as err:  # report what ran (the op in flight is dropped)
                self.stopped = f"interrupted ({type(err).__name__}) during op {i}"
                log(self.stopped)
                break
            self.ops.append(rec)
            state = "TIMEOUT" if rec.timed_out else ("ERROR" if rec.error else "ok")
            secs = f"{rec.seconds:.1f}s" if rec.seconds is not None else "-"
            log(f"op {i:3d} {kind:17s} {state:7s} {secs:>7s}  {rec.detail} {rec.error}")
            timeouts_in_a_row = timeouts_in_a_row + 1 if rec.timed_out else 0
            if timeouts_in_a_row >= 3:
                self.stopped = "three timeouts in a row: the cluster is stuck"
                log(self.stopped)
                break


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def report(chaos: Chaos, wall: float) -> dict[str, Any]:
    w = chaos.watcher
    assert w is not None
    by_type: dict[str, list[OpRecord]] = defaultdict(list)
    for rec in chaos.ops:
        by_type[rec.kind].append(rec)
    per_type = {}
    for kind in WEIGHTS:
        recs = by_type.get(kind, [])
        ok = [r.seconds for r in recs if r.seconds is not None and not r.timed_out and not r.error]
        per_type[kind] = {
            "ops": len(recs),
            "timeouts": sum(r.timed_out for r in recs),
            "errors": sum(bool(r.error) and not r.timed_out for r in recs),
            "bound_s": TIMEOUT[kind],
            "p50_s": round(_quantile(ok, 0.5), 2) if ok else None,
            "p95_s": round(_quantile(ok, 0.95), 2) if ok else None,
            "max_s": round(max(ok), 2) if ok else None,
        }
    violations = [asdict(v) for v in w.violations]
    for v in violations:  # the operations that led there
        v["ops_before"] = [
            f"{r.index} {r.kind}: {r.detail}" for r in chaos.ops if v["op"] - 5 <= r.index <= v["op"]
        ]
    result = {
        "command": " ".join(["bench/chaos.py", *sys.argv[1:]]),
        "seed": chaos.args.seed,
        "ops_requested": chaos.args.ops,
        "ops_run": len(chaos.ops),
        "stopped_early": chaos.stopped,
        "storage": chaos.args.storage,
        "wall_seconds": round(wall, 1),
        "per_type": per_type,
        "violations_by_kind": dict(w.counts),
        "violations": violations,
        "timeouts": sum(r.timed_out for r in chaos.ops),
        "errors": sum(bool(r.error) and not r.timed_out for r in chaos.ops),
        "watcher_checks": w.checks,
        "watcher_blind_samples": w.blind,
        "most_pods_down_in_rollout": dict(w.most_down),
        "min_followers_alive": w.min_followers_alive,
        "lowest_healthy_replicas": w.low_water,
        "low_water_marks": [{"op": op, "replicas": r} for op, r in w.low_water_ops],
        "ops": [asdict(r) for r in chaos.ops],
        "settings": {
            "tablets_per_be": chaos.args.tablets_per_be,
            "rate": chaos.args.rate,
            "repair_delay": chaos.args.repair_delay,
            "resync": chaos.args.resync,
            "weights": WEIGHTS,
        },
        "load_average": os.getloadavg(),
    }
    lines = [
        f"chaos: seed {result['seed']}, {result['ops_run']}/{result['ops_requested']} ops in "
        f"{wall / 60:.1f} min, BE storage {result['storage']}",
        "",
        f"{'op':18s} {'n':>4s} {'timeouts':>8s} {'errors':>6s} {'p50 s':>7s} {'p95 s':>7s} {'max s':>7s} "
        f"{'bound':>6s}",
    ]
    for kind, t in per_type.items():

        def f(x: float | None) -> str:
            return f"{x:.1f}" if x is not None else "-"

        lines.append(
            f"{kind:18s} {t['ops']:4d} {t['timeouts']:8d} {t['errors']:6d} {f(t['p50_s']):>7s} "
            f"{f(t['p95_s']):>7s} {f(t['max_s']):>7s} {t['bound_s']:6.0f}"
        )
    if chaos.stopped:
        lines += ["", f"STOPPED EARLY: {chaos.stopped}"]
    lines += [
        "",
        f"watcher: {w.checks} checks ({w.blind} skipped while the apiserver was down)",
        f"violations: {dict(w.counts) or 'none'}",
        f"most pods of one component down in a rollout: {dict(w.most_down)}",
        f"fewest alive FE followers: {w.min_followers_alive} of 3",
        f"lowest healthy replicas per tablet (sim low-water mark): {w.low_water} "
        f"(marks, as (op, replicas): {w.low_water_ops}; the issue's target on rollouts: >= 2)",
    ]
    for v in violations[:10]:
        lines.append(f"  {v['kind']} at op {v['op']}: {v['detail']}; ops before: {v['ops_before']}")
    for r in chaos.ops:
        if r.timed_out or r.error:
            lines.append(f"  op {r.index} {r.kind} ({r.detail}): {r.error}")
    print("\n".join(lines))
    return result


def markdown(result: dict[str, Any]) -> str:
    """The figures of a JSON result as a Markdown table (``--render``), for docs/benchmarks.md."""

    def f(x: float | None) -> str:
        return f"{x:.1f}" if x is not None else "-"

    lines = [
        "| operation | ops | timeouts | errors | p50 s | p95 s | max s | bound s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, t in result["per_type"].items():
        lines.append(
            f"| `{kind}` | {t['ops']} | {t['timeouts']} | {t['errors']} | {f(t['p50_s'])} | {f(t['p95_s'])} "
            f"| {f(t['max_s'])} | {t['bound_s']:.0f} |"
        )
    total = sum(t["ops"] for t in result["per_type"].values())
    lines.append(f"| **all** | **{total}** | {result['timeouts']} | {result['errors']} | | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ops", type=int, default=300)
    p.add_argument("--storage", choices=("emptydir", "pv"), default="emptydir", help="BE storage in the sim")
    p.add_argument("--tablets-per-be", type=int, default=12)
    p.add_argument("--rate", type=float, default=20.0, help="decommission and clone rate (replicas/s)")
    p.add_argument("--repair-delay", type=float, default=5.0, help="seconds before a dead BE is repaired")
    p.add_argument("--resync", type=float, default=2.0, help="operator --resync")
    p.add_argument("--json", type=Path, default=None, help="write the result here (default: the log dir)")
    p.add_argument("--log-dir", type=Path, default=None, help="operator log (default: a temp dir)")
    p.add_argument(
        "--budget-minutes", type=float, default=0.0, help="issue no new op after this long (0: no limit)"
    )
    p.add_argument("--render", type=Path, default=None, help="print a JSON result as Markdown and exit")
    args = p.parse_args(argv)
    if args.render is not None:
        print(markdown(json.loads(args.render.read_text())), end="")
        return 0

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="chaos-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log(f"seed {args.seed}, {args.ops} ops, logs in {log_dir}; load average {os.getloadavg()}")
    localcluster.ensure_binaries()
    t0 = time.monotonic()
    # Node failures are not among the operations: a kwok node whose lease renewal is starved on a
    # loaded machine must not turn into NotReady pods (seen once at op 121, see docs/benchmarks.md)
    grace = ["--node-monitor-grace-period=600s"]
    with localcluster.LocalCluster(nodes=3, controller_manager_args=grace) as cluster:
        chaos = Chaos(args, cluster, log_dir)
        try:
            chaos.setup()
            chaos.run()
        finally:
            chaos.close()
        result = report(chaos, time.monotonic() - t0)
    out = args.json or log_dir / "chaos.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")
    failed = (
        result["violations_by_kind"] or result["timeouts"] or result["errors"] or result["ops_run"] < args.ops
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
