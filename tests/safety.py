"""Continuous invariant watchers for the data-safety tests on the local control plane: each polls, in
its own thread, Kubernetes (lightkube) and the simulated Doris (in process) for the whole test, not only
at the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.core_v1 import Pod

from doris_sim.images import ImageDriver


class _Watcher:
    interval = 0.05

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
                self.checks += 1
            except Exception as err:  # a flaky read is not a violation; keep watching
                self.last_error = err
            self._stop.wait(self.interval)

    def check(self) -> None:
        raise NotImplementedError


class BePodGuard(_Watcher):
    """Fails when a BE pod goes (deleted, terminating, or replaced) while the backend it registered still
    holds tablets or is not decommissioned.  Pods the test deletes itself are allowed by uid."""

    def __init__(self, kubeconfig: str, ns: str, driver: ImageDriver) -> None:
        super().__init__()
        self.client = Client(KubeConfig.from_file(kubeconfig))
        self.ns, self.driver = ns, driver
        self.allowed: set[str] = set()
        self.seen: dict[str, tuple[str, tuple[str, int]]] = {}
        """pod name -> (uid, registered address) of the incarnation last seen running"""
        self.gone: list[str] = []

    def check(self) -> None:
        pods = {
            p.metadata.name: p
            for p in self.client.list(Pod, namespace=self.ns, labels={"app.kubernetes.io/component": "be"})
            if p.metadata is not None and p.metadata.name
        }
        rows = {
            (str(b["Host"]), int(b["HeartbeatPort"])): b for b in self.driver.cluster.show_backends().dicts()
        }
        for name, (uid, address) in list(self.seen.items()):
            pod = pods.get(name)
            meta = pod.metadata if pod is not None else None
            if meta is not None and meta.uid == uid and meta.deletionTimestamp is None:
                continue
            del self.seen[name]  # that incarnation went
            self.gone.append(name)
            row = rows.get(address)
            if uid in self.allowed or row is None:
                continue
            if int(row["TabletNum"]) > 0 or row["SystemDecommissioned"] != "true":
                self.violations.append(
                    f"{name} went while its BE {address[0]} held {row['TabletNum']} tablets "
                    f"(SystemDecommissioned={row['SystemDecommissioned']})"
                )
        for name, pod in pods.items():
            meta = pod.metadata
            address = self.driver.registered_address(name)
            if meta is None or meta.uid is None or meta.deletionTimestamp is not None or address is None:
                continue
            if name not in self.seen or self.seen[name][0] == meta.uid:
                self.seen[name] = (meta.uid, address)


class Sampler(_Watcher):
    """Calls ``probe`` all along and keeps what it returns (with the monotonic time)."""

    def __init__(self, probe: Callable[[], Any], interval: float = 0.05) -> None:
        super().__init__()
        self.probe = probe
        self.interval = interval
        self.samples: list[tuple[float, Any]] = []

    def check(self) -> None:
        self.samples.append((time.monotonic(), self.probe()))
