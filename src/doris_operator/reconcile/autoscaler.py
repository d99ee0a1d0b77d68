"""DorisClusterAutoscaler: observe -> plan -> act, every ``interval`` seconds per autoscaler (as the HPA
controller syncs) and at once when an autoscaler changes.

* observe: the autoscaler and its DorisCluster (from the indexes), the pods' usage from metrics.k8s.io,
  Prometheus queries, and for BEs the data the FE reports (the fewest BEs that hold it);
* plan: the HPA algorithm (reconcile/hpa_algorithm.py) per component, pure;
* act: the DorisCluster's ``<comp>Spec.replicas`` written by server-side apply under the field manager
  ``doris-operator-autoscaler`` (a BE scale-in then goes through the decommission path and its data
  guard, like a hand edit), the autoscaler's status, Events.

The stabilization windows' recommendations and the policies' scale events are kept in status, so a
restarted operator keeps its windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..access import credentials_refused
from ..api.doriscluster import DorisCluster
from ..api.dorisclusterautoscaler import (
    SCALED_COMPONENTS,
    ComponentRange,
    DorisClusterAutoscaler,
    MetricSpec,
    ScaledComponent,
)
from ..api.validation import parse_quantity
from ..builders import names
from ..builders.config import config_map_names
from ..builders.config import resolve as resolve_config
from ..doris.client import Backend, Credentials, DorisError
from . import hpa_algorithm as algo
from .cn_hpa import hpa_owns_cn
from .membership import FeSession, credentials, fe_endpoint
from .observed import Obj
from .status import carry_times, condition, without_times

log = logging.getLogger(__name__)

FIELD_MANAGER = "doris-operator-autoscaler"
DATA_HEADROOM = 0.8
"""A BE scale-in leaves the remaining BEs at most this full."""
FLOOR_MAX_AGE = 60.0
"""Seconds a BE data floor read from the FE is reused for a decision that doesn't lower the BEs (see
:class:`DataFloors`); a scale-in, or a decision the floor holds up, always reads it again."""


# ---- observe -------------------------------------------------------------------------------------------


@dataclass
class MetricReading:
    spec: MetricSpec
    pods: list[algo.PodSample] | None = None
    """Resource metrics: per pod of the component."""
    value: float | None = None
    """Prometheus: the query's value."""
    error: str | None = None


@dataclass
class ComponentSnapshot:
    comp: ScaledComponent
    bounds: ComponentRange
    current: int
    """The DorisCluster's replicas (what the autoscaler sets)."""
    readings: list[MetricReading]
    data_floor: int
    busy: str | None
    """Why the cluster can't take a new scale now (a decommission or rollout in progress)."""
    previous: Obj
    """This component's status from last time."""
    conflict: str | None = None
    """Another autoscaler of this component (or the CN HPA of cnSpec.autoScalingPolicy): no scaling."""


@dataclass
class Snapshot:
    autoscaler: DorisClusterAutoscaler
    cluster: Obj | None
    components: list[ComponentSnapshot] = field(default_factory=list)
    now: float = 0.0
    invalid: str | None = None


# ---- plan ----------------------------------------------------------------------------------------------


@dataclass
class Plan:
    replicas: dict[str, int]
    """``beSpec``/``cnSpec`` -> replicas to write (only changes)."""
    status: Obj
    events: list[tuple[str, str, str]]
    """(type, reason, message)."""


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def _target_text(spec: MetricSpec) -> str:
    target = spec.resource.target if spec.resource else spec.prometheus.target if spec.prometheus else None
    if target is None:
        return ""
    if target.type == "Utilization":
        return f"{target.average_utilization}%"
    return f"{target.average_value if target.type == 'AverageValue' else target.value}"


def _metric_name(spec: MetricSpec) -> str:
    if spec.resource is not None:
        return spec.resource.name
    return spec.prometheus.query if spec.prometheus else spec.type


