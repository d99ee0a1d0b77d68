"""reconcile_membership's I/O against a fake FE: BEs are decided before FEs (so the FE answering the BE
questions is never dropped first), the record is written before the statement, errors become Degraded
findings and nothing shrinks, and a malformed FE address is a clear error."""

from __future__ import annotations

from typing import Any

import pytest

from doris_operator.api.validation import parse_cluster
from doris_operator.builders.config import ComponentConfig
from doris_operator.doris.client import Backend, Credentials, DorisError, Frontend, Timeouts, UnreachableError
from doris_operator.doris.identity import Match
from doris_operator.reconcile.intent import MEMBERS, QUERIES_DISABLED
from doris_operator.reconcile.membership import (
    FE_ADDRESS_ANNOTATION,
    FeSession,
    fe_endpoint,
    reconcile_membership,
)
from doris_operator.reconcile.rollout import RolloutMemory, _enable_queries, persistent_storage
from doris_operator.reconcile.status import Findings

NS = "ns"


def cluster(fe: int, be: int, annotations: dict[str, str] | None = None) -> Any:
    return parse_cluster(
        {
            "apiVersion": "doris.selectdb.com/v1",
            "kind": "DorisCluster",
            "metadata": {"name": "dc", "namespace": NS, "generation": 2, "annotations": annotations or {}},
            "spec": {
                "feSpec": {"replicas": fe, "image": "selectdb/doris.fe-ubuntu:2.1.8", "electionNumber": 3},
                "beSpec": {"replicas": be, "image": "selectdb/doris.be-ubuntu:2.1.8"},
            },
        }
    )


def host(comp: str, i: int) -> str:
    return f"dc-{comp}-{i}.dc-{comp}-internal.{NS}.svc.corp.local"


class FakeFe:
    def __init__(self, journal: list[str], fail: Exception | None = None) -> None:
        self.host, self.port, self.credentials, self.timeouts = "fe", 9030, Credentials(), Timeouts()
        self.journal, self.fail = journal, fail

    def set_forward_to_master(self) -> None:
        if self.fail is not None:
            raise self.fail

    def show_frontends(self) -> list[Frontend]:
        roles = ["FOLLOWER"] * 3 + ["OBSERVER"] * 2
        return [
            Frontend(f"fe_{i}", host("fe", i), 9010, roles[i], i == 0, True, current_connected=i == 3)
            for i in range(5)
        ]

    def show_backends(self) -> list[Backend]:
        return [
            Backend(10000 + i, host("be", i), 9050, True, False, 10, avail_capacity=1 << 30) for i in range(5)
        ]

    def decommission_backends(self, nodes: Any) -> None:
        self.journal.append(f"DECOMMISSION {sorted(h for h, _ in nodes)}")

    def drop_observer(self, h: str, p: int) -> None:
        self.journal.append(f"DROP OBSERVER {h}")

    def close(self) -> None:
        pass


def sts(comp: str, replicas: int) -> dict[str, Any]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": f"dc-{comp}", "annotations": {}},
        "spec": {"replicas": replicas},
    }


def pods() -> list[dict[str, Any]]:
    return [
        {"metadata": {"name": f"dc-{c}-{i}"}, "ready": True, "podIP": f"10.0.{c == 'be':d}.{i}"}
        for c in ("fe", "be")
        for i in range(5)
    ]


async def run(journal: list[str], fail: Exception | None = None) -> tuple[Findings, list[dict[str, Any]]]:
    dc = cluster(3, 3)
    desired = [sts("fe", 3), sts("be", 3)]
    observed = {("StatefulSet", "dc-fe"): sts("fe", 5), ("StatefulSet", "dc-be"): sts("be", 5)}

    async def creds() -> Credentials:
        return Credentials()

    def connect(*_: Any) -> Any:
        return FakeFe(journal, fail)

    async def record(*_: str) -> None:
        pass

    async def annotate(kind: str, name: str, values: dict[str, str | None]) -> None:
        journal.append(f"annotate {name} {'leaving' in (values.get(MEMBERS) or '')}")

    findings = Findings()
    session = FeSession("fe", 9030, creds, connect=connect)
    await reconcile_membership(dc, desired, observed, pods(), {}, session, findings, record, annotate)
    return findings, desired


