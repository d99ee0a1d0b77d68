"""Observe: one typed snapshot of everything a DorisCluster's reconcile decides from.

The children come from the informers' indexes, which hold only objects labelled as ours; a desired
object the caches miss is read live before anything is planned for it, so an object made by someone
else (the official operator, before a takeover) is seen as it is, never applied over blind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..api.doriscluster import DorisCluster
from ..builders import build, names
from ..builders.config import config_map_names
from ..k8s import LOGIN_SECRET_TTL, Kube
from .cn_hpa import hand_over_replicas
from .observed import Obj, trim_child
from .status import Findings

Key = tuple[str, str]
"""(kind, name) of a child in the cluster's namespace."""
LIVE_READ_KINDS = frozenset({"StatefulSet", "Service", "PodDisruptionBudget", "Secret"})


@dataclass
class Snapshot:
    body: Obj
    """The DorisCluster as watched (apiVersion, kind, metadata, spec, status)."""
    dc: DorisCluster
    children: dict[Key, Obj]
    """Children from the caches, and those read live because the caches missed them."""
    pods: list[Obj]
    """Pods of the cluster that are not terminating."""
    desired: list[Obj] = field(default_factory=list)
    """What the builders make of the spec (never edited: the plan works on copies)."""
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    """Components not to apply: a ConfigMap or Secret they need is missing."""
    live: set[Key] = field(default_factory=set)
    """Keys of ``children`` read live (the caches missed them)."""
    findings: Findings = field(default_factory=Findings)

    @property
    def uid(self) -> str:
        return str(self.body["metadata"].get("uid") or "")

    @property
    def deleting(self) -> bool:
        return bool(self.body["metadata"].get("deletionTimestamp"))

    @property
    def old_status(self) -> Obj:
        return dict(self.body.get("status") or {})


def index_children(children: Iterable[Obj]) -> dict[Key, Obj]:
    return {(c["kind"], c["metadata"]["name"]): c for c in children}


def live_pods(pods: Iterable[Obj]) -> list[Obj]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


async def observe(
    body: Obj, dc: DorisCluster, children: Iterable[Obj], pods: Iterable[Obj], kube: Kube
) -> Snapshot:
    snap = Snapshot(body=body, dc=dc, children=index_children(children), pods=live_pods(pods))
    if snap.deleting:
        return snap  # only status is written: nothing to read beyond the caches
    snap.config_maps, snap.blocked = await references(dc, kube, snap.findings)
    snap.desired = build(dc, snap.config_maps)
    await read_missing(snap, kube)
    hand_over_replicas(dc, snap.desired, snap.children)
    return snap


def fe_answers(snap: Snapshot) -> bool:
    """BE, CN and Broker register with an FE when they start, so they wait until one is up."""
    if snap.dc.spec.fe_spec is None:
        return True  # they use feAddress: an FE outside this resource
    return any(p["ready"] and p["metadata"]["labels"].get(names.LABEL_COMPONENT) == "fe" for p in snap.pods)


def waits_for_fe(comp: str, fe_ready: bool) -> bool:
    """A BE's, CN's or Broker's object is neither made nor touched before an FE answers."""
    return bool(comp) and comp != "fe" and not fe_ready


async def read_missing(snap: Snapshot, kube: Kube) -> None:
    """GET each desired object the caches don't hold (in parallel), but those the plan would leave
    alone anyway: a BE's, CN's or Broker's while no FE answers (a new cluster's BEs are read once its
    FE is up, just before they are made; an existing one missed meanwhile is only adopted later)."""
    fe_ready = fe_answers(snap)
    missing = [
        (o["kind"], o["metadata"]["name"])
        for o in snap.desired
        if o["kind"] in LIVE_READ_KINDS
        and (o["kind"], o["metadata"]["name"]) not in snap.children
        and not waits_for_fe(component_of(o), fe_ready)
    ]
    found = await asyncio.gather(*(kube.get(kind, name, snap.dc.namespace) for kind, name in missing))
    for key, obj in zip(missing, found, strict=True):
        if obj is not None:
            obj.setdefault("kind", key[0])
            obj.setdefault("apiVersion", "apps/v1" if key[0] == "StatefulSet" else "v1")
            snap.children[key] = trim_child(obj)
            snap.live.add(key)


async def references(
    dc: DorisCluster, kube: Kube, findings: Findings
) -> tuple[dict[str, dict[str, str]], set[str]]:
    """Read the ConfigMaps the spec names; note missing ConfigMaps and Secrets.  A component whose
    ConfigMap or Secret is missing is not applied: its pods could not start, and its ports are unknown."""
    config_maps: dict[str, dict[str, str]] = {}
    blocked: set[str] = set()
    secret_cache: dict[str, bool] = {}

    async def secret_ok(name: str) -> bool:
        if name not in secret_cache:
            # the authSecret is kept as long as the FE takes it (Kube.secret_data)
            ttl = LOGIN_SECRET_TTL if name == dc.spec.auth_secret else None
            secret_cache[name] = await kube.secret_exists(name, dc.namespace, ttl)
        return secret_cache[name]

    for comp, spec in dc.components():
        for name in config_map_names(spec):
            if name not in config_maps:
                data = await kube.config_map(name, dc.namespace)
                if data is None:
                    findings.degrade(
                        comp,
                        "ConfigMapMissing",
                        f"ConfigMap {name} (spec.{comp}Spec.configMapInfo) does not exist",
                    )
                    blocked.add(comp)
                    continue
                config_maps[name] = data
        for name, path in referenced_secrets(dc, comp):
            if not await secret_ok(name):
                findings.degrade(comp, "SecretMissing", f"Secret {name} ({path}) does not exist")
                blocked.add(comp)
    for stopped in blocked:
        findings.waiting[stopped] = findings.degraded[stopped][0]
    return config_maps, blocked


def referenced_secrets(dc: DorisCluster, only: str | None = None) -> list[tuple[str, str]]:
    """(Secret name, the spec field naming it) for every Secret the spec references."""
    out: list[tuple[str, str]] = []
    for comp, spec in dc.components():
        if only is not None and comp != only:
            continue
        out += [(s.secret_name, f"spec.{comp}Spec.secrets") for s in spec.secrets or [] if s.secret_name]
        out += [
            (r.name, f"spec.{comp}Spec.imagePullSecrets") for r in spec.image_pull_secrets or [] if r.name
        ]
        if dc.spec.auth_secret:
            out.append((dc.spec.auth_secret, "spec.authSecret"))
    krb = dc.spec.kerberos_info
    if only is None and krb is not None and krb.keytab_secret_name:
        out.append((krb.keytab_secret_name, "spec.kerberosInfo.keytabSecretName"))
    if only is None and dc.spec.auth_secret:
        out.append((dc.spec.auth_secret, "spec.authSecret"))
    return out


def component_of(obj: Obj) -> str:
    return str(obj["metadata"].get("labels", {}).get(names.LABEL_COMPONENT, ""))
