"""The pure plan and the executor's pieces: what is pruned, adopted, pinned, left alone; managedFields
taken over; metadata drift; leader election judged by local observation; the write fence."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from doris_operator.api.validation import parse_cluster
from doris_operator.builders import build, names
from doris_operator.k8s import Fence, NotLeading, take_ownership
from doris_operator.leader import LeaderElector
from doris_operator.reconcile.act import AppliedMemory, Apply, Delete, Emit, TakeOwnership, digest
from doris_operator.reconcile.observed import ADOPTED_TEMPLATE, APPLIED_HASH, trim_child
from doris_operator.reconcile.plan import TEMPLATE, plan_children, plan_status
from doris_operator.reconcile.snapshot import Snapshot

UID = "dc-uid"
NAME = "dc"


def body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisCluster",
        "metadata": {"name": NAME, "namespace": "ns", "uid": UID, "generation": 2},
        "spec": {
            "feSpec": {"image": "selectdb/doris.fe-ubuntu:2.1.8", "replicas": 3},
            "beSpec": {"image": "selectdb/doris.be-ubuntu:2.1.8", "replicas": 3},
            **spec,
        },
    }


def ref(controller: bool, uid: str = UID) -> dict[str, Any]:
    out = {"apiVersion": "doris.selectdb.com/v1", "kind": "DorisCluster", "name": NAME, "uid": uid}
    return out | ({"controller": True} if controller else {})


def child(kind: str, name: str, *refs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1" if kind == "StatefulSet" else "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": names.object_labels(NAME),
            "ownerReferences": list(refs),
            "generation": 1,
            "resourceVersion": "10",
            **extra.pop("metadata", {}),
        },
        **extra,
    }
    return trim_child(obj)


def snapshot(doc: dict[str, Any], *children: dict[str, Any], ready_fe: bool = True) -> Snapshot:
    dc = parse_cluster(doc)
    pods = [
        {
            "metadata": {"name": f"{NAME}-fe-0", "labels": {names.LABEL_COMPONENT: "fe"}, "uid": "p"},
            "ready": ready_fe,
            "phase": "Running",
            "reason": None,
        }
    ]
    snap = Snapshot(
        body=doc, dc=dc, children={(c["kind"], c["metadata"]["name"]): c for c in children}, pods=pods
    )
    snap.desired = build(dc)
    return snap


def applies(plan_actions: list[Any]) -> dict[tuple[str, str], Apply]:
    return {(a.obj["kind"], a.obj["metadata"]["name"]): a for a in plan_actions if isinstance(a, Apply)}


def test_prune_only_what_this_cluster_controls_and_never_a_referenced_secret() -> None:
    admin = names.admin_secret(NAME)
    doc = body(authSecret=admin)  # switched to the Secret the operator generated from adminUser
    snap = snapshot(
        doc,
        child("Secret", admin, ref(True)),  # ours, no longer desired, but referenced: kept
        child("Service", f"{NAME}-cn-service", ref(True)),  # ours and stale: deleted, by uid
        child("Service", f"{NAME}-cn-internal", ref(False)),  # only owned: not ours to delete
        child("Service", f"{NAME}-broker-internal", ref(True, "another-uid")),  # labelled ours, other owner
    )
    plan = plan_children(snap, {})
    deletes = [a for a in plan.actions if isinstance(a, Delete)]
    assert deletes == [
        Delete(
            "Service",
            f"{NAME}-cn-service",
            "ns",
            f"uid-{NAME}-cn-service",
            f"deleted Service {NAME}-cn-service: no longer in the spec",
        )
    ]


def test_a_stale_statefulset_holding_data_is_not_pruned() -> None:
    sts = child("StatefulSet", f"{NAME}-cn", ref(True), spec={}, status={"replicas": 2})
    sts["metadata"]["labels"][names.LABEL_COMPONENT] = "cn"
    plan = plan_children(snapshot(body(), sts), {})
    assert not [a for a in plan.actions if isinstance(a, Delete)]
    assert plan.findings.degraded[""][0][0] == "RemovalRefused"


def test_official_statefulset_is_adopted_with_its_replicas_and_pods_template() -> None:
    live = child(
        "StatefulSet",
        f"{NAME}-be",
        ref(False),
        metadata={"labels": {names.LABEL_OWNER: NAME, names.LABEL_COMPONENT: "be"}},
        spec={"replicas": 4, "updateStrategy": {"type": "RollingUpdate"}},
        status={"replicas": 4},
    )
    snap = snapshot(body(), live)
    plan = plan_children(snap, {f"{NAME}-be": 3})
    take = [a for a in plan.actions if isinstance(a, TakeOwnership)]
    assert take == [TakeOwnership("StatefulSet", f"{NAME}-be", "ns", f"uid-{NAME}-be", (TEMPLATE,), "be")]
    applied = applies(plan.actions)[("StatefulSet", f"{NAME}-be")].obj
    assert applied["spec"]["replicas"] == 4  # what it runs, not the spec's 3
    assert "template" not in applied["spec"]  # the pods keep theirs: no restart
    assert applied["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert applied["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY
    assert applied["metadata"]["ownerReferences"][0]["controller"] is True
    desired = next(
        o for o in snap.desired if o["kind"] == "StatefulSet" and o["metadata"]["name"] == f"{NAME}-be"
    )
    assert applied["metadata"]["annotations"][ADOPTED_TEMPLATE] == digest(desired["spec"]["template"])
    assert any(isinstance(a, Emit) and a.reason == "Adopted" for a in plan.actions)
    assert "template" in desired["spec"]  # the snapshot's desired objects are never edited


def test_adopted_template_stays_until_the_spec_changes_it() -> None:
    snap = snapshot(body())
    desired = next(
        o for o in snap.desired if o["kind"] == "StatefulSet" and o["metadata"]["name"] == f"{NAME}-be"
    )
    mark = {ADOPTED_TEMPLATE: digest(desired["spec"]["template"])}
    live = child("StatefulSet", f"{NAME}-be", ref(True), metadata={"annotations": mark}, spec={"replicas": 3})
    plan = plan_children(snapshot(body(), live), {})
    assert "template" not in applies(plan.actions)[("StatefulSet", f"{NAME}-be")].obj["spec"]
    assert not [a for a in plan.actions if isinstance(a, TakeOwnership)]

    changed = body()
    changed["spec"]["beSpec"]["image"] = "selectdb/doris.be-ubuntu:2.1.9"
    plan = plan_children(snapshot(changed, live), {})
    applied = applies(plan.actions)[("StatefulSet", f"{NAME}-be")].obj
    assert applied["spec"]["template"]["spec"]["containers"][0]["image"].endswith("2.1.9")
    assert ADOPTED_TEMPLATE not in (applied["metadata"].get("annotations") or {})
    # every field the former manager set becomes ours, so what we no longer set goes away
    assert next(a for a in plan.actions if isinstance(a, TakeOwnership)).keep == ()


def test_an_object_someone_else_owns_is_left_alone() -> None:
    live = child("Service", f"{NAME}-fe-service", ref(True, "someone-else"))
    plan = plan_children(snapshot(body(), live), {})
    assert ("Service", f"{NAME}-fe-service") not in applies(plan.actions)
    assert plan.findings.degraded["fe"][0][0] == "NotOwned"


def test_nothing_but_status_while_deleting() -> None:
    doc = body()
    doc["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    snap = snapshot(doc, child("Service", f"{NAME}-cn-service", ref(True)))
    assert plan_children(snap, {}).actions == []
    status = plan_status(snap, plan_children(snap, {}).findings, "T")
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert (status["phase"], progressing["reason"]) == ("Deleting", "Deleting")


def test_take_ownership_moves_fields_but_keeps_the_template_with_its_manager() -> None:
    managed = [
        {
            "manager": "dorisoperator",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:a": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}},
            },
        },
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "subresource": "status",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {}},
        },
        {
            "manager": "doris-operator",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:b": {}}}},
        },
    ]
    out = take_ownership(managed, "doris-operator", [TEMPLATE])
    ours = next(e for e in out if e["manager"] == "doris-operator")
    assert ours["operation"] == "Apply"
    assert ours["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}},
        "f:spec": {"f:replicas": {}},
    }
    theirs = next(e for e in out if e["manager"] == "dorisoperator")
    assert theirs["fieldsV1"] == {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}
    assert any(e.get("subresource") == "status" for e in out)
    everything = take_ownership(managed, "doris-operator")
    assert [e["manager"] for e in everything] == ["doris-operator", "kube-controller-manager"]


def test_applied_memory_sees_a_hand_edited_label() -> None:
    memory = AppliedMemory()
    desired = {"metadata": {"labels": {"x": "1"}, "annotations": {APPLIED_HASH: "h"}}}
    stored = {
        "metadata": {"uid": "u", "generation": 1, "labels": {"x": "1"}, "annotations": {APPLIED_HASH: "h"}}
    }
    memory.remember(stored)
    assert memory.unchanged(stored, "h", desired)
    edited = {**stored, "metadata": {**stored["metadata"], "labels": {"x": "2"}}}  # same generation
    assert not memory.unchanged(edited, "h", desired)


def test_fence_closes_at_its_deadline() -> None:
    assert Fence().may_write()  # no leader election: always
    fence = Fence(elected=True)
    assert not fence.may_write()  # closed until the Lease is held
    fence.grant(time.monotonic() + 60)
    fence.check("apply", "StatefulSet")
    fence.grant(time.monotonic() - 1)
    with pytest.raises(NotLeading):
        fence.check("apply", "StatefulSet")


class FakeLeases:
    def __init__(self, spec: LeaseSpec) -> None:
        self.lease = Lease(metadata=ObjectMeta(name="l", namespace="ns", resourceVersion="1"), spec=spec)
        self.replaced = 0

    async def get(self, *_: Any, **__: Any) -> Lease:
        return Lease.from_dict(self.lease.to_dict())

    async def replace(self, lease: Lease) -> Lease:
        self.replaced += 1
        self.lease = lease
        return lease


async def test_expiry_is_judged_from_when_the_change_was_observed() -> None:
    # the holder's renewTime is an hour old by our clock (skew): that alone never makes it expired
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    leases = FakeLeases(LeaseSpec(holderIdentity="other", leaseDurationSeconds=15, renewTime=old))
    now = [100.0]
    elector = LeaderElector(leases, "ns", "l", "me", 15, 10, 2, clock=lambda: now[0])  # type: ignore[arg-type]
    assert not await elector.try_acquire_or_renew()
    now[0] += 14
    assert not await elector.try_acquire_or_renew()
    # the holder renews: the record changed, so the wait starts again from now
    spec = leases.lease.spec
    assert spec is not None
    spec.renewTime = old + dt.timedelta(seconds=1)
    now[0] += 10
    assert not await elector.try_acquire_or_renew()
    now[0] += 16  # no change seen for longer than the lease duration
    assert await elector.try_acquire_or_renew()
    assert leases.lease.spec is not None and leases.lease.spec.holderIdentity == "me"
    assert leases.lease.spec.leaseTransitions == 1


def test_renew_deadline_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaderElector(None, "ns", "l", "me", lease_duration=10, renew_deadline=10)  # type: ignore[arg-type]


async def test_a_clean_stop_releases_the_lease_and_a_standby_takes_it_at_once() -> None:
    leases = FakeLeases(LeaseSpec(holderIdentity="me", leaseDurationSeconds=15))
    now = [0.0]
    standby = LeaderElector(leases, "ns", "l", "other", 15, 10, 2, clock=lambda: now[0])  # type: ignore[arg-type]
    assert not await standby.try_acquire_or_renew()
    leader = LeaderElector(leases, "ns", "l", "me", 15, 10, 2)  # type: ignore[arg-type]

    async def lead() -> None:
        return None  # stops at once, as on SIGTERM

    await leader.run(lead)
    assert not leader.lost and not leader.fence.may_write()
    assert leases.lease.spec is not None and not leases.lease.spec.holderIdentity
    assert await standby.try_acquire_or_renew()  # no lease duration to wait
