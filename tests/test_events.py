"""Events aggregated: one "Created" Event per run of the executor naming what it made (held while the
plan holds creations back, so a new cluster is one Event), and the event log behind Kube.event: a repeat
counts on the Event written before, and a token bucket per involved object keeps a flapping reason from
flooding the apiserver.  (Against the real apiserver: test_k8s_calls.py.)"""

from __future__ import annotations

from typing import Any

from doris_operator.k8s import EventLog
from doris_operator.reconcile.act import (
    HOLD_CREATED,
    AppliedMemory,
    Apply,
    EventRecorder,
    Executor,
    created_message,
)
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


def _held_executor(
    kube: FakeKube, now: list[float], uid: str = "u1", held: dict[Any, Any] | None = None
) -> Executor:
    owner = {**OWNER, "metadata": {**OWNER["metadata"], "uid": uid}}  # type: ignore[dict-item]
    return Executor(
        kube,  # type: ignore[arg-type]
        AppliedMemory(),
        EventRecorder(kube),  # type: ignore[arg-type]
        owner,
        Findings(),
        held={} if held is None else held,
        clock=lambda: now[0],
    )


async def test_a_new_cluster_is_one_created_event_though_its_bes_wait_for_an_fe() -> None:
    kube, now, held = FakeKube(), [0.0], {}  # type: ignore[var-annotated]
    await _held_executor(kube, now, held=held).run(
        [Apply(obj("StatefulSet", "dc-fe")), Apply(obj("Service", "dc-fe-service"))], more_to_create=True
    )
    assert kube.events == []  # the BEs are held back: so is the Event
    now[0] = 5.0
    await _held_executor(kube, now, held=held).run([], more_to_create=True)  # the FE still does not answer
    assert kube.events == []
    await _held_executor(kube, now, held=held).run([])  # not a plan's run (a status write): no effect
    assert kube.events == [] and held
    now[0] = 9.0
    await _held_executor(kube, now, held=held).run([Apply(obj("StatefulSet", "dc-be"))], more_to_create=False)
    assert kube.events == [("Normal", "Created", "created StatefulSet dc-fe, dc-be; Service dc-fe-service")]
    assert held == {}
    await _held_executor(kube, now, held=held).run([Apply(obj("Service", "dc-be-service"))])
    assert kube.events[1:] == [("Normal", "Created", "created Service dc-be-service")]  # each run its own


async def test_a_held_created_event_is_told_after_the_hold_and_not_for_another_uid() -> None:
    kube, now, held = FakeKube(), [0.0], {}  # type: ignore[var-annotated]
    await _held_executor(kube, now, held=held).run([Apply(obj("StatefulSet", "dc-fe"))], more_to_create=True)
    now[0] = HOLD_CREATED + 0.1  # the FE never answered: what was made is told anyway
    await _held_executor(kube, now, held=held).run([], more_to_create=True)
    assert kube.events == [("Normal", "Created", "created StatefulSet dc-fe")]
    await _held_executor(kube, now, held=held).run([], more_to_create=True)
    assert len(kube.events) == 1  # told once
    await _held_executor(kube, now, held=held).run([Apply(obj("StatefulSet", "dc-fe"))], more_to_create=True)
    now[0] += 1
    # the DorisCluster was deleted and made again under the same name: its creations are its own
    await _held_executor(kube, now, uid="u2", held=held).run(
        [Apply(obj("StatefulSet", "dc-be"))], more_to_create=False
    )
    assert kube.events[1:] == [("Normal", "Created", "created StatefulSet dc-be")]
