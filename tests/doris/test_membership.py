"""Scale-in decisions: which statements to send and how many pods may stay, with positive confirmation
only (a node that is not found is unknown, never gone)."""

from __future__ import annotations

import dataclasses

from doris_operator.doris.client import Backend, Frontend
from doris_operator.doris.identity import Member, PodRef
from doris_operator.doris.membership import plan_backends, plan_frontends

NS, SVC = "ns", "dc-be-internal"


def host(i: int, comp: str = "be", domain: str = "cluster.local") -> str:
    return f"dc-{comp}-{i}.dc-{comp}-internal.{NS}.svc.{domain}"


def be(
    i: int,
    tablets: int = 10,
    decommissioned: bool = False,
    alive: bool = True,
    domain: str = "cluster.local",
    at: str | None = None,
) -> Backend:
    return Backend(
        backend_id=10000 + i,
        host=at or host(i, domain=domain),
        heartbeat_port=9050,
        alive=alive,
        system_decommissioned=decommissioned,
        tablet_num=tablets,
        data_used_capacity=tablets * 100,
        avail_capacity=10_000,
    )


def pods(n: int, comp: str = "be", ips: bool = False, **override: PodRef) -> list[PodRef]:
    out = [
        PodRef(i, f"dc-{comp}-{i}", f"dc-{comp}-internal", NS, ip=f"10.1.0.{i}" if ips else None, ready=True)
        for i in range(n)
    ]
    for key, ref in override.items():
        out[int(key.removeprefix("p"))] = ref
    return out


def node(i: int, domain: str = "cluster.local") -> tuple[str, int]:
    return (host(i, domain=domain), 9050)


def test_scale_in_starts_decommission_records_it_and_keeps_the_pods() -> None:
    plan = plan_backends(3, 5, pods(5), [be(i) for i in range(5)])
    assert plan.decommission == [node(3), node(4)] and plan.unknown == []
    assert plan.replicas == 5 and plan.draining == {"dc-be-3": 10, "dc-be-4": 10}
    assert plan.members[4] == Member(node_id="10004", host=host(4), port=9050, leaving=True)
    assert not plan.members[0].leaving and plan.members[0].node_id == "10000"


def test_any_cluster_domain_is_matched_and_learnt() -> None:
    plan = plan_backends(3, 5, pods(5), [be(i, domain="corp.local") for i in range(5)])
    assert plan.decommission == [node(3, "corp.local"), node(4, "corp.local")]
    assert plan.registration == "FQDN, cluster domain corp.local" and plan.replicas == 5


def test_ip_registered_bes_are_matched_by_pod_ip_then_by_the_record() -> None:
    bes = [be(i, at=f"10.1.0.{i}") for i in range(5)]
    first = plan_backends(3, 5, pods(5, ips=True), bes)
    assert first.decommission == [("10.1.0.3", 9050), ("10.1.0.4", 9050)] and first.registration == "pod IP"
    # the leaving pod 4 is down now (no pod, no IP): its record still names its BE
    down = pods(5, ips=True, p4=PodRef(4, "dc-be-4", SVC, NS, exists=False))
    draining = [*bes[:3], be(3, 4, True, at="10.1.0.3"), be(4, 6, True, at="10.1.0.4")]
    plan = plan_backends(3, 5, down, draining, first.members)
    assert plan.unknown == [] and plan.draining == {"dc-be-3": 4, "dc-be-4": 6} and plan.replicas == 5
    # only the IP was ever recorded (from Kubernetes, no Doris call): still matched
    ips = {o: Member(ip=f"10.1.0.{o}") for o in range(5)}
    plan = plan_backends(3, 5, down, bes, ips)
    assert plan.decommission == [("10.1.0.3", 9050), ("10.1.0.4", 9050)] and plan.unknown == []


def test_not_found_is_unknown_and_nothing_shrinks() -> None:
    # registered under names the operator doesn't recognise: nothing decommissioned, nothing shrinks
    odd = [be(i, at=f"be{i}.example") for i in range(5)]
    plan = plan_backends(3, 5, pods(5), odd)
    assert plan.replicas == 5 and plan.decommission == [] and len(plan.unknown) == 2
    assert (
        "no backend registered as dc-be-3.dc-be-internal.ns.svc.<domain> for pod dc-be-3" in plan.unknown[0]
    )
    # a BE that vanished without this operator decommissioning it is not "gone"
    known = {o: Member(node_id=str(10000 + o), host=host(o)) for o in range(5)}
    plan = plan_backends(3, 5, pods(5), [be(i) for i in range(3)], known)
    assert plan.replicas == 5 and "never decommissioned it" in plan.unknown[0]


