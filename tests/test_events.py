"""Events aggregated: one "Created" Event per run of the executor naming what it made, and the event
log behind Kube.event: a repeat counts on the Event written before, and a token bucket per involved
object keeps a flapping reason from flooding the apiserver.  (Against the real apiserver:
test_k8s_calls.py.)"""

from __future__ import annotations

from typing import Any

from doris_operator.k8s import EventLog
from doris_operator.reconcile.act import AppliedMemory, Apply, EventRecorder, Executor, created_message
from doris_operator.reconcile.status import Findings

OWNER = {
    "apiVersion": "doris.selectdb.com/v1",
    "kind": "DorisCluster",
    "metadata": {"name": "dc", "namespace": "ns"},
}


class FakeKube:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.applied: list[str] = []

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(obj["metadata"]["name"])
        return {
            **obj,
            "metadata": {**obj["metadata"], "uid": f"uid-{obj['metadata']['name']}", "generation": 1},
        }

    async def event(self, involved: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason, message))


def obj(kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "ns"}, "spec": {}}


def test_created_message_groups_by_kind_in_the_order_made() -> None:
    made = [
        ("StatefulSet", "dc-fe"),
        ("Service", "dc-fe-service"),
        ("StatefulSet", "dc-be"),
        ("Service", "x"),
    ]
    assert created_message(made) == "created StatefulSet dc-fe, dc-be; Service dc-fe-service, x"


async def test_one_created_event_per_run() -> None:
    kube = FakeKube()
    executor = Executor(kube, AppliedMemory(), EventRecorder(kube), OWNER, Findings())  # type: ignore[arg-type]
    live = obj("Service", "dc-old")
    live["metadata"]["uid"] = "u"
    await executor.run(
        [
            Apply(obj("StatefulSet", "dc-fe")),
            Apply(obj("Service", "dc-fe-service")),
            Apply(obj("StatefulSet", "dc-be")),
            Apply(live, live),  # exists: applied, not created
        ]
    )
    assert kube.applied == ["dc-fe", "dc-fe-service", "dc-be", "dc-old"]
    assert kube.events == [("Normal", "Created", "created StatefulSet dc-fe, dc-be; Service dc-fe-service")]
    await executor.run([Apply(live, live)])
    assert len(kube.events) == 1  # nothing created: no Event


def test_a_repeat_is_remembered_by_name_and_counted() -> None:
    log = EventLog()
    key = ("ns", "DorisCluster", "dc", "Warning", "FEUnreachable", "can't ask the FE")
    assert log.written(key) is None
    log.remember(key, "dc.abc", 1)
    prior = log.written(key)
    assert prior is not None and (prior.name, prior.count) == ("dc.abc", 1)
    log.remember(key, prior.name, prior.count + 1)
    assert log.written(key).count == 2  # type: ignore[union-attr]
    log.forget(key)
    assert log.written(key) is None


def test_the_event_log_is_bounded() -> None:
    log = EventLog(size=3)
    for i in range(5):
        log.remember(i, f"e{i}", 1)
        assert log.admit(i)
    assert [log.written(i) is not None for i in range(5)] == [False, False, True, True, True]
    assert len(log._buckets) == 3


def test_a_flapping_object_is_rate_limited_and_recovers() -> None:
    now = [0.0]
    log = EventLog(burst=5, refill=10.0, clock=lambda: now[0])
    assert all(log.admit("dc") for _ in range(5))
    assert not log.admit("dc") and log.dropped == 1
    assert log.admit("other")  # per involved object
    now[0] = 9.0
    assert not log.admit("dc")
    now[0] = 10.5  # one token back (a refused admit takes none)
    assert log.admit("dc") and not log.admit("dc")
    now[0] = 1000.0  # refilled, never beyond the burst
    assert sum(log.admit("dc") for _ in range(10)) == 5
