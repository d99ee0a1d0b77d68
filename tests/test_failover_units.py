"""The pure failover planner and the eviction decisions, without a cluster."""

from __future__ import annotations

import datetime as dt
from typing import Any

from doris_operator.doris.client import Frontend
from doris_operator.reconcile import failover as fo
from doris_operator.reconcile.members import MemberView
from doris_operator.webhook.eviction import quorum_decision, running_tasks

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
S = fo.Settings(period=300, max_failovers=2, window=3600)


def pod(name: str, node: str, uid: str = "u1", claims: list[str] | None = None) -> dict[str, Any]:
    comp = name.split("-")[-2]
    return {
        "metadata": {"name": name, "uid": uid, "labels": {"app.kubernetes.io/component": comp}},
        "nodeName": node,
        "claims": claims or [],
    }


def snap(
    pods: list[dict[str, Any]], nodes: dict[str, fo.NodeView], alive: dict[str, bool | None], **kw: Any
) -> fo.Snapshot:
    return fo.Snapshot(
        NOW, kw.pop("settings", S), pods, nodes, kw.pop("lost", {}), alive, kw.pop("records", []), **kw
    )


def down(seconds: float) -> fo.NodeView:
    return fo.NodeView(False, NOW - dt.timedelta(seconds=seconds))


def test_nothing_within_the_period_then_a_force_delete() -> None:
    pods = [pod("c-be-0", "n1")]
    early = fo.plan(snap(pods, {"n1": down(299)}, {"c-be-0": False}))
    assert (
        not early.delete and early.requeue_after is not None and early.requeue_after <= 2.5
    )  # 1 s left, + 1 s: API times are whole seconds
    late = fo.plan(snap(pods, {"n1": down(301)}, {"c-be-0": False}))
    assert [d.member.pod for d in late.delete] == ["c-be-0"]


def test_only_when_doris_says_dead() -> None:
    pods = [pod("c-be-0", "n1")]
    for alive in (True, None):
        plan = fo.plan(snap(pods, {"n1": down(900)}, {"c-be-0": alive}))
        assert not plan.delete and plan.waiting


def test_gone_node_counts_from_when_it_was_first_seen_gone() -> None:
    pods = [pod("c-be-0", "n1")]
    first = fo.plan(snap(pods, {}, {"c-be-0": False}))
    assert not first.delete and first.lost_nodes == {"n1": NOW}
    later = fo.plan(snap(pods, {}, {"c-be-0": False}, lost={"n1": NOW - dt.timedelta(seconds=400)}))
    assert [d.member.pod for d in later.delete] == ["c-be-0"]


def test_a_gone_node_is_never_failed_over_before_the_period_though_the_status_keeps_whole_seconds() -> None:
    pods = [pod("c-be-0", "n1")]
    settings = fo.Settings(period=10, max_failovers=2, window=3600)
    seen = NOW + dt.timedelta(seconds=5, microseconds=900_000)  # first seen gone at 12:00:05.9
    first = fo.plan(fo.Snapshot(seen, settings, pods, {}, {}, {"c-be-0": False}, []))
    assert not first.delete
    stored = (first.status() or {})["lostNodes"]["n1"]  # what the next reconcile reads back
    assert stored == "2026-01-01T12:00:06Z"
    lost = {"n1": fo._time(stored)}
    for after in (9.2, 9.99):  # the period has not passed since 12:00:05.9
        at = seen + dt.timedelta(seconds=after)
        early = fo.plan(fo.Snapshot(at, settings, pods, {}, lost, {"c-be-0": False}, []))  # type: ignore[arg-type]
        assert not early.delete, after
        assert (early.status() or {})["lostNodes"]["n1"] == stored  # reading it back does not move it
    late = fo.plan(
        fo.Snapshot(seen + dt.timedelta(seconds=10.2), settings, pods, {}, lost, {"c-be-0": False}, [])
    )  # type: ignore[arg-type]
    assert [d.member.pod for d in late.delete] == ["c-be-0"]


def test_one_per_component_and_the_cap() -> None:
    pods = [pod("c-be-0", "n1"), pod("c-be-1", "n2"), pod("c-fe-1", "n1")]
    nodes = {"n1": down(900), "n2": down(900)}
    alive = {"c-be-0": False, "c-be-1": False, "c-fe-1": False}
    plan = fo.plan(snap(pods, nodes, alive))
    assert sorted(d.member.pod for d in plan.delete) == ["c-be-0", "c-fe-1"]  # one BE, one FE
    done = fo.FailoverRecord("c-be-0", "old", "be", "n1", NOW - dt.timedelta(seconds=60), "x", completed=True)
    capped = fo.plan(
        snap(
            pods, nodes, alive, settings=fo.Settings(period=300, max_failovers=1, window=3600), records=[done]
        )
    )
    assert not capped.delete and any("failover cap reached" in w for w in capped.waiting)
    in_flight = fo.FailoverRecord("c-be-0", "old", "be", "n1", NOW, "x")
    busy = fo.plan(snap(pods, nodes, alive, records=[in_flight]))
    assert [d.member.pod for d in busy.delete] == ["c-fe-1"]


