"""One reconcile of one DorisCluster: observe -> desired -> apply what differs -> prune -> status.

Level-triggered: nothing here depends on what woke it, so a create, an edit, a child's event, a resync
or an operator restart all lead to the same result."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from lightkube import ApiError

from ..api import podsecurity
from ..api.doriscluster import DorisCluster
from ..api.lenient import parse_stored_cluster
from ..api.validation import InvalidResource
from ..builders import build, names
from ..builders.config import config_map_names
from ..builders.config import resolve as resolve_config
from ..doris.client import Credentials
from ..k8s import Kube
from .cn_hpa import hand_over_replicas, hpa_owns_cn
from .membership import FE_ADDRESS_ANNOTATION, FeSession, credentials, fe_endpoint, reconcile_membership
from .observed import APPLIED_HASH, Obj, trim_child
from .rollout import RolloutMemory, reconcile_rollout
from .status import Findings, cluster_status, component_status, without_times

log = logging.getLogger(__name__)

PAUSE_ANNOTATION = "doris.apache.org/paused"
NOT_CONVERGED_REQUEUE = 30.0


@dataclass
class AppliedMemory:
    """What the operator last applied, per object uid: the generation (resourceVersion for kinds
    without one) the apply returned.  An unchanged hash and version means nobody touched the object
    since, so there is nothing to write.  Lost on restart: then each object is applied once again."""

    versions: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def version(obj: Obj) -> str:
        meta = obj["metadata"]
        return str(meta.get("generation") or meta.get("resourceVersion") or "")

    def unchanged(self, observed: Obj | None, digest: str) -> bool:
        if observed is None or observed["metadata"]["annotations"].get(APPLIED_HASH) != digest:
            return False
        uid = observed["metadata"].get("uid")
        return uid is not None and self.versions.get(uid) == self.version(observed)

    def remember(self, stored: Obj) -> None:
        uid = stored["metadata"].get("uid")
        if uid:
            self.versions[uid] = self.version(stored)


class EventRecorder:
    """Events on the DorisCluster, each distinct (reason, message) once until it changes."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._last: dict[tuple[str, str, str], tuple[str, str]] = {}

    async def record(
        self, body: Obj, event_type: str, reason: str, message: str, dedupe: bool = True
    ) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"], reason)
        if dedupe and self._last.get(key) == (event_type, message):
            return
        self._last[key] = (event_type, message)
        await self.kube.event(body, event_type, reason, message)

    def forget(self, namespace: str, name: str) -> None:
        for key in [k for k in self._last if k[:2] == (namespace, name)]:
            del self._last[key]


@dataclass
class Context:
    kube: Kube
    memory: AppliedMemory
    events: EventRecorder
    written: dict[tuple[str, str], Obj] = field(default_factory=dict)
    """The status last written per cluster: the watched copy lags behind our own writes."""
    rollouts: dict[tuple[str, str], RolloutMemory] = field(default_factory=dict)
    allow_fe_address_annotation: bool = False
    """Honour the fe-address annotation (``run --allow-fe-address-annotation``); else it is ignored with
    a Warning Event."""


@dataclass
class Result:
    requeue_after: float | None = None
    phase: str | None = None
    writes: int = 0