def _proposal(reading: MetricReading, current: int) -> algo.Proposal | None:
    spec = reading.spec
    if spec.resource is not None and reading.pods is not None:
        target = spec.resource.target
        if target.type == "Utilization" and target.average_utilization:
            return algo.utilization_proposal(current, reading.pods, target.average_utilization)
        sampled = [p.usage for p in reading.pods if p.usage is not None]
        if not sampled:
            return None
        average = target.type == "AverageValue"
        goal = float(parse_quantity((target.average_value if average else target.value) or 0))
        return algo.value_proposal(current, sum(sampled), goal, average)
    if spec.prometheus is not None and reading.value is not None:
        target = spec.prometheus.target
        average = target.type == "AverageValue"
        goal = float(parse_quantity((target.average_value if average else target.value) or 0))
        return algo.value_proposal(current, reading.value, goal, average)
    return None


def plan(snap: Snapshot) -> Plan:
    """The replicas to write, the status and the Events; no I/O."""
    dca = snap.autoscaler
    generation = dca.metadata.generation
    old = (dca.status.model_dump(by_alias=True, exclude_none=True) if dca.status else {}) or {}
    status: Obj = {"observedGeneration": generation}
    events: list[tuple[str, str, str]] = []
    replicas: dict[str, int] = {}
    now_text = _iso(snap.now)
    if snap.invalid or snap.cluster is None:
        reason, message = (
            ("InvalidCluster", snap.invalid or "")
            if snap.invalid
            else ("ClusterNotFound", f"DorisCluster {dca.spec.cluster} does not exist in {dca.namespace}")
        )
        status["conditions"] = carry_times(
            [
                condition("Ready", False, reason, message, generation),
                condition("Degraded", True, reason, message, generation),
            ],
            old.get("conditions"),
            now_text,
        )
        before: Obj = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {})
        return Plan({}, status, [] if before.get("reason") == reason else [("Warning", reason, message)])
    problems: list[str] = []
    for comp in snap.components:
        prev = comp.previous
        if comp.conflict is not None:
            problems.append(f"{comp.comp}: {comp.conflict}")
            conflict_conds = [
                condition("AbleToScale", False, "AmbiguousAutoscaler", comp.conflict, generation),
                condition("ScalingActive", False, "AmbiguousAutoscaler", comp.conflict, generation),
            ]
            status[comp.comp] = {
                "currentReplicas": comp.current,
                "desiredReplicas": comp.current,
                "conditions": carry_times(conflict_conds, prev.get("conditions"), now_text),
            }
            continue
        history = [
            algo.TimedReplicas(_epoch(r["time"]), int(r["replicas"]))
            for r in prev.get("recommendations") or []
        ]
        scale_events = [
            algo.TimedReplicas(_epoch(e["time"]), int(e["delta"])) for e in prev.get("scaleEvents") or []
        ]
        metrics_out: list[Obj] = []
        proposals: list[int] = []
        errors: list[str] = []
        for reading in comp.readings:
            proposal = None if reading.error else _proposal(reading, comp.current)
            entry: Obj = {"name": _metric_name(reading.spec), "target": _target_text(reading.spec)}
            if proposal is not None:
                entry["current"] = proposal.current_value
                entry["proposedReplicas"] = proposal.replicas
                proposals.append(proposal.replicas)
            else:
                errors.append(reading.error or f"no value for {_metric_name(reading.spec)} yet")
            metrics_out.append(entry)
        scale_down = dca.spec.scale_down.enabled if dca.spec.scale_down else True
        conds: list[Obj] = []
        out: Obj = {"currentReplicas": comp.current, "currentMetrics": metrics_out}
        for key in ("lastScaleTime", "lastDecision"):
            if prev.get(key) is not None:
                out[key] = prev[key]
        if errors and not proposals:
            # no metric answered: no decision (as the HPA: ScalingActive False), the replicas stay
            message = "; ".join(errors)
            conds.append(
                condition(
                    "AbleToScale",
                    comp.busy is None,
                    "ReadyForNewScale" if comp.busy is None else "ClusterBusy",
                    comp.busy or "",
                    generation,
                )
            )
            conds.append(condition("ScalingActive", False, "FailedGetMetrics", message, generation))
            conds.append(condition("ScalingLimited", False, "DesiredWithinRange", "", generation))
            out.update(
                desiredReplicas=comp.current,
                recommendations=prev.get("recommendations"),
                scaleEvents=prev.get("scaleEvents"),
            )
            problems.append(f"{comp.comp}: {message}")
            out["conditions"] = carry_times(conds, prev.get("conditions"), now_text)
            status[comp.comp] = {k: v for k, v in out.items() if v is not None}
            continue
        decision = algo.decide(
            now=snap.now,
            current=comp.current,
            proposals=proposals,
            min_replicas=comp.bounds.min_replicas,
            max_replicas=comp.bounds.max_replicas,
            data_floor=comp.data_floor if comp.comp == "be" else 0,
            scale_down_enabled=scale_down,
            behavior=dca.spec.behavior,
            history=history,
            events=scale_events,
        )
        target = decision.replicas
        if comp.busy is not None and target != comp.current:
            conds.append(condition("AbleToScale", False, "ClusterBusy", comp.busy, generation))
            target = comp.current
        else:
            conds.append(
                condition(
                    "AbleToScale", True, "ReadyForNewScale", "the cluster can take a new scale", generation
                )
            )
        conds.append(condition("ScalingActive", True, "ValidMetricFound", decision.message, generation))
        limited = decision.limited in (
            "TooFewReplicas",
            "TooManyReplicas",
            "DataFloor",
            "ScaleDownDisabled",
            "ScaleUpLimit",
            "ScaleDownLimit",
        )
        conds.append(
            condition(
                "ScalingLimited",
                limited,
                decision.limited if limited and decision.limited else "DesiredWithinRange",
                decision.message if limited else "the desired count is within the acceptable range",
                generation,
            )
        )
        out["desiredReplicas"] = target
        out["recommendations"] = [
            {"time": _iso(r.at), "replicas": r.replicas} for r in decision.recommendations
        ]
        keep_events = [e for e in scale_events if e.at > snap.now - 1800]
        if target != comp.current:
            replicas[f"{comp.comp}Spec"] = target
            keep_events.append(algo.TimedReplicas(snap.now, target - comp.current))
            out["lastScaleTime"] = now_text
            out["lastDecision"] = {
                "time": now_text,
                "from": comp.current,
                "to": target,
                "reason": decision.reason,
                "message": decision.message,
            }
            events.append(
                (
                    "Normal",
                    "Scaled" + ("Up" if target > comp.current else "Down"),
                    f"{comp.comp.upper()} {decision.message}",
                )
            )
        out["scaleEvents"] = [{"time": _iso(e.at), "delta": e.replicas} for e in keep_events]
        out["conditions"] = carry_times(conds, prev.get("conditions"), now_text)
        status[comp.comp] = out
    ready = not problems
    status["conditions"] = carry_times(
        [
            condition(
                "Ready", ready, "MetricsRead" if ready else "MetricsMissing", "; ".join(problems), generation
            ),
            condition("Degraded", False, "AsExpected", "", generation),
        ],
        old.get("conditions"),
        now_text,
    )
    return Plan(replicas, status, events)