def test_a_record_completes_when_the_new_member_is_alive() -> None:
    rec = fo.FailoverRecord("c-be-0", "old", "be", "n1", NOW, "x")
    plan = fo.plan(
        snap([pod("c-be-0", "n2", uid="new")], {"n2": fo.NodeView(True)}, {"c-be-0": True}, records=[rec])
    )
    assert plan.records[0].completed and plan.completed


def test_local_claims_need_the_flag_and_tablet_health() -> None:
    pods = [pod("c-be-0", "n1", claims=["data-c-be-0"])]
    claims = {"c-be-0": [fo.Claim("data-c-be-0", "cu", frozenset({"n1"}))]}
    nodes, alive = {"n1": down(900)}, {"c-be-0": False}
    assert not fo.plan(snap(pods, nodes, alive, claims=claims)).delete
    allowed = fo.Settings(period=300, recreate_local_claims=True)
    assert not fo.plan(snap(pods, nodes, alive, claims=claims, settings=allowed, tablets_safe=False)).delete
    assert not fo.plan(snap(pods, nodes, alive, claims=claims, settings=allowed, tablets_safe=None)).delete
    ok = fo.plan(snap(pods, nodes, alive, claims=claims, settings=allowed, tablets_safe=True))
    assert [c.name for c in ok.delete[0].claims] == ["data-c-be-0"]


def test_disabled_and_durations() -> None:
    off = fo.plan(
        snap([pod("c-be-0", "n1")], {"n1": down(900)}, {"c-be-0": False}, settings=fo.Settings(enabled=False))
    )
    assert not off.delete
    assert fo.parse_duration("1h30m") == 5400 and fo.parse_duration("10s") == 10
    assert fo.tablets_safe_from(["DbId", "UnrecoverableNum"], [("1", "0"), ("Total", "0")]) is True
    assert fo.tablets_safe_from(["DbId", "UnrecoverableNum"], [("1", "3")]) is False
    assert fo.tablets_safe_from(["DbId"], [("1",)]) is None


def fe(host: str, role: str, alive: bool) -> Frontend:
    return Frontend(name=host, host=host, edit_log_port=9010, role=role, is_master=False, alive=alive)


def test_fe_quorum_and_running_tasks() -> None:
    view = MemberView(
        [fe("a", "FOLLOWER", True), fe("b", "FOLLOWER", False), fe("c", "FOLLOWER", True)], [], None
    )
    assert not quorum_decision(view, ["c"], "fe-2").allowed
    assert quorum_decision(view, ["b"], "fe-1").allowed  # a dead one can go
    healthy = MemberView(
        [fe("a", "FOLLOWER", True), fe("b", "FOLLOWER", True), fe("c", "FOLLOWER", True)], [], None
    )
    assert quorum_decision(healthy, ["c"], "fe-2").allowed
    assert running_tasks(["BE_ID", "QUERY_ID"], [(10001, "q1"), (10002, "q2"), (10001, "q3")], 10001) == 2


def test_gates_follow_doris() -> None:
    from doris_operator.api.validation import parse_cluster
    from doris_operator.doris.client import Backend
    from doris_operator.reconcile.readiness import plan_gates

    dc = parse_cluster(
        {
            "apiVersion": "doris.selectdb.com/v1",
            "kind": "DorisCluster",
            "metadata": {"name": "c", "namespace": "n"},
            "spec": {"feSpec": {"image": "a/fe:1"}, "beSpec": {"image": "a/be:1"}},
        }
    )

    def gated(name: str, current: str | None) -> dict[str, Any]:
        return {**pod(name, "n1"), "gated": True, "memberAlive": current}

    def be(host: str, **kw: Any) -> Backend:
        return Backend(backend_id=1, host=host, heartbeat_port=9050, alive=kw.pop("alive", True),
                       system_decommissioned=kw.pop("dec", False), tablet_num=0, **kw)  # fmt: skip

    host = "c-be-0.c-be-internal.n.svc.cluster.local"
    fes = [fe("c-fe-0.c-fe-internal.n.svc.cluster.local", "FOLLOWER", True)]
    pods = [gated("c-be-0", None), gated("c-fe-0", "True")]
    assert [(g.pod, g.status) for g in plan_gates(dc, pods, MemberView(fes, [be(host)], None))] == [
        ("c-be-0", "True")
    ]
    for backend, reason in (
        (be(host, alive=False), "NotAlive"),
        (be(host, dec=True), "Decommissioning"),
        (be(host, query_disabled=True), "QueryDisabled"),
    ):
        (change,) = plan_gates(dc, [gated("c-be-0", "True")], MemberView(fes, [backend], None))
        assert (change.status, change.reason) == ("False", reason)
    assert not plan_gates(dc, [gated("c-be-0", "True")], MemberView())  # no FE answered: unchanged
    assert not plan_gates(dc, [gated("c-be-0", None)], MemberView(fes, [], None))  # not yet registered