def digest(obj: Obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _component(obj: Obj) -> str:
    return str(obj["metadata"]["labels"].get(names.LABEL_COMPONENT, ""))


async def reconcile(body: Obj, children: Iterable[Obj], pods: Iterable[Obj], ctx: Context) -> Result:
    observed = {(c["kind"], c["metadata"]["name"]): c for c in children}
    pod_list = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    meta = body["metadata"]
    old_status = body.get("status") or {}
    result = Result()

    if (meta.get("annotations") or {}).get(PAUSE_ANNOTATION, "").lower() == "true":
        paused = {
            "type": "Progressing",
            "status": "False",
            "reason": "Paused",
            "message": f"reconciling is paused by the annotation {PAUSE_ANNOTATION}",
            "observedGeneration": meta.get("generation"),
            "lastTransitionTime": _now(),
        }
        conditions = [c for c in old_status.get("conditions") or [] if c.get("type") != "Progressing"]
        status = {**old_status, "phase": "Paused", "conditions": [*conditions, paused]}
        await _write_status(body, old_status, status, ctx, result)
        result.phase = "Paused"
        return result

    try:
        stored: Obj = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
        dc = parse_stored_cluster(stored)
        refused = podsecurity.overlay_problems(dc)
        if refused:
            raise InvalidResource(refused)
    except InvalidResource as err:
        await ctx.events.record(body, "Warning", "InvalidSpec", str(err))
        status = {
            **old_status,
            "phase": "Degraded",
            "observedGeneration": meta.get("generation"),
            "conditions": [
                {
                    "type": "Degraded",
                    "status": "True",
                    "reason": "InvalidSpec",
                    "message": str(err),
                    "observedGeneration": meta.get("generation"),
                    "lastTransitionTime": _now(),
                }
            ],
        }
        await _write_status(body, old_status, status, ctx, result)
        result.phase = "Degraded"
        return result

    findings = Findings()
    config_maps, blocked = await _references(dc, ctx, findings)
    desired = build(dc, config_maps)
    hand_over_replicas(dc, desired, observed)
    await _generated_secrets(dc, desired, observed, ctx)
    fe_config = resolve_config("fe", dc.spec.fe_spec, config_maps)
    host, port = fe_endpoint(dc, fe_config, allow_annotation=ctx.allow_fe_address_annotation)
    if (meta.get("annotations") or {}).get(FE_ADDRESS_ANNOTATION) and not ctx.allow_fe_address_annotation:
        await ctx.events.record(
            body,
            "Warning",
            "FEAddressIgnored",
            f"the annotation {FE_ADDRESS_ANNOTATION} is ignored: the operator runs without "
            f"--allow-fe-address-annotation; it connects to {host}:{port}",
        )

    async def creds() -> Credentials:
        return await credentials(dc, lambda name: ctx.kube.secret_data(name, dc.namespace))

    async def record(event_type: str, reason: str, message: str) -> None:
        await ctx.events.record(body, event_type, reason, message, dedupe=False)

    session = FeSession(host, port, creds, tls=fe_config.flag("enable_ssl"))
    try:
        await _converge(
            dc, body, desired, blocked, observed, pod_list, old_status, session, findings, record, ctx, result
        )
    finally:
        await session.close()
    status = _status(dc, observed, pod_list, findings, old_status)
    await _write_status(body, old_status, status, ctx, result)
    result.phase = status["phase"]
    if status["phase"] != "Ready":
        result.requeue_after = NOT_CONVERGED_REQUEUE
    return result


async def _converge(
    dc: DorisCluster,
    body: Obj,
    desired: list[Obj],
    blocked: set[str],
    observed: dict[tuple[str, str], Obj],
    pod_list: list[Obj],
    old_status: Obj,
    session: FeSession,
    findings: Findings,
    record: Callable[[str, str, str], Awaitable[None]],
    ctx: Context,
    result: Result,
) -> None:
    """Membership (safe scale-in), apply, prune, then at most one pod of a rolling update."""
    await reconcile_membership(dc, desired, observed, pod_list, old_status, session, findings, record)
    fe_ready = _fe_answers(dc, pod_list)

    # apply, component by component in start-up order
    for obj in desired:
        comp = _component(obj)
        if comp in blocked:
            continue
        if comp and comp != "fe" and not fe_ready and (obj["kind"], obj["metadata"]["name"]) not in observed:
            findings.waiting[comp] = ("WaitingForFE", "waiting for an FE to answer before creating it")
            continue
        await _apply(body, obj, observed.get((obj["kind"], obj["metadata"]["name"])), ctx, findings, result)

    await _prune(dc, body, desired, observed, ctx, findings, result)

    async def delete_pod(name: str) -> None:
        await ctx.kube.delete("Pod", name, dc.namespace)
        result.writes += 1

    memory = ctx.rollouts.setdefault((dc.namespace, dc.name), RolloutMemory())
    await reconcile_rollout(dc, observed, pod_list, memory, session, findings, record, delete_pod)
    for problems in findings.degraded.values():
        for reason, message in problems:
            await ctx.events.record(body, "Warning", reason, message)


def _status(
    dc: DorisCluster,
    observed: dict[tuple[str, str], Obj],
    pod_list: list[Obj],
    findings: Findings,
    old_status: Obj,
) -> Obj:
    now = _now()
    components: dict[str, Obj] = {}
    for comp, spec in dc.components():
        replicas = spec.replicas if spec.replicas is not None else 1
        live = observed.get(("StatefulSet", names.statefulset(dc.name, comp)))
        if comp == "cn" and hpa_owns_cn(dc) and live is not None:
            replicas = int(live["spec"].get("replicas") or 0)  # what the HPA set
        components[comp] = component_status(
            dc, comp, replicas, observed, pod_list, findings, old_status.get(f"{comp}Status"), now
        )
        if comp == "cn" and hpa_owns_cn(dc):
            policy = dc.spec.cn_spec.auto_scaling_policy if dc.spec.cn_spec else None
            version = (policy.version if policy else None) or "v2"
            components[comp]["horizontalScaler"] = {"name": names.cn_autoscaler(dc.name), "version": version}
    return cluster_status(dc, components, findings, old_status, now)


async def _prune(
    dc: DorisCluster,
    body: Obj,
    desired: list[Obj],
    observed: dict[tuple[str, str], Obj],
    ctx: Context,
    findings: Findings,
    result: Result,
) -> None:
    """Delete what the operator made that is no longer desired (a removed component, say); never PVCs.
    FE and BE hold data and CNs stay registered in Doris: while their StatefulSet still runs pods,
    removing their spec is refused; the replicas go to 0 first (scale-in moves the data away and
    unregisters them), then the objects go."""
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
    stale = {
        key: obj
        for key, obj in observed.items()
        if key not in wanted and obj["metadata"]["labels"].get(names.LABEL_MANAGED_BY) == names.MANAGED_BY
    }
    keep: set[str] = set()
    for (kind, name), obj in stale.items():
        comp = _component(obj)
        replicas = int((obj.get("status") or {}).get("replicas") or 0)
        if kind == "StatefulSet" and comp in ("fe", "be", "cn") and replicas > 0:
            keep.add(comp)
            findings.degrade(
                "",
                "RemovalRefused",
                f"spec.{comp}Spec was removed, but StatefulSet {name} still runs {replicas} pods holding "
                f"data; set spec.{comp}Spec.replicas to 0 first, then remove it",
            )
    for (kind, name), obj in stale.items():
        if _component(obj) in keep:
            continue
        log.info("pruning %s %s/%s", kind, dc.namespace, name)
        await ctx.kube.delete(kind, name, dc.namespace)
        result.writes += 1
        await ctx.events.record(
            body, "Normal", "Deleted", f"deleted {kind} {name}: no longer in the spec", False
        )


def _fe_answers(dc: DorisCluster, pods: list[Obj]) -> bool:
    """BE, CN and Broker register with an FE when they start, so they wait until one is up."""
    if dc.spec.fe_spec is None:
        return True  # they use feAddress: an FE outside this resource
    return any(p["ready"] and p["metadata"]["labels"].get(names.LABEL_COMPONENT) == "fe" for p in pods)


async def _generated_secrets(
    dc: DorisCluster, desired: list[Obj], observed: dict[tuple[str, str], Obj], ctx: Context
) -> None:
    """The Secrets the operator generates (``{cluster}-admin-user``), read by name: the operator lists
    and watches no Secret, so they aren't in the caches."""
    for obj in desired:
        if obj["kind"] == "Secret":
            name = obj["metadata"]["name"]
            stored = await ctx.kube.get_object("Secret", name, dc.namespace)
            if stored is not None:
                observed[("Secret", name)] = trim_child(stored)


async def _references(
    dc: DorisCluster, ctx: Context, findings: Findings
) -> tuple[dict[str, dict[str, str]], set[str]]:
    """Read the ConfigMaps the spec names; note missing ConfigMaps and Secrets.  A component whose
    ConfigMap or Secret is missing is not applied: its pods could not start, and its ports are unknown."""
    config_maps: dict[str, dict[str, str]] = {}
    blocked: set[str] = set()
    secret_cache: dict[str, bool] = {}

    async def secret_ok(name: str) -> bool:
        if name not in secret_cache:
            secret_cache[name] = await ctx.kube.secret_exists(name, dc.namespace)
        return secret_cache[name]

    for comp, spec in dc.components():
        for name in config_map_names(spec):
            if name not in config_maps:
                data = await ctx.kube.config_map(name, dc.namespace)
                if data is None:
                    findings.degrade(
                        comp,
                        "ConfigMapMissing",
                        f"ConfigMap {name} (spec.{comp}Spec.configMapInfo) does not exist",
                    )
                    blocked.add(comp)
                    continue
                config_maps[name] = data
        secrets = [(s.secret_name, f"spec.{comp}Spec.secrets") for s in spec.secrets or [] if s.secret_name]
        secrets += [
            (r.name, f"spec.{comp}Spec.imagePullSecrets") for r in spec.image_pull_secrets or [] if r.name
        ]
        if dc.spec.auth_secret:
            secrets.append((dc.spec.auth_secret, "spec.authSecret"))
        for name, path in secrets:
            if not await secret_ok(name):
                findings.degrade(comp, "SecretMissing", f"Secret {name} ({path}) does not exist")
                blocked.add(comp)
    for stopped in blocked:
        findings.waiting[stopped] = findings.degraded[stopped][0]
    return config_maps, blocked


def _keep_claim_templates(obj: Obj, observed: Obj) -> tuple[Obj, list[str]]:
    """A StatefulSet's volumeClaimTemplates can't change: apply the stored ones, and name the volumes
    whose wanted template differs (new, or another size or class)."""
    stored = [
        {k: v for k, v in t.items() if k != "status"}
        for t in observed["spec"].get("volumeClaimTemplates") or []
    ]
    wanted = obj["spec"].get("volumeClaimTemplates") or []
    by_name = {t["metadata"]["name"]: t for t in stored}
    differ = [
        t["metadata"]["name"]
        for t in wanted
        if t["metadata"]["name"] not in by_name
        or any(
            t["spec"].get(key) is not None
            and t["spec"].get(key) != by_name[t["metadata"]["name"]]["spec"].get(key)
            for key in ("resources", "storageClassName")
        )
    ]
    obj = copy.deepcopy(obj)
    if stored:
        obj["spec"]["volumeClaimTemplates"] = stored
    else:
        obj["spec"].pop("volumeClaimTemplates", None)
    return obj, differ


async def _apply(
    body: Obj, obj: Obj, observed: Obj | None, ctx: Context, findings: Findings, result: Result
) -> None:
    obj = copy.deepcopy(obj)
    if obj["kind"] == "StatefulSet" and observed is not None:
        obj, differ = _keep_claim_templates(obj, observed)
        if differ:
            await ctx.events.record(
                body,
                "Warning",
                "VolumeClaimTemplatesUnchanged",
                f"StatefulSet {obj['metadata']['name']}: persistentVolumes {', '.join(differ)} differ from "
                "its volumeClaimTemplates, which can't change; the existing ones are kept",
            )
    hashed = digest(obj)
    obj["metadata"].setdefault("annotations", {})[APPLIED_HASH] = hashed
    if ctx.memory.unchanged(observed, hashed):
        return
    try:
        stored = await ctx.kube.apply(obj)
    except ApiError as err:
        message = f"{obj['kind']} {obj['metadata']['name']}: {err.status.message}"
        findings.degrade(_component(obj), "ApplyFailed", message)
        await ctx.events.record(body, "Warning", "ApplyFailed", message)
        return
    result.writes += 1
    ctx.memory.remember(stored)
    if observed is None:
        await ctx.events.record(
            body, "Normal", "Created", f"created {obj['kind']} {obj['metadata']['name']}", False
        )


async def _write_status(body: Obj, old: Obj, new: Obj, ctx: Context, result: Result) -> None:
    """Patch the status when it changed (timestamps aside); keys no longer present are removed."""
    clean = {k: v for k, v in new.items() if v is not None}
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if without_times(clean) in (without_times(old), without_times(ctx.written.get(key))):
        return
    await ctx.kube.patch_status(key[1], key[0], clean)
    ctx.written[key] = clean
    result.writes += 1
