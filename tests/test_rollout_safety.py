"""Rolling updates that lose nothing, on the local control plane with the simulated Doris: emptyDir BEs
wait for re-replication, PV-backed BEs restart with balance paused (restored, also across an operator
SIGKILL), a bad image is rolled back by editing the spec, and a BE whose queries were turned off just
before an operator SIGKILL gets them back."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import localcluster
from doris_operator.reconcile.intent import BALANCE_PAUSED, QUERIES_DISABLED
from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.images import ImageDriver
from harness import Kubectl, Operator, eventually, sample, wait_ready
from safety import Sampler
from test_rollout import Recorder

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]
NAME = "doriscluster-sample"
Setup = tuple[str, ImageDriver, Operator]
Start = Callable[..., Setup]
PV = [
    {
        "name": "be-storage",
        "persistentVolumeClaimSpec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
]


@pytest.fixture
def start(kube_cluster: Any, kubectl: Kubectl, tmp_path: Path) -> Iterator[Start]:
    running: list[tuple[ImageDriver, Operator]] = []

    def go(be_pv: bool = False, **options: Any) -> Setup:
        ns = kubectl.new_namespace()
        driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME, **{"tablets_per_be": 30, **options}).start()
        op = Operator(kube_cluster, tmp_path, "--resync", "2", "-n", ns).start()
        running.append((driver, op))
        doc = sample()
        doc["metadata"].setdefault("annotations", {})[FE_ADDRESS_ANNOTATION] = f"{driver.host}:{driver.port}"
        for comp in ("feSpec", "beSpec"):
            for key in ("requests", "limits"):
                doc["spec"][comp].pop(key, None)
            doc["spec"][comp]["annotations"] = {localcluster.POD_READY_DELAY_ANNOTATION: "1s"}
        if be_pv:
            doc["spec"]["beSpec"]["persistentVolumes"] = PV
        kubectl.apply(doc, ns)
        wait_ready(kubectl, ns)
        driver.wait_registered(3, 3)
        eventually(lambda: driver.cluster.min_healthy_replicas() == 3, 30, what="the data created")
        return ns, driver, op

    yield go
    for driver, op in running:
        op.stop()
        driver.stop()


BE_IMAGE = '{"spec":{"beSpec":{"image":"selectdb/doris.be-ubuntu:%s"}}}'


def be_images(kubectl: Kubectl, ns: str) -> list[str]:
    return [
        p["spec"]["containers"][0]["image"]
        for p in kubectl.items("pods", ns, "app.kubernetes.io/component=be")
    ]


def all_ready_on(kubectl: Kubectl, ns: str, tag: str) -> bool:
    pods = kubectl.items("pods", ns, "app.kubernetes.io/component=be")
    return len(pods) == 3 and all(
        p["spec"]["containers"][0]["image"].endswith(f":{tag}")
        and not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        for p in pods
    )


def test_emptydir_image_change_waits_for_rereplication(kubectl: Kubectl, start: Start) -> None:
    ns, driver, _ = start(clone_rate=3.0)  # 30 replicas take ~10 s to clone back
    driver.cluster.reset_lowest_seen()
    health = Sampler(lambda: sum(s == "HEALTHY" for s in driver.cluster.tablet_states().values()), 0.1)
    with Recorder(kubectl, ns, driver) as rec, health:
        kubectl.patch(ns, BE_IMAGE % "2.0.3")
        eventually(lambda: all_ready_on(kubectl, ns, "2.0.3"), 240, what="every BE on the new image")
        wait_ready(kubectl, ns, timeout=120)
    assert [name for _, name in rec.restarts] == [f"{NAME}-be-2", f"{NAME}-be-1", f"{NAME}-be-0"]
    lowest = driver.cluster.lowest_healthy_replicas_seen()
    assert lowest is not None and lowest >= 2, f"a tablet was down to {lowest} healthy replicas"
    total = len(driver.cluster.tablet_states())
    for _, pod in rec.restarts[1:]:  # the next BE went only once every tablet was healthy again
        host = str(driver.registered_address(pod)[0])  # type: ignore[index]
        when = next(
            t for t, sql in rec.statements if "MODIFY BACKEND" in sql and host in sql and "true" in sql
        )
        before = [n for t, n in health.samples if t < when]
        after = [n for t, n in health.samples if t >= when][:1]
        # the sampler runs every 0.1 s and can lag on a loaded machine: the sample just before the
        # statement or the one just after it (before the pod has gone) shows what the gate saw
        assert before and max(before[-1], *after) == total, (
            f"{pod} restarted with {before[-1:]} (then {after}) of {total} tablets healthy"
        )
    reasons = [
        c.get("reason")
        for c in (kubectl.json("dcr", NAME, "-n", ns).get("status") or {}).get("conditions", [])
    ]
    assert "Degraded" not in reasons


def test_pv_backed_bes_restart_with_balance_paused_restored_across_a_sigkill(
    kubectl: Kubectl, start: Start
) -> None:
    ns, driver, op = start(be_pv=True)
    config = driver.cluster.frontend_config

    def probe() -> tuple[bool, str, str]:
        dead = any(b["Alive"] != "true" for b in driver.cluster.show_backends().dicts())
        return dead, config("disable_balance"), config("disable_colocate_balance")

    with Sampler(probe) as watch, Recorder(kubectl, ns, driver) as rec:
        kubectl.patch(ns, BE_IMAGE % "2.0.3")
        eventually(lambda: len(rec.restarts) >= 1, 60, what="the first BE restarted")
        sts = kubectl.json("sts", f"{NAME}-be", "-n", ns)
        assert (
            sts["metadata"]["annotations"].get(BALANCE_PAUSED) == "disable_balance,disable_colocate_balance"
        )
        op.kill(signal.SIGKILL)  # with balance paused: only the annotation remembers it
        op.start()
        eventually(lambda: all_ready_on(kubectl, ns, "2.0.3"), 240, what="every BE on the new image")
        eventually(lambda: config("disable_balance") == "false", 60, what="balance restored")
        wait_ready(kubectl, ns)
    assert config("disable_colocate_balance") == "false"
    assert BALANCE_PAUSED not in (
        kubectl.json("sts", f"{NAME}-be", "-n", ns)["metadata"].get("annotations") or {}
    )
    down = [s for _, s in watch.samples if s[0]]
    assert down, "no BE was ever seen down"
    assert all(s[1] == "true" and s[2] == "true" for s in down), "a BE was down with balance running"
    assert driver.cluster.lowest_healthy_replicas_seen() == 2  # PV-backed: the data came back with the BE
    reasons = {e["reason"] for e in kubectl.items("events", ns) if e["involvedObject"]["name"] == NAME}
    assert {"BalancePaused", "BalanceRestored"} <= reasons


def test_a_bad_image_rolled_back_by_editing_the_spec_converges(kubectl: Kubectl, start: Start) -> None:
    ns, driver, _ = start()
    never = localcluster.POD_READY_DELAY_ANNOTATION
    bad = {"spec": {"beSpec": {"image": "selectdb/doris.be-ubuntu:2.0.3", "annotations": {never: "100000s"}}}}
    with Recorder(kubectl, ns, driver) as rec:
        kubectl.patch(ns, json.dumps(bad))  # the new image never gets Ready (as one that crash-loops)
        eventually(lambda: len(rec.restarts) == 1, 60, what="the first BE on the bad image")
        bad_pod = kubectl.json("pod", f"{NAME}-be-2", "-n", ns)
        assert bad_pod["spec"]["containers"][0]["image"].endswith(":2.0.3")

        def stuck() -> bool:
            st = kubectl.json("dcr", NAME, "-n", ns).get("status") or {}
            return "waiting for" in json.dumps(st.get("beStatus", {}).get("conditions", []))

        eventually(stuck, 60, what="the rollout stopped at the bad pod")
        assert sorted(be_images(kubectl, ns)).count("selectdb/doris.be-ubuntu:2.0.2") == 2  # no second pod
        good = {"spec": {"beSpec": {"image": "selectdb/doris.be-ubuntu:2.0.2", "annotations": {never: "1s"}}}}
        kubectl.patch(ns, json.dumps(good))
        eventually(lambda: all_ready_on(kubectl, ns, "2.0.2"), 180, what="rolled back")
        st = wait_ready(kubectl, ns, timeout=120)
    assert [name for _, name in rec.restarts] == [f"{NAME}-be-2"] and rec.most_down == 1
    assert st["beStatus"]["ready"] == "3/3"


def test_sigkill_between_disable_query_and_pod_deletion_gives_the_be_its_queries_back(
    kubectl: Kubectl, start: Start
) -> None:
    ns, driver, op = start()
    pod_before = kubectl.json("pod", f"{NAME}-be-2", "-n", ns)
    original = driver.cluster._execute
    killed: list[str] = []

    def execute(sql: str, via: Any) -> Any:
        result = original(sql, via)
        if "MODIFY BACKEND" in sql and '"disable_query" = "true"' in sql and not killed:
            killed.append(sql)
            assert op.proc is not None
            os.killpg(op.proc.pid, signal.SIGKILL)  # before the operator reads the answer
        return result

    driver.cluster._execute = execute  # type: ignore[method-assign]
    kubectl.patch(ns, BE_IMAGE % "2.0.3")
    eventually(lambda: killed, 60, what="disable_query sent")
    op.proc.wait(timeout=30)  # type: ignore[union-attr]
    driver.cluster._execute = original  # type: ignore[method-assign]

    def query_disabled() -> bool:
        row = next(
            b for b in driver.cluster.show_backends().dicts() if str(b["Host"]).startswith(f"{NAME}-be-2.")
        )
        return bool(json.loads(str(row["Status"]))["isQueryDisabled"])

    assert query_disabled()
    pod = kubectl.json("pod", f"{NAME}-be-2", "-n", ns)
    assert QUERIES_DISABLED in pod["metadata"].get("annotations", {})  # the intent, on the pod
    kubectl.patch(ns, BE_IMAGE % "2.0.2")  # and the change is taken back meanwhile
    op.start()
    eventually(lambda: not query_disabled(), 60, what="be-2 taking queries again")
    eventually(
        lambda: (
            QUERIES_DISABLED
            not in kubectl.json("pod", f"{NAME}-be-2", "-n", ns)["metadata"].get("annotations", {})
        ),
        30,
        what="the mark removed",
    )
    assert kubectl.json("pod", f"{NAME}-be-2", "-n", ns)["metadata"]["uid"] == pod_before["metadata"]["uid"]
    wait_ready(kubectl, ns)


def test_an_image_skipping_a_minor_version_is_refused_until_allowed(kubectl: Kubectl, start: Start) -> None:
    ns, driver, _ = start()  # the simulated Doris runs 2.1.8
    assert all(str(b["Version"]).startswith("doris-2.1.8") for b in driver.cluster.show_backends().dicts())
    with Recorder(kubectl, ns, driver) as rec:
        kubectl.patch(ns, BE_IMAGE % "2.3.0")

        def refused() -> str | None:
            st = (kubectl.json("dcr", NAME, "-n", ns).get("status") or {}).get("beStatus") or {}
            cond = next((c for c in st.get("conditions", []) if c["type"] == "Degraded"), {})
            return str(cond["message"]) if cond.get("reason") == "VersionSkipRefused" else None

        message = eventually(refused, 60, what="VersionSkipRefused")
        assert "2.3.0" in message and "2.1.8" in message and "allow-version-skip" in message
        assert rec.restarts == []
        kubectl("annotate", "dcr", NAME, "-n", ns, "doris.apache.org/allow-version-skip=true")
        eventually(lambda: all_ready_on(kubectl, ns, "2.3.0"), 180, what="the rollout, once allowed")
    assert len(rec.restarts) == 3