async def test_be_before_fe_records_before_statements_and_the_connected_fe_last() -> None:
    journal: list[str] = []
    findings, desired = await run(journal)
    statements = [j for j in journal if not j.startswith("annotate")]
    assert statements == [
        f"DECOMMISSION {[host('be', 3), host('be', 4)]}",
        f"DROP OBSERVER {host('fe', 4)}",
        f"DROP OBSERVER {host('fe', 3)}",  # the FE this session is connected to, last
    ]
    assert journal.index("annotate dc-be True") < journal.index(statements[0])
    assert [d["spec"]["replicas"] for d in desired] == [5, 5]  # nothing shrinks before it is confirmed
    assert findings.draining["be"] == {"dc-be-3": 10, "dc-be-4": 10} and not findings.degraded


@pytest.mark.parametrize(
    ("fail", "reason"),
    [(UnreachableError(2003, "Can't connect"), "FEUnreachable"), (ValueError("bad row"), "MembershipError")],
)
async def test_errors_become_degraded_and_nothing_shrinks(fail: Exception, reason: str) -> None:
    journal: list[str] = []
    findings, desired = await run(journal, fail)
    assert [d["spec"]["replicas"] for d in desired] == [5, 5]
    assert {r for problems in findings.degraded.values() for r, _ in problems} == {reason}
    assert not [j for j in journal if not j.startswith("annotate")]


def test_a_malformed_fe_address_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="must be host:port"):
        fe_endpoint(cluster(3, 3, {FE_ADDRESS_ANNOTATION: "fe:notaport"}), ComponentConfig("fe"), True)
    assert fe_endpoint(cluster(3, 3), ComponentConfig("fe")) == ("dc-fe-service.ns.svc", 9030)


async def test_an_unusable_session_fails_every_call() -> None:
    session = FeSession.unusable("annotation doris.apache.org/fe-address must be host:port")
    with pytest.raises(UnreachableError, match="must be host:port"):
        await session.view()


def test_persistent_storage_means_every_be_data_path_on_a_claim() -> None:
    dc = cluster(3, 3)
    assert not persistent_storage(dc, "be")  # emptyDir, as in every sample
    template = {"persistentVolumeClaimSpec": {"resources": {"requests": {"storage": "1Gi"}}}}
    spec = dc.to_dict()
    spec["spec"]["beSpec"]["persistentVolumes"] = [{"name": "data", **template}]
    assert persistent_storage(parse_cluster(spec), "be")
    spec["spec"]["beSpec"]["persistentVolumes"] = [
        {"name": "log", "mountPath": "/opt/apache-doris/be/log", **template}
    ]
    assert not persistent_storage(parse_cluster(spec), "be")  # only the logs are on a volume


async def test_a_doris_error_in_re_enable_degrades_and_keeps_the_mark() -> None:
    class Failing(FakeFe):
        def modify_backend(self, *_: Any, **__: Any) -> None:
            raise DorisError(1105, "backend does not exists[x:9050]")

    async def creds() -> Credentials:
        return Credentials()

    session = FeSession("fe", 9030, creds, connect=lambda *_: Failing([]))
    be = Backend(10002, host("be", 2), 9050, True, False, 10, query_disabled=True)
    pod = {
        "metadata": {"name": "dc-be-2", "annotations": {QUERIES_DISABLED: f"{host('be', 2)}:9050"}},
        "ready": True,
    }
    findings, removed = Findings(), []

    async def annotate(kind: str, name: str, values: dict[str, str | None]) -> None:
        removed.append(name)

    async def record(*_: str) -> None:
        pass

    memory = RolloutMemory()
    marked = {"dc-be-2": (host("be", 2), 9050)}
    await _enable_queries(
        [pod], marked, {"dc-be-2": Match(node=be)}, memory, session, findings, record, annotate
    )
    assert findings.degraded["be"][0][0] == "QueriesNotEnabled" and removed == []
