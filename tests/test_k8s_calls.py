"""The operator's API calls against the real apiserver: a delete with a uid precondition never deletes a
replacement; taking over field ownership makes what the operator stops applying go away; a closed
fence sends nothing.  Each runs twice: on the operator's own client (kube_client: the hot calls written
straight onto its transport, k8s.Direct) and on lightkube's default client (the same calls through
httpx2)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from doris_operator.k8s import FIELD_MANAGER, Fence, Kube, NotLeading
from doris_operator.operator import kube_client
from harness import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]


def _service(ns: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"ports": [{"name": "p", "port": 80, "targetPort": 80}]},
    }


VIA = ["direct"]


@pytest.fixture(autouse=True, params=["direct", "httpx2"])
def via(request: pytest.FixtureRequest) -> Any:
    VIA[0] = request.param
    yield request.param
    VIA[0] = "direct"


def _run(kube_cluster: Any, fn: Any, fence: Fence | None = None) -> Any:
    async def main() -> Any:
        config = KubeConfig.from_file(kube_cluster.kubeconfig)
        if VIA[0] == "direct":
            client = kube_client(config)
        else:
            client = AsyncClient(config, field_manager=FIELD_MANAGER)
        try:
            kube = Kube(client, fence)
            assert (kube.direct is not None) == (VIA[0] == "direct")
            return await fn(kube)
        finally:
            await client.close()

    return asyncio.run(main())


def test_delete_with_a_uid_precondition_spares_a_replacement(kube_cluster: Any, kubectl: Kubectl) -> None:
    ns = kubectl.new_namespace()
    kubectl.apply(_service(ns, "svc", {}), ns)
    old = kubectl.json("svc", "svc", "-n", ns)["metadata"]["uid"]
    kubectl("delete", "svc", "svc", "-n", ns)
    kubectl.apply(_service(ns, "svc", {}), ns)
    new = kubectl.json("svc", "svc", "-n", ns)["metadata"]["uid"]
    assert not _run(kube_cluster, lambda kube: kube.delete("Service", "svc", ns, old))
    assert kubectl.json("svc", "svc", "-n", ns)["metadata"]["uid"] == new
    assert _run(kube_cluster, lambda kube: kube.delete("Service", "svc", ns, new))
    assert kubectl("get", "svc", "svc", "-n", ns, "--ignore-not-found").strip() == ""


def test_taking_over_ownership_lets_the_operator_remove_what_it_stops_setting(
    kube_cluster: Any, kubectl: Kubectl
) -> None:
    ns = kubectl.new_namespace()
    made = _service(ns, "svc", {"official-only": "x", "shared": "s"})
    kubectl("create", "--field-manager=dorisoperator", "-f", "-", input=yaml.safe_dump(made))
    uid = kubectl.json("svc", "svc", "-n", ns)["metadata"]["uid"]
    ours = _service(ns, "svc", {"shared": "s", "ours": "z"})

    async def without_takeover(kube: Kube) -> None:
        await kube.apply(ours)

    _run(kube_cluster, without_takeover)
    labels = kubectl.json("svc", "svc", "-n", ns)["metadata"]["labels"]
    assert labels == {"official-only": "x", "shared": "s", "ours": "z"}  # it lingers with its manager

    async def takeover(kube: Kube) -> None:
        assert await kube.take_ownership("Service", "svc", ns, uid)
        await kube.apply(ours)

    _run(kube_cluster, takeover)
    live = kubectl.json("svc", "svc", "-n", ns, "--show-managed-fields")
    assert live["metadata"]["labels"] == {"shared": "s", "ours": "z"}
    assert {m["manager"] for m in live["metadata"]["managedFields"]} == {FIELD_MANAGER}
    # a stale uid takes nothing over
    assert not _run(kube_cluster, lambda kube: kube.take_ownership("Service", "svc", ns, "another-uid"))


def test_a_closed_fence_sends_nothing(kube_cluster: Any, kubectl: Kubectl) -> None:
    ns = kubectl.new_namespace()
    fence = Fence(elected=True)
    fence.grant(time.monotonic() - 1)  # the renew deadline passed

    async def write(kube: Kube) -> None:
        await kube.apply(_service(ns, "svc", {}))

    with pytest.raises(NotLeading):
        _run(kube_cluster, write, fence)
    assert kubectl("get", "svc", "svc", "-n", ns, "--ignore-not-found").strip() == ""


def test_a_repeated_event_counts_on_the_one_written_before(kube_cluster: Any, kubectl: Kubectl) -> None:
    """Like client-go's EventCorrelator: the same Event again patches count and lastTimestamp; another
    message is another Event; an Event gone meanwhile (expired) is created anew."""
    ns = kubectl.new_namespace()
    owner = {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisCluster",
        "metadata": {"name": "dc", "namespace": ns, "uid": "dc-uid"},
    }

    def events() -> list[dict[str, Any]]:
        return sorted(kubectl.items("events", ns), key=lambda e: e["message"])

    async def repeat(kube: Kube) -> None:
        for _ in range(3):
            await kube.event(owner, "Warning", "FEUnreachable", "can't ask the FE")
        await kube.event(owner, "Normal", "Created", "created StatefulSet dc-fe")
        assert sorted((e["reason"], e["count"]) for e in events()) == [("Created", 1), ("FEUnreachable", 3)]
        (first,) = [e for e in events() if e["reason"] == "FEUnreachable"]
        kubectl("delete", "event", first["metadata"]["name"], "-n", ns)
        await kube.event(owner, "Warning", "FEUnreachable", "can't ask the FE")

    _run(kube_cluster, repeat)
    got = sorted((e["reason"], e["count"]) for e in events())
    assert got == [("Created", 1), ("FEUnreachable", 1)], got
    assert all(e["involvedObject"]["uid"] == "dc-uid" for e in events())


def test_repeats_are_aggregated_into_one_event(kube_cluster: Any, kubectl: Kubectl) -> None:
    ns = kubectl.new_namespace()
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": ns, "uid": "u"}}

    async def repeat(kube: Kube) -> None:
        for _ in range(4):
            await kube.event(owner, "Warning", "Flapping", "the same again")

    _run(kube_cluster, repeat)
    (event,) = kubectl.items("events", ns)
    assert event["count"] == 4 and event["lastTimestamp"] >= event["firstTimestamp"]


def test_apply_read_annotate_and_errors(kube_cluster: Any, kubectl: Kubectl) -> None:
    ns = kubectl.new_namespace()
    kubectl.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}, ns
    )

    async def calls(kube: Kube) -> None:
        stored = await kube.apply(_service(ns, "svc", {"app": "x"}))
        # the answer is the metadata only (PartialObjectMetadata), the apiserver's own
        assert stored["kind"] == "PartialObjectMetadata" and "spec" not in stored
        assert stored["metadata"]["name"] == "svc" and stored["metadata"]["resourceVersion"]
        assert [m["manager"] for m in stored["metadata"]["managedFields"]] == [FIELD_MANAGER]
        got = await kube.get("Service", "svc", ns)
        assert got is not None and got["metadata"]["uid"] == stored["metadata"]["uid"]
        assert got["apiVersion"] == "v1" and got["metadata"]["labels"] == {"app": "x"}
        assert await kube.get("Service", "missing", ns) is None
        assert await kube.config_map("cm", ns) == {"k": "v"} and await kube.config_map("no", ns) is None
        await kube.annotate("Service", "svc", ns, {"doris.apache.org/x": "1"})
        await kube.annotate("Service", "svc", ns, {"doris.apache.org/x": None, "doris.apache.org/y": "2"})
        bad = _service(ns, "bad", {})
        bad["spec"]["ports"] = []
        with pytest.raises(ApiError) as err:
            await kube.apply(bad)
        assert err.value.status.code == 422 and "spec.ports" in (err.value.status.message or "")
        with pytest.raises(ApiError) as err:
            await kube.annotate("Service", "missing", ns, {"a": "b"})
        assert err.value.status.code == 404

    _run(kube_cluster, calls)
    annotations = kubectl.json("svc", "svc", "-n", ns)["metadata"]["annotations"]
    assert annotations.get("doris.apache.org/y") == "2" and "doris.apache.org/x" not in annotations