# ---- observe (I/O) -------------------------------------------------------------------------------------


def _pod_usage(item: Obj, resource: str) -> float:
    return sum(
        float(parse_quantity(c.get("usage", {}).get(resource, "0"))) for c in item.get("containers") or []
    )


def _request(dc: DorisCluster, comp: ScaledComponent, resource: str) -> float | None:
    spec = dc.spec.component(comp)
    requests = (spec.requests if spec else None) or {}
    value = requests.get(resource) if isinstance(requests, Mapping) else None
    return float(parse_quantity(value)) if value is not None else None


def data_floor(backends: list[Backend]) -> int:
    """The fewest BEs that hold the data with headroom (``DATA_HEADROOM`` full at most)."""
    be = [b for b in backends if b.node_role != "computation" and not b.system_decommissioned]
    used = sum(b.data_used_capacity or 0 for b in be)
    totals = [b.total_capacity for b in be if b.total_capacity]
    if not used or not totals:
        return 1 if be else 0
    per_be = min(totals) * DATA_HEADROOM
    return max(1, math.ceil(used / per_be))


Fetch = Callable[[str, dict[str, str]], Awaitable[list[Obj]]]
"""PodMetrics (metrics.k8s.io) of a namespace's pods, at least those with these labels (the readings
pick theirs by pod name)."""