def test_an_empty_backend_list_shrinks_nothing() -> None:
    known = {o: Member(node_id=str(10000 + o), leaving=o >= 3) for o in range(5)}
    plan = plan_backends(3, 5, pods(5), [], known)
    assert plan.replicas == 5 and plan.decommission == [] and "lists no backend" in plan.unknown[0]


def test_draining_keeps_the_pods_until_empty_then_drops_and_shrinks() -> None:
    started = plan_backends(3, 5, pods(5), [be(i) for i in range(5)]).members
    draining = plan_backends(
        3, 5, pods(5), [*[be(i) for i in range(3)], be(3, 4, True), be(4, 0, True)], started
    )
    assert (draining.replicas, draining.decommission, draining.dropp) == (4, [], [node(4)])
    assert draining.draining == {"dc-be-3": 4}  # pod 4 is empty: the StatefulSet may lose it already
    done = plan_backends(3, 5, pods(5), [be(i) for i in range(3)], draining.members)  # Doris dropped them
    assert (done.replicas, done.decommission, done.draining, done.unknown) == (3, [], {}, [])


def test_a_never_scheduled_pod_never_registered() -> None:
    pending = pods(5, p4=PodRef(4, "dc-be-4", SVC, NS, exists=True, unschedulable=True))
    plan = plan_backends(4, 5, pending, [be(i) for i in range(4)])
    assert (plan.replicas, plan.unknown) == (4, [])


def test_a_node_claimed_by_two_pods_is_unknown() -> None:
    known = {4: Member(node_id="10003")}  # an old record says pod 4 was BE 10003, pod 3's FQDN says mine
    plan = plan_backends(3, 5, pods(5), [be(i) for i in range(4)], known)
    assert plan.replicas == 5 and any("matches several pods" in u for u in plan.unknown)
    assert plan.decommission == []


def test_scaling_back_up_cancels_only_what_this_operator_decommissioned() -> None:
    bes = [*[be(i) for i in range(3)], be(3, 4, True), be(4, 2, True)]
    ours = {3: Member(node_id="10003", leaving=True)}
    plan = plan_backends(5, 5, pods(5), bes, ours)
    assert plan.cancel == [node(3)] and plan.replicas == 5 and not plan.members[3].leaving


def test_refused_when_nothing_would_hold_the_data() -> None:
    plan = plan_backends(0, 2, pods(2), [be(0), be(1)])
    assert (
        plan.refused and "no BE would remain" in plan.refused and plan.replicas == 2 and not plan.decommission
    )
    full = [dataclasses.replace(be(0), avail_capacity=5), be(1, tablets=1000)]
    plan = plan_backends(1, 2, pods(2), full)
    assert plan.refused and "bytes free" in plan.refused and plan.replicas == 2


def test_scale_out_needs_nothing() -> None:
    plan = plan_backends(5, 3, pods(5), [be(i) for i in range(3)])
    assert (plan.replicas, plan.decommission, plan.cancel, plan.unknown) == (5, [], [], [])


def fe(i: int, role: str, master: bool = False, connected: bool = False) -> Frontend:
    return Frontend(
        name=f"fe_{i}",
        host=host(i, "fe"),
        edit_log_port=9010,
        role=role,
        is_master=master,
        alive=True,
        current_connected=connected,
    )


FES = [fe(0, "FOLLOWER", True), fe(1, "FOLLOWER"), fe(2, "FOLLOWER"), fe(3, "OBSERVER"), fe(4, "OBSERVER")]


def test_fe_scale_in_drops_observers_first_and_the_connected_one_last() -> None:
    fes = [*FES[:3], fe(3, "OBSERVER", connected=True), FES[4]]
    plan = plan_frontends(3, 5, 3, pods(5, "fe"), fes)
    assert plan.drop_observers == [(host(4, "fe"), 9010), (host(3, "fe"), 9010)] and plan.replicas == 5
    after = plan_frontends(3, 5, 3, pods(5, "fe"), FES[:3], plan.members)
    assert (after.drop_observers, after.replicas, after.unknown) == ([], 3, [])
    unknown = plan_frontends(3, 5, 3, pods(5, "fe"), FES[:3])  # never seen, never dropped: unknown
    assert unknown.replicas == 5 and "no frontend registered" in unknown.unknown[0]


def test_fe_scale_in_below_election_number_is_refused() -> None:
    plan = plan_frontends(2, 3, 3, pods(3, "fe"), FES[:3])
    assert (
        plan.refused and "electionNumber" in plan.refused and plan.replicas == 3 and not plan.drop_observers
    )


def test_fe_never_drops_a_follower_or_the_master() -> None:
    odd = [fe(0, "FOLLOWER"), fe(1, "FOLLOWER", True)]
    plan = plan_frontends(1, 2, 1, pods(2, "fe"), odd)
    assert plan.refused and "master" in plan.refused and plan.replicas == 2
