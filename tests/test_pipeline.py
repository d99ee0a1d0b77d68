"""The whole pipeline against an in-memory Kube: an unexpected error in a step becomes a Degraded
condition and a Warning Event and the other steps go on (never shrinking blind); a failed apply does
not stop the others; while deleting nothing but the status is written."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube import ApiError

from doris_operator.builders import names
from doris_operator.k8s import Fence
from doris_operator.reconcile import pipeline
from doris_operator.reconcile.act import AppliedMemory, EventRecorder
from doris_operator.reconcile.observed import trim_child, trim_pod

UID = "dc-uid"
NAME = "dc"


class FakeKube:
    def __init__(self) -> None:
        self.fence = Fence()
        self.applied: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, str]] = []
        self.events: list[tuple[str, str, str]] = []
        self.status: dict[str, Any] | None = None
        self.fail: set[str] = set()
        self.gets: list[tuple[str, str]] = []

    async def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        self.gets.append((kind, name))
        return None

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["metadata"]["name"] in self.fail:
            raise ApiError(status=_status(422, "spec.selector: Invalid value: field is immutable"))
        self.applied.append(obj)
        return {
            **obj,
            "metadata": {**obj["metadata"], "uid": f"uid-{obj['metadata']['name']}", "generation": 1},
        }

    async def delete(self, kind: str, name: str, namespace: str, uid: str | None = None) -> bool:
        self.deleted.append((kind, name))
        return True

    async def take_ownership(self, *args: Any) -> bool:
        return True

    async def patch_status(
        self, name: str, namespace: str, status: dict[str, Any], resource: Any = None
    ) -> None:
        self.status = status

    async def event(self, involved: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason, message))

    async def config_map(self, name: str, namespace: str) -> None:
        return None

    async def secret_exists(self, name: str, namespace: str, ttl: float | None = None) -> bool:
        return True

    async def secret_data(self, name: str, namespace: str) -> None:
        return None

    def secret_refused(self, name: str, namespace: str) -> None:
        pass


def _status(code: int, message: str) -> Any:
    from lightkube.models.meta_v1 import Status

    return Status(code=code, message=message)


def body(**meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisCluster",
        "metadata": {"name": NAME, "namespace": "ns", "uid": UID, "generation": 3, **meta},
        "spec": {
            "feSpec": {"image": "selectdb/doris.fe-ubuntu:2.1.8", "replicas": 3},
            "beSpec": {"image": "selectdb/doris.be-ubuntu:2.1.8", "replicas": 3},
        },
    }


def be_statefulset(replicas: int) -> dict[str, Any]:
    return trim_child(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": names.statefulset(NAME, "be"),
                "namespace": "ns",
                "uid": "uid-be",
                "generation": 1,
                "labels": names.object_labels(NAME, "be"),
                "ownerReferences": [{"uid": UID, "controller": True, "kind": "DorisCluster", "name": NAME}],
            },
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas},
        }
    )


def fe_pod() -> dict[str, Any]:
    return trim_pod(
        {
            "metadata": {
                "name": f"{NAME}-fe-0",
                "namespace": "ns",
                "uid": "p",
                "labels": {names.LABEL_COMPONENT: "fe"},
            },
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )


def applied_statefulset(kube: FakeKube, comp: str) -> dict[str, Any]:
    name = names.statefulset(NAME, comp)  # type: ignore[arg-type]
    return next(o for o in kube.applied if o["kind"] == "StatefulSet" and o["metadata"]["name"] == name)


def context(kube: FakeKube) -> pipeline.Context:
    return pipeline.Context(kube, AppliedMemory(), EventRecorder(kube))  # type: ignore[arg-type]


async def test_a_failing_step_is_degraded_and_reported_and_nothing_shrinks_blind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_: Any) -> None:
        raise ValueError("malformed address 'be-0:'")

    monkeypatch.setattr(pipeline, "reconcile_membership", broken)
    kube = FakeKube()
    await pipeline.reconcile(body(), [be_statefulset(5)], [fe_pod()], context(kube))
    sts = applied_statefulset(kube, "be")
    assert sts["spec"]["replicas"] == 5  # the spec says 3, but nobody confirmed the data moved
    assert {o["metadata"]["name"] for o in kube.applied} >= {f"{NAME}-fe", f"{NAME}-fe-service"}
    assert kube.status is not None and kube.status["phase"] == "Degraded"
    degraded = next(c for c in kube.status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "ReconcileError" and "malformed address" in degraded["message"]
    assert any(t == "Warning" and r == "ReconcileError" and "malformed" in m for t, r, m in kube.events)


async def test_a_failed_apply_does_not_stop_the_others() -> None:
    kube = FakeKube()
    kube.fail = {f"{NAME}-fe-service"}
    await pipeline.reconcile(body(), [], [fe_pod()], context(kube))
    applied = {o["metadata"]["name"] for o in kube.applied}
    assert f"{NAME}-fe-service" not in applied and {f"{NAME}-fe", f"{NAME}-be"} <= applied
    assert kube.status is not None
    degraded = next(c for c in kube.status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "ApplyFailed" and "immutable" in degraded["message"]
    assert any(t == "Warning" and r == "ApplyFailed" for t, r, _ in kube.events)


async def test_while_deleting_only_the_status_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    async def must_not_run(*_: Any) -> None:
        raise AssertionError("no step runs while deleting")

    monkeypatch.setattr(pipeline, "reconcile_membership", must_not_run)
    monkeypatch.setattr(pipeline, "reconcile_rollout", must_not_run)
    kube = FakeKube()
    stale = be_statefulset(0)
    stale["metadata"]["name"] = f"{NAME}-cn"
    doomed = body(deletionTimestamp="2026-12-01T00:00:00Z")
    result = await pipeline.reconcile(doomed, [be_statefulset(3), stale], [fe_pod()], context(kube))
    assert kube.applied == [] and kube.deleted == []
    assert result.phase == "Deleting" and kube.status is not None and kube.status["phase"] == "Deleting"


async def test_an_object_whose_takeover_failed_is_not_applied_over() -> None:
    from doris_operator.reconcile.act import Apply, Emit, Executor, TakeOwnership
    from doris_operator.reconcile.status import Findings

    class Refusing(FakeKube):
        async def take_ownership(self, *args: Any) -> bool:
            raise ApiError(status=_status(409, "the object has been modified"))

    kube = Refusing()
    findings = Findings()
    executor = Executor(kube, AppliedMemory(), EventRecorder(kube), body(), findings)  # type: ignore[arg-type]
    sts = {"kind": "StatefulSet", "apiVersion": "apps/v1", "metadata": {"name": "dc-be", "namespace": "ns"}}
    svc = {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "dc-be-service", "namespace": "ns"}}
    await executor.run(
        [
            TakeOwnership("StatefulSet", "dc-be", "ns", "uid-be", (), "be"),
            Apply(sts, None, "be"),
            Emit("Normal", "Adopted", "took over StatefulSet dc-be", False, ("StatefulSet", "dc-be")),
            Apply(svc, None, "be"),
        ]
    )
    assert [o["metadata"]["name"] for o in kube.applied] == ["dc-be-service"]
    assert findings.degraded["be"][0][0] == "AdoptFailed"
    assert ("Warning", "AdoptFailed") in {(t, r) for t, r, _ in kube.events}
    assert "Adopted" not in {r for _, r, _ in kube.events}


async def test_a_malformed_fe_address_is_degraded_and_the_rest_goes_on() -> None:
    from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION

    kube = FakeKube()
    doc = body(annotations={FE_ADDRESS_ANNOTATION: "fe-host:"})
    ctx = context(kube)
    ctx.allow_fe_address_annotation = True  # honoured only with --allow-fe-address-annotation
    await pipeline.reconcile(doc, [be_statefulset(5)], [fe_pod()], ctx)
    sts = applied_statefulset(kube, "be")
    assert sts["spec"]["replicas"] == 5
    assert kube.status is not None and kube.status["phase"] == "Degraded"
    degraded = next(c for c in kube.status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "ReconcileError" and "finding the FE" in degraded["message"]
    assert any(t == "Warning" and r == "ReconcileError" for t, r, _ in kube.events)


@pytest.mark.parametrize(
    ("code", "message", "gone"),
    [
        (403, "unable to create new content in namespace ns-1 because it is being terminated", True),
        (404, 'namespaces "ns-1" not found', True),
        (403, 'events is forbidden: User "system:serviceaccount:x:y" cannot create resource "events"', False),
        (404, 'dorisclusters.doris.selectdb.com "a" not found', False),
    ],
)
def test_a_namespace_being_deleted_is_told_apart_from_an_rbac_refusal(
    code: int, message: str, gone: bool
) -> None:
    from doris_operator.k8s import namespace_gone

    assert namespace_gone(ApiError(status=_status(code, message))) is gone


async def test_the_result_says_what_is_awaited(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new cluster waits on its pods (watched: only a long fallback requeue); a drain in progress
    is polled soon (reconcile/waits.py decides the figures)."""
    from doris_operator.reconcile import waits

    kube = FakeKube()
    ctx = context(kube)
    result = await pipeline.reconcile(body(), [], [fe_pod()], ctx)
    assert result.wait is not None and result.wait.on == "kubernetes", result.wait
    assert result.requeue_after == waits.KUBERNETES_FALLBACK

    async def draining(*args: Any) -> None:
        args[6].draining["be"] = {f"{NAME}-be-4": 60}

    monkeypatch.setattr(pipeline, "reconcile_membership", draining)
    result = await pipeline.reconcile(body(), [be_statefulset(5)], [fe_pod()], ctx)
    assert result.wait is not None and result.wait.on == "drain", result.wait
    assert result.requeue_after == waits.DRAIN_POLL_MIN
    assert (("ns", NAME)) in ctx.waits


async def test_objects_the_caches_miss_are_read_live_but_a_new_clusters_bes_only_once_an_fe_answers() -> None:
    """Reading a BE's objects before an FE is up only to wait would be 4 GETs per new cluster for
    nothing (the plan neither makes nor touches them then); once an FE pod is Ready, they are read
    before anything is planned for them."""
    from doris_operator.api.lenient import parse_stored_cluster
    from doris_operator.reconcile.snapshot import observe

    kube = FakeKube()
    dc = parse_stored_cluster(body())
    await observe(body(), dc, [], [], kube)  # type: ignore[arg-type]
    be = {names.statefulset(NAME, "be"), names.access_service(NAME, "be"), names.internal_service(NAME, "be")}
    assert {name for _, name in kube.gets} & be == set()
    assert ("StatefulSet", names.statefulset(NAME, "fe")) in kube.gets
    assert ("Service", names.access_service(NAME, "fe")) in kube.gets

    kube = FakeKube()
    await observe(body(), dc, [], [fe_pod()], kube)  # type: ignore[arg-type]
    assert be <= {name for _, name in kube.gets}
    assert ("StatefulSet", names.statefulset(NAME, "fe")) in kube.gets