Backends = Callable[[DorisCluster], Awaitable[list[Backend]]]
"""SHOW BACKENDS of a DorisCluster's FE."""

POD_SELECTOR = names.LABEL_CLUSTER
"""What every pod of a DorisCluster carries (the pod informer selects on it too)."""


def _reads_usage(body: Obj) -> bool:
    """Whether a DorisClusterAutoscaler has a resource metric (its pods' usage from metrics.k8s.io)."""
    return any(
        isinstance(m, dict) and m.get("resource") for m in (body.get("spec") or {}).get("metrics") or []
    )


class PodUsage:
    """The :data:`Fetch` of one pass of :class:`AutoscalerLoop`: the PodMetrics of every Doris pod in
    one list, read at the pass's first need and shared by its autoscalers, instead of one list per
    autoscaler and pass (with 200 autoscalers, 1,400 requests in two idle minutes).  It is one list of
    every namespace when the autoscalers of the pass are in several and the operator watches every
    namespace (its ClusterRole may list them all); one list per namespace otherwise (a single one, or
    the per-namespace Roles of ``--namespace``).  A failed list fails every reading of its scope, as
    its own list would have, without asking again in the same pass."""

    def __init__(self, kube: Any, namespaces: set[str], watched: list[str] | None = None) -> None:
        self.kube = kube
        self.every = not watched and len(namespaces) > 1
        self._lists: dict[str | None, dict[str, list[Obj]] | Exception] = {}

    async def __call__(self, namespace: str, labels: dict[str, str]) -> list[Obj]:
        scope = None if self.every else namespace
        if scope not in self._lists:
            try:
                listing = await self.kube.pod_metrics(scope, POD_SELECTOR)
            except Exception as err:  # the metrics API is an aggregated API: kept for the pass
                self._lists[scope] = err
            else:
                by_namespace: dict[str, list[Obj]] = {}
                for item in listing:
                    by_namespace.setdefault(str((item.get("metadata") or {}).get("namespace")), []).append(
                        item
                    )
                self._lists[scope] = by_namespace
        got = self._lists[scope]
        if isinstance(got, Exception):
            raise got
        return list(got.get(namespace, ()))


async def prometheus_query(url: str, query: str, timeout: float = 10.0) -> float:
    def get() -> float:
        full = f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        with urllib.request.urlopen(full, timeout=timeout) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise ValueError(body.get("error") or "the query failed")
        data = body["data"]
        if data["resultType"] == "scalar":
            return float(data["result"][1])
        if not data["result"]:
            raise ValueError("the query returned no series")
        return float(data["result"][0]["value"][1])

    return await asyncio.to_thread(get)


