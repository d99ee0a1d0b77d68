"""The image driver (doris_sim.images) on the local control plane, without the operator: the
objects the builders render from the docs' sample are applied by hand, the driver registers their pods
as the official images would, and the simulated FE is checked over MySQL with the operator's client."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import yaml
from lightkube.resources.core_v1 import Pod

import localcluster
from doris_operator.api.doriscluster import Component
from doris_operator.api.validation import parse_cluster
from doris_operator.builders import build, names
from doris_operator.doris.client import Backend, Credentials, DorisClient, Frontend, NotMasterError
from doris_sim.fe import UNREACHABLE, SimCluster, SimFeServer
from doris_sim.images import BROKER_NAME, LABEL_CLUSTER, ImageDriver, _Pod, parse_conf
from harness import Kubectl, eventually, free_port, sample

NAME = "doriscluster-sample"
BE_IMAGE = "selectdb/doris.be-ubuntu:2.1.8"
BROKER_IMAGE = "selectdb/doris.broker-ubuntu:2.1.8"
R = TypeVar("R", Frontend, Backend)


def manifest(namespace: str, **specs: dict[str, Any]) -> dict[str, Any]:
    """The docs' sample in ``namespace``, without resource requests (the fake nodes are shared), with
    ``specs`` merged into its component specs (``feSpec={...}``, ``cnSpec={...}``)."""
    doc = sample()
    doc["metadata"]["namespace"] = namespace
    for spec in doc["spec"].values():
        spec.pop("requests", None)
        spec.pop("limits", None)
    for key, fields in specs.items():
        doc["spec"].setdefault(key, {}).update(fields)
    return doc


def rendered(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return build(parse_cluster(copy.deepcopy(doc)))


def delayed(seconds: int) -> dict[str, Any]:
    """Component spec fields that keep its pods from turning Ready for ``seconds`` after creation."""
    return {"annotations": {localcluster.POD_READY_DELAY_ANNOTATION: f"{seconds}s"}}


def fqdn(comp: Component, ordinal: int, namespace: str) -> str:
    return names.pod_fqdn(NAME, comp, ordinal, namespace)


def connect(driver: ImageDriver) -> DorisClient:
    return DorisClient.connect(driver.host, driver.port, Credentials())


def by_host(rows: Sequence[R]) -> dict[str, R]:
    return {row.host: row for row in rows}


def ready_pods(kubectl: Kubectl, namespace: str, comp: str) -> set[str]:
    return {
        pod["metadata"]["name"]
        for pod in kubectl.items("pods", namespace, f"{names.LABEL_COMPONENT}={comp}")
        if not pod["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    }


@pytest.fixture
def ns(kubectl: Kubectl, clean_namespaces: None) -> str:
    name = kubectl.new_namespace("sim")
    eventually(
        lambda: kubectl("get", "serviceaccount", "default", "-n", name, "-o", "name", check=False),
        60,
        what=f"ServiceAccount {name}/default",
    )
    return name


@pytest.fixture
def deploy(kube_cluster: localcluster.LocalCluster, ns: str) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        kube_cluster.apply(rendered(doc), "-n", ns)

    return apply


@pytest.fixture
def start_driver(kube_cluster: localcluster.LocalCluster, ns: str) -> Iterator[Callable[..., ImageDriver]]:
    drivers: list[ImageDriver] = []

    def start(**options: Any) -> ImageDriver:
        driver = ImageDriver(kube_cluster.kubeconfig, ns, NAME, **options).start()
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.stop()


# ---------------------------------------------------------------------------------------------
# On the local control plane


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_sample_registers_three_followers_and_three_backends(
    ns: str, deploy: Callable[[dict[str, Any]], None], start_driver: Callable[..., ImageDriver]
) -> None:
    driver = start_driver(tablets_per_be=120)
    deploy(manifest(ns))
    driver.wait_registered(3, 3, timeout=60)
    with connect(driver) as client:
        frontends = by_host(client.show_frontends())
        backends = by_host(client.show_backends())
    assert set(frontends) == {fqdn("fe", i, ns) for i in range(3)}
    assert all(fe.role == "FOLLOWER" and fe.alive and fe.edit_log_port == 9010 for fe in frontends.values())
    assert [host for host, fe in frontends.items() if fe.is_master] == [fqdn("fe", 0, ns)]
    assert frontends[fqdn("fe", 0, ns)].current_connected
    assert set(backends) == {fqdn("be", i, ns) for i in range(3)}
    for be in backends.values():
        assert (be.heartbeat_port, be.alive, be.tablet_num, be.node_role) == (9050, True, 120, "mix")
        assert not be.system_decommissioned and be.query_disabled is False and be.load_disabled is False


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_restarted_backend_is_dead_until_ready_then_reenabled_without_a_second_add(
    ns: str,
    kubectl: Kubectl,
    deploy: Callable[[dict[str, Any]], None],
    start_driver: Callable[..., ImageDriver],
) -> None:
    driver = start_driver(ephemeral_storage=False)  # as on PersistentVolumes: the data survives
    deploy(manifest(ns, beSpec=delayed(4)))
    driver.wait_registered(3, 3, timeout=60)
    host = fqdn("be", 1, ns)
    with connect(driver) as client:
        client.modify_backend(host, 9050, disable_query=True, disable_load=True)
        before = by_host(client.show_backends())[host]
        assert before.query_disabled and before.load_disabled
        old_uid = kubectl.json("pod", f"{NAME}-be-1", "-n", ns)["metadata"]["uid"]
        kubectl("delete", "pod", f"{NAME}-be-1", "-n", ns, "--wait=false")

        def dead() -> Backend:
            be: Backend = by_host(client.show_backends())[host]
            assert not be.alive
            return be

        down = eventually(dead, 20, 0.2, what="be-1 shown dead")
        assert down.query_disabled and down.load_disabled, "still drained until its image runs again"
        assert down.backend_id == before.backend_id

        def back() -> Backend:
            be: Backend = by_host(client.show_backends())[host]
            assert be.alive
            return be

        up = eventually(back, 60, 0.2, what="be-1 alive again")
        new_uid = kubectl.json("pod", f"{NAME}-be-1", "-n", ns)["metadata"]["uid"]
        backends = client.show_backends()
    assert new_uid != old_uid
    assert up.backend_id == before.backend_id and len(backends) == 3
    assert up.query_disabled is False and up.load_disabled is False
    assert up.tablet_num == before.tablet_num == 100
    assert all(be.alive for be in backends)


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_scaling_backends_registers_new_ones_and_scale_down_keeps_undropped_ones_registered(
    ns: str,
    kubectl: Kubectl,
    deploy: Callable[[dict[str, Any]], None],
    start_driver: Callable[..., ImageDriver],
) -> None:
    driver = start_driver(decommission_rate=1000, balance_rate=50)
    deploy(manifest(ns))
    driver.wait_registered(3, 3, timeout=60)
    kubectl("scale", "statefulset", f"{NAME}-be", "-n", ns, "--replicas=5")
    driver.wait_registered(3, 5, timeout=60)
    kept, drained = fqdn("be", 3, ns), fqdn("be", 4, ns)
    with connect(driver) as client:

        def balanced() -> dict[str, Backend]:
            backends = by_host(client.show_backends())
            assert all(be.alive and be.tablet_num >= 54 for be in backends.values())
            return backends

        # New BEs start empty; the balancer moves replicas onto them (300 over 5: about 60 each).
        added = eventually(balanced, 120, 0.2, what="the new BEs filled by the balancer")
        assert sum(be.tablet_num for be in added.values()) == 300
        client.decommission_backends([(drained, 9050)])  # what the operator does before a scale-down
        eventually(lambda: drained not in by_host(client.show_backends()), 20, 0.2, what="be-4 drained")
        assert driver.cluster.lowest_healthy_replicas_seen() == 3, "decommission copies before it deletes"
        kubectl("scale", "statefulset", f"{NAME}-be", "-n", ns, "--replicas=3")
        driver.wait_registered(3, 3, timeout=60)
        backends = by_host(client.show_backends())
    assert set(backends) == {fqdn("be", i, ns) for i in range(4)}, "Doris keeps a node until it is dropped"
    assert not backends[kept].alive and backends[kept].backend_id == added[kept].backend_id
    assert sum(be.tablet_num for be in backends.values()) == 300, "be-4's replicas moved, none lost"


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_observers_compute_nodes_and_broker_from_a_listing(
    ns: str,
    kubectl: Kubectl,
    deploy: Callable[[dict[str, Any]], None],
    start_driver: Callable[..., ImageDriver],
) -> None:
    doc = manifest(
        ns,
        feSpec={"replicas": 4, "electionNumber": 1},
        cnSpec={"replicas": 2, "image": BE_IMAGE},
        brokerSpec={"replicas": 1, "image": BROKER_IMAGE},
    )
    (fe_sts,) = (
        o for o in rendered(doc) if o["kind"] == "StatefulSet" and o["metadata"]["name"] == f"{NAME}-fe"
    )
    assert {"name": "ELECT_NUMBER", "value": "1"} in fe_sts["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    deploy(doc)
    expected = {"fe": 4, "be": 3, "cn": 2, "broker": 1}
    eventually(
        lambda: all(len(ready_pods(kubectl, ns, comp)) == n for comp, n in expected.items()),
        60,
        what=f"Ready pods {expected}",
    )
    driver = start_driver()  # after the pods: the first listing registers them
    driver.wait_registered(4, 5, timeout=30)
    with connect(driver) as client:
        frontends = by_host(client.show_frontends())
        backends = by_host(client.show_backends())
        brokers = client.show_brokers()
    roles = {host: (fe.role, fe.is_master) for host, fe in frontends.items()}
    assert roles == {
        fqdn("fe", 0, ns): ("FOLLOWER", True),
        **{fqdn("fe", i, ns): ("OBSERVER", False) for i in (1, 2, 3)},
    }
    assert {host: (be.node_role, be.tablet_num) for host, be in backends.items()} == {
        **{fqdn("be", i, ns): ("mix", 100) for i in range(3)},
        **{fqdn("cn", i, ns): ("computation", 0) for i in range(2)},
    }
    assert [(b.name, b.host, b.port, b.alive) for b in brokers] == [
        (BROKER_NAME, fqdn("broker", 0, ns), 8000, True)
    ]


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_other_pods_wait_for_the_master_fe_and_the_service_answers_as_a_follower_while_it_is_down(
    ns: str,
    kubectl: Kubectl,
    kube_cluster: localcluster.LocalCluster,
    start_driver: Callable[..., ImageDriver],
) -> None:
    driver = start_driver()
    objects = rendered(manifest(ns, feSpec=delayed(3)))
    fe_sts = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == f"{NAME}-fe"]
    kube_cluster.apply([o for o in objects if o not in fe_sts], "-n", ns)
    eventually(lambda: len(ready_pods(kubectl, ns, "be")) == 3, 30, 0.2, what="BE pods Ready")
    time.sleep(1)
    with connect(driver) as client:
        assert client.show_backends() == [], "a BE image registers only through a live master"
        kube_cluster.apply(fe_sts, "-n", ns)
        driver.wait_registered(3, 3, timeout=60)
        master = fqdn("fe", 0, ns)
        kubectl("delete", "pod", f"{NAME}-fe-0", "-n", ns, "--wait=false")

        def master_down() -> dict[str, Frontend]:
            frontends = by_host(client.show_frontends())
            assert not frontends[master].alive
            return frontends

        frontends = eventually(master_down, 20, 0.2, what="fe-0 shown dead")
        assert frontends[master].is_master
        assert [h for h, fe in frontends.items() if fe.current_connected] == [fqdn("fe", 1, ns)]
        with pytest.raises(NotMasterError):
            client.modify_backend(fqdn("be", 0, ns), 9050, disable_query=True)
        eventually(lambda: by_host(client.show_frontends())[master].current_connected, 60, 0.2)
        frontends = by_host(client.show_frontends())
    assert len(frontends) == 3 and all(fe.alive for fe in frontends.values())


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_cli_prints_its_address_and_stops_on_sigterm(
    ns: str, kube_cluster: localcluster.LocalCluster, deploy: Callable[[dict[str, Any]], None], tmp_path: Path
) -> None:
    log = tmp_path / "sim.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "doris_sim", "--kubeconfig", str(kube_cluster.kubeconfig),
             "--namespace", ns, "--cluster", NAME, "--tablets-per-be", "7", "--cluster-domain", "corp.local",
             "--replication-num", "1"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        host, _, port = proc.stdout.readline().strip().rpartition(":")
        assert host == "127.0.0.1" and port.isdigit(), log.read_text()
        deploy(manifest(ns))

        def registered() -> list[Backend]:
            with DorisClient.connect(host, int(port), Credentials()) as client:
                backends = client.show_backends()
            up = len(backends) == 3 and all(b.alive for b in backends)
            return backends if up and any(b.tablet_num for b in backends) else []  # the data set follows

        up = eventually(registered, 60, what="3 BEs alive via the CLI, and the data set made")
        assert {b.tablet_num for b in up} == {7}
        assert all(b.host.endswith(f".{ns}.svc.corp.local") for b in up)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
        assert "ALTER SYSTEM ADD BACKEND" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_nodes_register_with_the_cluster_domain_or_their_pod_ip(
    ns: str,
    kubectl: Kubectl,
    deploy: Callable[[dict[str, Any]], None],
    start_driver: Callable[..., ImageDriver],
) -> None:
    corp = start_driver(cluster_domain="corp.local")
    deploy(manifest(ns))
    corp.wait_registered(3, 3, timeout=60)
    with connect(corp) as client:
        hosts = {be.host for be in client.show_backends()} | {fe.host for fe in client.show_frontends()}
    # Written out here, not taken from the operator's builders: the domain is the cluster's.
    assert hosts == {
        f"{NAME}-{comp}-{i}.{NAME}-{comp}-internal.{ns}.svc.corp.local"
        for comp in ("fe", "be")
        for i in range(3)
    }
    corp.stop()

    by_ip = start_driver(fqdn_mode=False)
    by_ip.wait_registered(3, 3, timeout=60)
    pod_ips = {
        p["metadata"]["name"]: p["status"]["podIP"]
        for p in kubectl.items("pods", ns, f"{LABEL_CLUSTER}={NAME}")
    }
    with connect(by_ip) as client:
        backends = {be.host: be for be in client.show_backends()}
        frontends = {fe.host for fe in client.show_frontends()}
    assert set(backends) == {pod_ips[f"{NAME}-be-{i}"] for i in range(3)}
    assert frontends == {pod_ips[f"{NAME}-fe-{i}"] for i in range(3)}
    assert by_ip.registered_address(f"{NAME}-be-0") == (pod_ips[f"{NAME}-be-0"], 9050)


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_fe_conf_without_fqdn_mode_makes_the_fes_register_their_pod_ips(
    ns: str,
    kubectl: Kubectl,
    deploy: Callable[[dict[str, Any]], None],
    start_driver: Callable[..., ImageDriver],
) -> None:
    kubectl(
        "create", "configmap", "fe-conf", "-n", ns,
        "--from-literal=fe.conf=# IP mode\nenable_fqdn_mode = false\nhttp_port = 8030\n",
    )  # fmt: skip
    driver = start_driver()
    deploy(manifest(ns, feSpec={"configMapInfo": {"configMapName": "fe-conf"}}))
    driver.wait_registered(3, 3, timeout=60)
    pod_ips = {
        p["metadata"]["name"]: p["status"]["podIP"]
        for p in kubectl.items("pods", ns, f"{LABEL_CLUSTER}={NAME}")
    }
    with connect(driver) as client:
        frontends = {fe.host for fe in client.show_frontends()}
        backends = {be.host for be in client.show_backends()}
    assert frontends == {pod_ips[f"{NAME}-fe-{i}"] for i in range(3)}
    assert backends == {fqdn("be", i, ns) for i in range(3)}, (
        "be_entrypoint.sh: hostname -f unless HOST_TYPE=IP"
    )


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_emptydir_backend_in_a_new_pod_comes_back_empty_and_is_re_replicated(
    ns: str,
    kubectl: Kubectl,
    deploy: Callable[[dict[str, Any]], None],
    start_driver: Callable[..., ImageDriver],
) -> None:
    driver = start_driver(tablets_per_be=60, clone_rate=20)  # the sample has no persistentVolumes
    deploy(manifest(ns, beSpec=delayed(2)))
    driver.wait_registered(3, 3, timeout=60)
    host = fqdn("be", 2, ns)
    assert driver.cluster.lowest_healthy_replicas_seen() == 3
    kubectl("delete", "pod", f"{NAME}-be-2", "-n", ns, "--wait=false")
    with connect(driver) as client:

        def back_empty_or_refilling() -> Backend:
            be: Backend = by_host(client.show_backends())[host]
            assert be.alive and be.tablet_num < 60
            return be

        eventually(back_empty_or_refilling, 60, 0.1, what="be-2 alive again without its replicas")

        def healthy() -> bool:
            assert by_host(client.show_backends())[host].tablet_num == 60
            (total,) = [r for r in client_rows(driver, "SHOW PROC '/cluster_health/tablet_health'")
                        if r["DbId"] == "Total"]  # fmt: skip
            assert total["HealthyNum"] == total["TabletNum"] == "60"
            return True

        eventually(healthy, 60, 0.2, what="be-2 re-replicated")
    assert driver.cluster.lowest_healthy_replicas_seen() == 2


def client_rows(driver: ImageDriver, sql: str) -> list[dict[str, Any]]:
    result = driver.server.run(sql)
    assert result is not None
    return [{k: str(v) for k, v in row.items()} for row in result.dicts()]


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_each_fe_served_on_its_own_port_and_the_service_pinned_to_a_follower(
    ns: str, deploy: Callable[[dict[str, Any]], None], start_driver: Callable[..., ImageDriver]
) -> None:
    driver = start_driver(serve_each_fe=True, replay_lag=120)
    deploy(manifest(ns))
    driver.wait_registered(3, 3, timeout=60)
    assert set(driver.fe_servers) == {f"{NAME}-fe-{i}" for i in range(3)}
    with connect(driver) as client:
        frontends = by_host(client.show_frontends())
    for i in range(3):
        assert frontends[fqdn("fe", i, ns)].query_port == driver.fe_address(f"{NAME}-fe-{i}")[1]
    assert driver.fe_endpoints() == {fqdn("fe", i, ns): driver.fe_address(f"{NAME}-fe-{i}") for i in range(3)}
    driver.route_to(f"{NAME}-fe-1")
    with connect(driver) as client:
        frontends = by_host(client.show_frontends())
        assert frontends[fqdn("fe", 1, ns)].current_connected and not frontends[fqdn("fe", 1, ns)].is_master
        client.modify_backend(fqdn("be", 0, ns), 9050, disable_query=True)  # forwarded to the master
        assert client.show_backends() == [], "fe-1 replays 120 s behind: it knows no BE yet"
    host, port = driver.fe_address(f"{NAME}-fe-0")
    with DorisClient.connect(host, port, Credentials()) as master:
        assert by_host(master.show_frontends())[fqdn("fe", 0, ns)].is_master
        assert by_host(master.show_backends())[fqdn("be", 0, ns)].query_disabled
    driver.set_fault(UNREACHABLE)
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for a dropped connection
        connect(driver).show_backends()
    driver.set_fault(None)
    driver.route_to(None)
    with connect(driver) as client:
        assert by_host(client.show_frontends())[fqdn("fe", 0, ns)].current_connected


# ---------------------------------------------------------------------------------------------
# Without a cluster


def test_pod_parse_reads_what_the_images_read_from_the_rendered_pods() -> None:
    doc = manifest("ns1", feSpec={"electionNumber": 1})
    sts = {o["metadata"]["name"]: o for o in rendered(doc) if o["kind"] == "StatefulSet"}

    def pod(comp: str, ordinal: int, ready: bool, restarts: int = 0) -> Pod:
        template = sts[f"{NAME}-{comp}"]
        meta = template["spec"]["template"]["metadata"] | {
            "name": f"{NAME}-{comp}-{ordinal}",
            "namespace": "ns1",
            "uid": f"uid-{comp}",
        }
        spec = template["spec"]["template"]["spec"] | {
            "hostname": meta["name"],
            "subdomain": template["spec"]["serviceName"],
        }
        status = {
            "conditions": [{"type": "Ready", "status": str(ready)}],
            "containerStatuses": [
                {"name": comp, "restartCount": restarts, "ready": ready, "image": "x", "imageID": "",
                 "containerID": ""}
            ],
        }  # fmt: skip
        return cast(Pod, Pod.from_dict({"metadata": meta, "spec": spec, "status": status}))

    fe = _Pod.parse(pod("fe", 2, ready=True))
    assert fe is not None
    assert (fe.comp, fe.ordinal, fe.address, fe.elect_number, fe.ready) == (
        "fe",
        2,
        (names.pod_fqdn(NAME, "fe", 2, "ns1"), 9010),
        1,
        True,
    )
    be = _Pod.parse(pod("be", 0, ready=False, restarts=2))
    assert be is not None
    assert (be.address, be.ready, be.start) == (
        (names.pod_fqdn(NAME, "be", 0, "ns1"), 9050),
        False,
        "uid-be/2",
    )


def test_move_frontend_and_serve_as() -> None:
    cluster = SimCluster(master_host="fe-0")
    cluster.register_frontend("fe-1", 9010)
    cluster.move_frontend("fe-0", 9010, "fe-0", 9011)
    assert cluster.master == ("fe-0", 9011)
    with pytest.raises(ValueError, match="another frontend"):
        cluster.move_frontend("fe-0", 9011, "fe-1", 9010)
    with SimFeServer(cluster) as server:
        server.serve_as(("fe-1", 9010))
        result = server.run("SHOW FRONTENDS")
        assert result is not None
        rows = {row["Host"]: row for row in result.dicts()}
        assert rows["fe-1"]["CurrentConnected"] == "Yes" and rows["fe-1"]["QueryPort"] == str(server.port)
        assert rows["fe-0"]["IsMaster"] == "true" and rows["fe-0"]["CurrentConnected"] == "No"


def test_start_fails_fast_when_the_api_server_is_unreachable(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    driver = ImageDriver(kubeconfig, "ns1", NAME)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="failed to start"):
        driver.start(timeout=20)
    assert time.monotonic() - started < 15
    with pytest.raises(RuntimeError, match="not serving"):
        _ = driver.port


def _pod(comp: str, **fields: Any) -> Pod:
    container: dict[str, Any] = {"name": comp, "image": "x", "env": fields.pop("env", [])}
    container["volumeMounts"] = fields.pop("mounts", [])
    spec = {"containers": [container], "hostname": f"c-{comp}-0", "subdomain": f"c-{comp}-internal",
            "volumes": fields.pop("volumes", [])}  # fmt: skip
    meta = {
        "name": f"c-{comp}-0",
        "namespace": "ns1",
        "uid": "u1",
        "labels": {"app.kubernetes.io/component": comp},
    }
    status = {"podIP": "10.244.1.7", "conditions": [{"type": "Ready", "status": "True"}]}
    return cast(Pod, Pod.from_dict({"metadata": meta, "spec": spec, "status": status}))


def test_pod_parse_domain_ip_host_type_storage_and_conf_map() -> None:
    be = _Pod.parse(_pod("be"), "corp.local")
    assert be is not None
    assert (be.fqdn, be.ip, be.host_type_ip, be.persistent_storage) == (
        "c-be-0.c-be-internal.ns1.svc.corp.local", "10.244.1.7", False, False,
    )  # fmt: skip
    pvc = _Pod.parse(
        _pod(
            "be",
            env=[{"name": "HOST_TYPE", "value": "IP"}],
            mounts=[{"name": "s1", "mountPath": "/opt/apache-doris/be/storage1"},
                    {"name": "shared", "mountPath": "/opt/share"}],
            volumes=[{"name": "s1", "persistentVolumeClaim": {"claimName": "s1-c-be-0"}},
                     {"name": "shared", "persistentVolumeClaim": {"claimName": "rwx"}}],
        )
    )  # fmt: skip
    assert pvc is not None and pvc.host_type_ip and pvc.persistent_storage
    shared_only = _Pod.parse(
        _pod("be", mounts=[{"name": "shared", "mountPath": "/opt/share"}],
             volumes=[{"name": "shared", "persistentVolumeClaim": {"claimName": "rwx"}}])
    )  # fmt: skip
    assert shared_only is not None and not shared_only.persistent_storage
    fe = _Pod.parse(
        _pod("fe", mounts=[{"name": "conf", "mountPath": "/etc/doris"}],
             volumes=[{"name": "conf", "configMap": {"name": "fe-conf"}}])
    )  # fmt: skip
    assert fe is not None and fe.conf_map == "fe-conf"


def test_registration_address_follows_each_image() -> None:
    driver = ImageDriver(None, "ns1", "c")
    fe = _Pod.parse(
        _pod("fe", mounts=[{"name": "conf", "mountPath": "/etc/doris"}],
             volumes=[{"name": "conf", "configMap": {"name": "fe-conf"}}])
    )  # fmt: skip
    be_ip = _Pod.parse(_pod("be", env=[{"name": "HOST_TYPE", "value": "IP"}]))
    be = _Pod.parse(_pod("be"))
    assert fe is not None and be is not None and be_ip is not None
    assert driver._address(fe) == ("c-fe-0.c-fe-internal.ns1.svc.cluster.local", 9010), "key absent: FQDN"
    driver._fe_conf["fe-conf"] = parse_conf("# comment\n enable_fqdn_mode = false \nhttp_port=8030\n")
    assert driver._address(fe) == ("10.244.1.7", 9010)
    assert driver._address(be) == ("c-be-0.c-be-internal.ns1.svc.cluster.local", 9050)
    assert driver._address(be_ip) == ("10.244.1.7", 9050)
    forced = ImageDriver(None, "ns1", "c", fqdn_mode=False)
    assert forced._address(be) == ("10.244.1.7", 9050)