def test_no_be_failover_without_fe_quorum() -> None:
    pods = [pod("c-be-0", "n1"), pod("c-fe-1", "n1")]
    plan = fo.plan(snap(pods, {"n1": down(900)}, {"c-be-0": False, "c-fe-1": False}, fe_quorum=False))
    assert [d.member.pod for d in plan.delete] == ["c-fe-1"]
    assert any("no quorum" in w for w in plan.waiting)
    view = MemberView(
        [fe("a", "FOLLOWER", True), fe("b", "FOLLOWER", False), fe("c", "FOLLOWER", False)], [], None
    )
    assert fo.fe_quorum(view) is False and fo.fe_quorum(MemberView()) is None


def test_eviction_webhook_configuration_fails_open() -> None:
    from doris_operator.webhook.admission import REGISTRY
    from doris_operator.webhook.configs import ConfigOptions, webhook_configurations

    opts = ConfigOptions(url="https://127.0.0.1:9443", validation_failure_policy="Fail", evictions=True)
    (validating, _) = webhook_configurations(opts, REGISTRY, b"ca")
    hook = validating["webhooks"][-1]
    assert hook["name"] == "evictions.pods.doris.apache.org"
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "NoneOnDryRun"
    assert hook["rules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/eviction"], "operations": ["CREATE"],
         "scope": "Namespaced"}
    ]  # fmt: skip
    assert hook["clientConfig"]["url"] == "https://127.0.0.1:9443/validate-eviction"
    assert "matchConditions" not in hook
    without = webhook_configurations(ConfigOptions(), REGISTRY, b"ca")[0]["webhooks"]
    assert all(h["name"] != "evictions.pods.doris.apache.org" for h in without)


def test_a_member_matches_its_pod_in_any_cluster_domain() -> None:
    from doris_operator.reconcile.members import host_matches

    hosts = ["c-be-0.c-be-internal.ns.svc", "10.1.2.3"]
    for host in ("c-be-0.c-be-internal.ns.svc.cluster.local", "c-be-0.c-be-internal.ns.svc.corp.local",
                 "C-BE-0.c-be-internal.ns.svc", "10.1.2.3"):  # fmt: skip
        assert host_matches(host, hosts), host
    for host in ("c-be-1.c-be-internal.ns.svc.cluster.local", "c-be-0.c-be-internal.other.svc", "10.1.2.30"):
        assert not host_matches(host, hosts), host


async def test_fault_recovery_reads_doris_on_the_open_session_and_asks_each_fe_only_when_it_fails(
    monkeypatch: Any,
) -> None:
    """One login per reconcile: the view comes from the reconcile's open FE session; the FEs are asked
    one by one only when that session fails or none is open."""
    from doris_operator.api.lenient import parse_stored_cluster
    from doris_operator.doris.client import Credentials, UnreachableError
    from doris_operator.reconcile import faults
    from doris_operator.reconcile.members import FeAccess

    dc = parse_stored_cluster(
        {
            "apiVersion": "doris.selectdb.com/v1",
            "kind": "DorisCluster",
            "metadata": {"name": "dc", "namespace": "ns", "uid": "u"},
            "spec": {"feSpec": {"image": "fe", "replicas": 1}},
        }
    )
    asked: list[str] = []

    async def each_fe(*args: Any, **kwargs: Any) -> MemberView:
        asked.append("each FE")
        return MemberView(error="nobody")

    async def session() -> MemberView:
        asked.append("session")
        return MemberView([fe("dc-fe-0", "FOLLOWER", True)], [], None, source="fe:9030")

    async def failing() -> MemberView:
        asked.append("session")
        raise UnreachableError(2003, "gone")

    async def creds() -> Credentials:
        return Credentials()

    async def record(*args: Any) -> None:
        pass

    class Kube:
        def secret_refused(self, name: str, namespace: str) -> None:
            pass

    kube: Any = Kube()
    monkeypatch.setattr(faults, "read_members", each_fe)
    for members, expected in ((session, ["session"]), (failing, ["session", "each FE"]), (None, ["each FE"])):
        asked.clear()
        await faults.reconcile_faults(dc, [], None, {}, kube, FeAccess(9030), creds, record, members=members)
        assert asked == expected