async def observe(
    autoscaler: Obj,
    cluster: Obj | None,
    pods: list[Obj],
    fetch: Fetch,
    backends: Backends,
    now: float,
    rivals: Mapping[str, list[str]] | None = None,
) -> Snapshot:
    """``rivals``: per component, the other DorisClusterAutoscalers of the same cluster scaling it."""
    try:
        dca = DorisClusterAutoscaler.model_validate(
            {
                k: autoscaler[k]
                for k in ("apiVersion", "kind", "metadata", "spec", "status")
                if k in autoscaler
            }
        )
    except ValidationError as err:
        raise ValueError(f"invalid DorisClusterAutoscaler: {err}") from err
    snap = Snapshot(dca, cluster, now=now)
    if cluster is None:
        return snap
    try:
        dc = DorisCluster.model_validate(
            {k: cluster[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in cluster}
        )
    except ValidationError as err:
        snap.invalid = f"DorisCluster {dca.spec.cluster} is invalid: {err.errors()[0]['msg']}"
        return snap
    cluster_status = cluster.get("status") or {}
    old = dca.status.model_dump(by_alias=True, exclude_none=True) if dca.status else {}
    for comp in SCALED_COMPONENTS:
        bounds = dca.spec.component(comp)
        spec = dc.spec.component(comp)
        if bounds is None:
            continue
        if spec is None:
            snap.invalid = f"DorisCluster {dc.name} has no {comp}Spec to scale"
            return snap
        current = spec.replicas if spec.replicas is not None else 1
        mine = [
            p
            for p in pods
            if p["metadata"]["labels"].get(names.LABEL_COMPONENT) == comp
            and not p["metadata"].get("deletionTimestamp")
        ]
        conflict = None
        if (rivals or {}).get(comp):
            conflict = f"DorisClusterAutoscaler {', '.join(sorted((rivals or {})[comp]))} also scales {comp}"
        elif comp == "cn" and hpa_owns_cn(dc):
            conflict = "cnSpec.autoScalingPolicy: its HorizontalPodAutoscaler sets the CN replicas"
        if conflict is not None:
            snap.components.append(
                ComponentSnapshot(comp, bounds, current, [], 0, None, dict(old.get(comp) or {}), conflict)
            )
            continue
        readings = [await _read(m, dc, comp, mine, fetch) for m in dca.spec.metrics]
        busy = None
        comp_status = cluster_status.get(f"{comp}Status") or {}
        if comp_status.get("decommissioning"):
            leaving = ", ".join(sorted(comp_status["decommissioning"]))
            busy = f"{comp.upper()}s are being decommissioned: {leaving}"
        elif (comp_status.get("replicas") not in (None, current)) or cluster_status.get("phase") not in (
            "Ready",
            None,
        ):
            busy = f"the DorisCluster is {cluster_status.get('phase') or 'converging'}"
        floor = 0
        if comp == "be":
            try:
                floor = data_floor(await backends(dc))
            except (DorisError, OSError, ValueError) as err:
                floor = current  # unknown data: never scale in blind
                readings.append(
                    MetricReading(dca.spec.metrics[0], error=f"the FE did not answer SHOW BACKENDS: {err}")
                )
        snap.components.append(
            ComponentSnapshot(comp, bounds, current, readings, floor, busy, dict(old.get(comp) or {}))
        )
    return snap


async def _read(
    spec: MetricSpec, dc: DorisCluster, comp: ScaledComponent, pods: list[Obj], fetch: Fetch
) -> MetricReading:
    reading = MetricReading(spec)
    if spec.resource is not None:
        request = _request(dc, comp, spec.resource.name)
        if request is None and spec.resource.target.type == "Utilization":
            reading.error = f"spec.{comp}Spec.requests.{spec.resource.name} is not set: utilization needs it"
            return reading
        try:
            listing = await fetch(dc.namespace, names.selector_labels(dc.name, comp))
        except Exception as err:  # the metrics API is an aggregated API: any failure means no metrics
            reading.error = f"metrics.k8s.io: {err}"
            return reading
        usage = {i["metadata"]["name"]: _pod_usage(i, spec.resource.name) for i in listing}
        ready = [p for p in pods if p.get("ready")]
        reading.pods = [algo.PodSample(usage.get(p["metadata"]["name"]), request or 1.0) for p in ready]
        if not any(s.usage is not None for s in reading.pods):
            reading.error = f"metrics.k8s.io has no {spec.resource.name} usage of the {comp.upper()} pods yet"
        return reading
    if spec.prometheus is not None:
        try:
            reading.value = await prometheus_query(spec.prometheus.server_url, spec.prometheus.query)
        except Exception as err:  # an unreachable or failing Prometheus is a missing metric
            reading.error = f"Prometheus {spec.prometheus.server_url}: {err}"
    return reading


def fe_backends(kube: Any, allow_fe_address: bool = False) -> Backends:
    """SHOW BACKENDS of a DorisCluster's FE, reached and logged in to as the cluster reconcile does."""

    async def backends(dc: DorisCluster) -> list[Backend]:
        maps: dict[str, dict[str, str]] = {}
        for name in config_map_names(dc.spec.fe_spec) if dc.spec.fe_spec else []:
            data = await kube.config_map(name, dc.namespace)
            if data is not None:
                maps[name] = data
        fe_config = resolve_config("fe", dc.spec.fe_spec, maps)
        host, port = fe_endpoint(dc, fe_config, allow_fe_address)

        async def creds() -> Credentials:
            return await credentials(dc, lambda name: kube.secret_data(name, dc.namespace))

        refused = credentials_refused(dc, kube.secret_refused)
        session = FeSession(host, port, creds, tls=fe_config.flag("enable_ssl"), refused=refused)
        try:
            return list(await session.call(lambda c: c.show_backends()))
        finally:
            await session.close()

    return backends


class DataFloors:
    """The FE's SHOW BACKENDS per DorisCluster, for the BE data floor: a login and a query per read, so
    a decision that keeps or raises the BEs reuses a read up to ``max_age`` seconds old (with 200
    autoscalers, a read per 15 s pass was 1,600 FE logins in two idle minutes).  Only a decision that
    would lower the BEs, or that the floor holds up (``DataFloor``), needs the FE's word of now: the
    loop then plans again with :meth:`reader` ``fresh=True``.  A failed read is never kept."""

    def __init__(
        self, read: Backends, max_age: float = FLOOR_MAX_AGE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.read, self.max_age, self.clock = read, max_age, clock
        self._kept: dict[tuple[str, str], tuple[float, list[Backend]]] = {}

    def reader(self, fresh: bool) -> FloorReader:
        return FloorReader(self, fresh)

    def keep_only(self, clusters: set[tuple[str, str]]) -> None:
        """Forget the clusters no autoscaler names any longer."""
        for key in [k for k in self._kept if k not in clusters]:
            del self._kept[key]


class FloorReader:
    """One evaluation's :data:`Backends`; ``reused`` tells whether it answered from a kept read."""

    def __init__(self, floors: DataFloors, fresh: bool) -> None:
        self.floors, self.fresh, self.reused = floors, fresh, False

    async def __call__(self, dc: DorisCluster) -> list[Backend]:
        floors, key = self.floors, (dc.namespace, dc.name)
        kept = floors._kept.get(key)
        if not self.fresh and kept is not None and floors.clock() - kept[0] < floors.max_age:
            self.reused = True
            return kept[1]
        floors._kept.pop(key, None)
        backends = await floors.read(dc)
        floors._kept[key] = (floors.clock(), backends)
        return backends


def floor_matters(snap: Snapshot, result: Plan) -> bool:
    """Whether the plan lowers the BEs, or the BE data floor holds its decision up (``DataFloor``)."""
    for comp in snap.components:
        if comp.comp != "be":
            continue
        if result.replicas.get("beSpec", comp.current) < comp.current:
            return True
        conds = ((result.status.get("be") or {}).get("conditions")) or []
        if any(c.get("type") == "ScalingLimited" and c.get("reason") == "DataFloor" for c in conds):
            return True
    return False


# ---- act -----------------------------------------------------------------------------------------------


class AutoscalerLoop:
    """Evaluates every DorisClusterAutoscaler every ``interval`` seconds and when one changes."""

    def __init__(
        self,
        kube: Any,
        indexes: Callable[[], Mapping[str, Any] | None],
        backends: Backends,
        interval: float = 15.0,
        namespaces: list[str] | None = None,
    ) -> None:
        """``namespaces``: the namespaces the operator watches (none: every namespace)."""
        self.kube = kube
        self.namespaces = list(namespaces or [])
        self.indexes = indexes
        self.floors = DataFloors(backends)
        self.interval = interval
        self._wake = asyncio.Event()
        self._woken: set[tuple[str, str]] = set()
        self._everyone = True
        self._written: dict[tuple[str, str], Obj] = {}

    def wake(self, key: tuple[str, str]) -> None:
        """Evaluate the autoscalers of the DorisCluster ``key`` (namespace, name) now; ``("", "")``:
        every autoscaler.  The others wait for their pass."""
        if key == ("", ""):
            self._everyone = True
        else:
            self._woken.add(key)
        self._wake.set()

    async def run(self) -> None:
        due = 0.0  # when every autoscaler is evaluated next (a pass)
        while True:
            everyone = self._everyone or time.monotonic() >= due
            woken, self._woken, self._everyone = self._woken, set(), False
            self._wake.clear()  # before the pass: a wake during it is not lost
            if everyone:
                due = time.monotonic() + self.interval
            try:
                await self.evaluate_all(None if everyone else woken)
            except Exception:  # one bad pass must not stop autoscaling
                log.exception("autoscaler pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, due - time.monotonic()))

    async def evaluate_all(self, only: set[tuple[str, str]] | None = None) -> None:
        """Every autoscaler (a pass), or only those of the DorisClusters ``only``."""
        indexes = self.indexes()
        if not indexes or "dc_cluster_autoscalers" not in indexes:
            return
        passing = [(key, list(bodies)) for key, bodies in list(indexes["dc_cluster_autoscalers"].items())]
        if only is None:
            self.floors.keep_only({key for key, _ in passing})
        else:
            passing = [(key, bodies) for key, bodies in passing if key in only]
        reading = {key[0] for key, bodies in passing for body in bodies if _reads_usage(body)}
        usage = PodUsage(self.kube, reading, self.namespaces)
        for key, bodies in passing:
            for body in bodies:
                clusters = list(indexes["dc_clusters"].get(key, ()))
                pods = list(indexes["dc_pods"].get(key, ()))
                rivals: dict[str, list[str]] = {
                    comp: [
                        other["metadata"]["name"]
                        for other in bodies
                        if other is not body and (other.get("spec") or {}).get(comp)
                    ]
                    for comp in SCALED_COMPONENTS
                    if (body.get("spec") or {}).get(comp)
                }
                try:
                    await self.evaluate(body, clusters[0] if clusters else None, pods, rivals, usage)
                except Exception as err:  # one autoscaler's failure must not stop the others
                    await self._failed(body, err)

    async def _failed(self, body: Obj, err: Exception) -> None:
        """An unexpected error: a Degraded condition and a Warning Event, not only a log line."""
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        message = f"{type(err).__name__}: {err}"
        log.warning("DorisClusterAutoscaler %s/%s: %s", ns, name, message)
        old = dict(body.get("status") or {})
        status = {
            **old,
            "conditions": carry_times(
                [
                    condition("Ready", False, "Error", message, meta.get("generation")),
                    condition("Degraded", True, "Error", message, meta.get("generation")),
                ],
                old.get("conditions"),
                _iso(time.time()),
            ),
        }
        if without_times(status) != without_times(old):
            with contextlib.suppress(Exception):
                await self.kube.patch_autoscaler_status(name, ns, status)
                await self.kube.event(body, "Warning", "Error", message)

    async def evaluate(
        self,
        body: Obj,
        cluster: Obj | None,
        pods: list[Obj],
        rivals: Mapping[str, list[str]] | None = None,
        usage: Fetch | None = None,
    ) -> Plan:
        """``usage``: the pass's :class:`PodUsage` (one of its own when evaluated alone)."""
        if usage is None:
            usage = PodUsage(self.kube, {body["metadata"]["namespace"]}, self.namespaces)
        kept = self.floors.reader(fresh=False)
        snap = await observe(body, cluster, pods, usage, kept, time.time(), rivals)
        result = plan(snap)
        if kept.reused and floor_matters(snap, result):  # the BEs go down only on the FE's word of now
            snap = await observe(
                body, cluster, pods, usage, self.floors.reader(fresh=True), time.time(), rivals
            )
            result = plan(snap)
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if result.replicas and cluster is not None:
            await self.kube.apply_cluster_replicas(
                cluster["metadata"]["name"], ns, result.replicas, FIELD_MANAGER
            )
        key = (ns, name)
        if without_times(result.status) != without_times(self._written.get(key)) and without_times(
            result.status
        ) != without_times(body.get("status") or {}):
            await self.kube.patch_autoscaler_status(name, ns, result.status)
            self._written[key] = result.status
        for event_type, reason, message in result.events:
            await self.kube.event(body, event_type, reason, message)
        return result
