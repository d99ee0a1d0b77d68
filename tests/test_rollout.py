"""Rolling upgrades and restarts in Doris's order, on the local control plane with the simulated FE:
one pod at a time, BE before FE, the FE master last, each BE out of queries before its pod goes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import localcluster
from doris_operator.builders import names
from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.images import ImageDriver
from harness import Kubectl, Operator, eventually, sample, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]
NAME = "doriscluster-sample"
Setup = tuple[str, ImageDriver, Operator]


@pytest.fixture
def cluster(kube_cluster: Any, kubectl: Kubectl, tmp_path: Path) -> Iterator[Setup]:
    ns = kubectl.new_namespace()
    driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME, tablets_per_be=0).start()
    op = Operator(kube_cluster, tmp_path, "--resync", "2", "-n", ns).start()
    doc = sample()
    doc["metadata"].setdefault("annotations", {})[FE_ADDRESS_ANNOTATION] = f"{driver.host}:{driver.port}"
    for comp in ("feSpec", "beSpec"):
        for key in ("requests", "limits"):
            doc["spec"][comp].pop(key, None)
        # each pod turns Ready a second after it starts, so every replacement is seen on its own
        doc["spec"][comp]["annotations"] = {localcluster.POD_READY_DELAY_ANNOTATION: "1s"}
    kubectl.apply(doc, ns)
    wait_ready(kubectl, ns)
    driver.wait_registered(3, 3)
    driver.cluster.create_tablets(90, replication_num=3)  # a BE restart never takes the last replica
    try:
        yield ns, driver, op
    finally:
        op.stop()
        driver.stop()


class Recorder:
    """Pod replacements in the order they happen, the statements the FE received, and the most pods
    ever missing or unready at once."""

    def __init__(self, kubectl: Kubectl, ns: str, driver: ImageDriver) -> None:
        self.kubectl, self.ns = kubectl, ns
        self.statements: list[tuple[float, str]] = []
        self.restarts: list[tuple[float, str]] = []
        self.most_down = 0
        original = driver.cluster._execute

        def execute(sql: str, via: Any) -> Any:
            self.statements.append((time.monotonic(), sql))
            return original(sql, via)

        driver.cluster._execute = execute  # type: ignore[method-assign]
        self._uids = self._pods()
        self._expected = set(self._uids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pods(self) -> dict[str, tuple[str, bool]]:
        out = {}
        for p in self.kubectl.items("pods", self.ns):
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])
            )
            out[p["metadata"]["name"]] = (
                p["metadata"]["uid"],
                ready and not p["metadata"].get("deletionTimestamp"),
            )
        return out

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        seen = {name: uid for name, (uid, _) in self._uids.items()}
        while not self._stop.is_set():
            pods = self._pods()
            down = [n for n in self._expected if n not in pods or not pods[n][1]]
            self.most_down = max(self.most_down, len(down))
            for name in self._expected:
                uid = pods.get(name, ("", False))[0]
                if uid != seen.get(name):
                    if seen.get(name) == self._uids[name][0]:  # the first replacement of this pod
                        self.restarts.append((time.monotonic(), name))
                    seen[name] = uid
            self._stop.wait(0.05)

    def disabled_before(self, host: str, when: float) -> bool:
        return any(
            t < when
            and "MODIFY BACKEND" in sql
            and host in sql
            and '"disable_query" = "true"' in sql.replace("'", '"')
            for t, sql in self.statements
        )


def test_image_upgrade_goes_be_first_fe_master_last_one_pod_at_a_time(
    kubectl: Kubectl, cluster: Setup
) -> None:
    ns, driver, _ = cluster
    with Recorder(kubectl, ns, driver) as rec:
        kubectl.patch(
            ns,
            '{"spec":{"feSpec":{"image":"selectdb/doris.fe-ubuntu:2.0.3"},'
            '"beSpec":{"image":"selectdb/doris.be-ubuntu:2.0.3"}}}',
        )

        def upgraded() -> bool:
            pods = kubectl.items("pods", ns)
            return len(pods) == 6 and all(
                p["spec"]["containers"][0]["image"].endswith(":2.0.3")
                and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])
                )
                for p in pods
            )

        eventually(upgraded, 180, what="every pod on the new image")
        st = wait_ready(kubectl, ns)
    order = [name for _, name in rec.restarts]
    assert order == [
        f"{NAME}-be-2",
        f"{NAME}-be-1",
        f"{NAME}-be-0",
        f"{NAME}-fe-2",
        f"{NAME}-fe-1",
        f"{NAME}-fe-0",
    ]
    assert rec.most_down == 1  # one pod at a time, across the whole cluster
    for when, pod in rec.restarts[:3]:
        host = names.pod_fqdn(NAME, "be", int(pod.rsplit("-", 1)[1]), ns)
        assert rec.disabled_before(host, when), f"{pod} restarted without disable_query first"
    backends = driver.cluster.show_backends().dicts()
    assert all('"isQueryDisabled":false' in str(b["Status"]).replace(" ", "") for b in backends), backends
    assert st["feStatus"]["ready"] == "3/3" and st["beStatus"]["ready"] == "3/3"
    reasons = [e["reason"] for e in kubectl.items("events", ns) if e["involvedObject"]["name"] == NAME]
    assert reasons.count("RollingUpdate") == 6 and "QueriesEnabled" in reasons


def test_restarted_at_annotation_rolls_only_that_component(kubectl: Kubectl, cluster: Setup) -> None:
    ns, driver, _ = cluster
    with Recorder(kubectl, ns, driver) as rec:
        kubectl("annotate", "dcr", NAME, "-n", ns, "apache.doris.be/restartedAt=2026-11-22T03:30:00Z")
        eventually(lambda: len(rec.restarts) == 3 and wait_ready(kubectl, ns, timeout=60) is not None, 120)
        time.sleep(3)
    assert sorted(name for _, name in rec.restarts) == [f"{NAME}-be-0", f"{NAME}-be-1", f"{NAME}-be-2"]
    assert rec.most_down == 1
