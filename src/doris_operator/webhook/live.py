"""What the webhook asks the apiserver before it decides: the ConfigMaps a DorisCluster names (their
ports and paths), the pods of a component being removed, and Kubernetes' own validation of the
children, by a server-side dry-run (``dryRun=All``) of the StatefulSets, Services and
PodDisruptionBudgets the operator would apply.

The dry-run is a server-side apply with the operator's field manager and ``force``, exactly as the
operator applies, so an existing child is checked as the update the operator would make (its
volumeClaimTemplates kept, as the operator keeps them), and a new one as a create.  Each error's field
path is mapped back to the DorisCluster field that produced it (:mod:`..builders.paths`).

Reads and dry-runs that the webhook is not allowed to make (RBAC), or that fail for another reason
than the object, never refuse anything: they become warnings naming what was not checked.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import ConfigMap, Pod, Service
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from ..api.doriscluster import COMPONENTS, Component, DorisCluster
from ..api.validation import Problem, object_name_problem
from ..builders import build, names, paths
from ..k8s import FIELD_MANAGER
from ..reconcile.pipeline import _keep_claim_templates

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DRY_RUN: dict[str, Any] = {
    "StatefulSet": StatefulSet,
    "Service": Service,
    "PodDisruptionBudget": PodDisruptionBudget,
}
STATEFUL: tuple[Component, ...] = ("fe", "be", "cn")
"""Components whose pods hold data or stay registered in Doris: never removed while pods run."""

_TYPED = re.compile(r"failed to create typed patch object \([^)]*\): (.*)$", re.DOTALL)
_TYPED_ITEM = re.compile(r"(?:^|\n|\s)(\.[^\s]+?): ([^\n]+)")
_QUOTED = re.compile(r'(?:Invalid|Unsupported|Duplicate|Required|Forbidden) value: "((?:[^"\\]|\\.)*)"')


@dataclass
class Facts:
    """What the apiserver said about the objects a DorisCluster refers to."""

    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    """Data of the referenced ConfigMaps that exist."""
    missing_config_maps: set[str] = field(default_factory=set)
    running: dict[str, list[str]] = field(default_factory=dict)
    """Component removed by this update -> its pods that still run."""
    unchecked: list[str] = field(default_factory=list)
    """Warnings: what could not be read."""


def _why(err: ApiError) -> str:
    return f"{err.status.code} {err.status.reason or ''}: {err.status.message}".strip()


async def _config_map(client: AsyncClient, name: str, namespace: str, facts: Facts) -> None:
    try:
        cm = await client.get(ConfigMap, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            facts.missing_config_maps.add(name)
        else:
            facts.unchecked.append(
                f"ConfigMap {name} could not be read ({_why(err)}): its ports were not checked"
            )
        return
    facts.config_maps[name] = dict(cm.data or {})


async def _running(client: AsyncClient, cluster: str, comp: Component, namespace: str, facts: Facts) -> None:
    selector: dict[str, Any] = dict(names.selector_labels(cluster, comp))
    try:
        pods = [p async for p in client.list(Pod, namespace=namespace, labels=selector)]
    except ApiError as err:
        facts.unchecked.append(f"the pods of spec.{comp}Spec could not be listed ({_why(err)})")
        return
    running = [
        p.metadata.name or ""
        for p in pods
        if p.metadata is not None
        and p.metadata.deletionTimestamp is None
        and (p.status is None or p.status.phase not in ("Succeeded", "Failed"))
    ]
    if running:
        facts.running[comp] = sorted(running)


def _spec(obj: Obj | None) -> Obj:
    spec = (obj or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def referenced_config_maps(obj: Obj) -> set[str]:
    """ConfigMap names of the manifest's components (read from the raw object: it may not parse)."""
    out: set[str] = set()
    for comp in COMPONENTS:
        component = _spec(obj).get(f"{comp}Spec")
        info = component.get("configMapInfo") if isinstance(component, dict) else None
        if not isinstance(info, dict):
            continue
        if isinstance(info.get("configMapName"), str) and info["configMapName"]:
            out.add(info["configMapName"])
        for cm in info.get("configMaps") or []:
            if isinstance(cm, dict) and isinstance(cm.get("configMapName"), str) and cm["configMapName"]:
                out.add(cm["configMapName"])
    return {name for name in out if object_name_problem("", name, "ConfigMap") is None}


async def gather(client: AsyncClient, obj: Obj, old: Obj | None, namespace: str) -> Facts:
    """Read the referenced ConfigMaps and, on UPDATE, the pods of every removed FE, BE or CN."""
    facts = Facts()
    calls: list[Awaitable[None]] = [
        _config_map(client, name, namespace, facts) for name in sorted(referenced_config_maps(obj))
    ]
    if old is not None:
        cluster = str((old.get("metadata") or {}).get("name") or "")
        for comp in STATEFUL:
            if f"{comp}Spec" in _spec(old) and f"{comp}Spec" not in _spec(obj):
                calls.append(_running(client, cluster, comp, namespace, facts))
    await asyncio.gather(*calls)
    return facts


# ---- dry-run ---------------------------------------------------------------------------------------------


def _value(message: str) -> str | None:
    match = _QUOTED.search(message)
    return match.group(1) if match else None


def problems_of(dc: DorisCluster, obj: Obj, err: ApiError) -> list[Problem]:
    """The DorisCluster problems in the apiserver's refusal of child ``obj`` (empty: not the object's
    fault, see :func:`dry_run`)."""
    status = err.status
    what = f"{obj['kind']} {obj['metadata']['name']}"
    out: list[Problem] = []
    causes = (status.details.causes if status.details else None) or []
    if status.code == 422 and causes:
        for cause in causes:
            child_field = cause.field or ""
            message = cause.message or status.message or ""
            path = paths.cluster_path(dc, obj, paths.parse(child_field, obj), _value(message))
            problem = Problem(path, f"{message} (the apiserver, on {what}: {child_field})")
            if problem not in out:
                out.append(problem)
        return out
    typed = _TYPED.search(status.message or "") if status.code in (400, 422, 500) else None
    if typed is not None:
        for child_field, message in _TYPED_ITEM.findall(" " + typed.group(1)):
            path = paths.cluster_path(dc, obj, paths.parse(child_field, obj))
            out.append(Problem(path, f"{message} (the apiserver, on {what}: {child_field.lstrip('.')})"))
        return out or [Problem("spec", f"{typed.group(1)} (the apiserver, on {what})")]
    if status.code == 422:
        comp = (obj["metadata"].get("labels") or {}).get(names.LABEL_COMPONENT)
        return [
            Problem(f"spec.{comp}Spec" if comp else "spec", f"{status.message} (the apiserver, on {what})")
        ]
    return []


async def _existing(client: AsyncClient, dc: DorisCluster) -> dict[str, Obj]:
    """The cluster's StatefulSets as stored (list: the operator's RBAC has no get on them)."""
    found: dict[str, Obj] = {}
    selector: dict[str, Any] = {names.LABEL_OWNER: dc.name}
    async for sts in client.list(StatefulSet, namespace=dc.namespace, labels=selector):
        stored = sts.to_dict()
        found[stored["metadata"]["name"]] = stored
    return found


def _desired(dc: DorisCluster, config_maps: dict[str, dict[str, str]], existing: dict[str, Obj]) -> list[Obj]:
    out = []
    for obj in build(dc, config_maps):
        if obj["kind"] not in DRY_RUN:
            continue
        obj = copy.deepcopy(obj)
        obj["metadata"].pop(
            "ownerReferences", None
        )  # needs update on dorisclusters/finalizers; no validation
        stored = existing.get(obj["metadata"]["name"]) if obj["kind"] == "StatefulSet" else None
        if stored is not None:
            obj, _ = _keep_claim_templates(obj, stored)  # as the operator applies it
        out.append(obj)
    return out


async def dry_run(
    client: AsyncClient, dc: DorisCluster, config_maps: dict[str, dict[str, str]]
) -> tuple[list[Problem], list[str]]:
    """Problems (the apiserver refused a child) and warnings (a child could not be checked)."""
    warnings: list[str] = []
    try:
        existing = await _existing(client, dc)
    except ApiError as err:
        if err.status.code == 404:
            return [], []  # no namespace: the DorisCluster itself can't be stored there either
        existing = {}
        warnings.append(f"the existing StatefulSets could not be listed ({_why(err)})")
    objects = _desired(dc, config_maps, existing)

    async def one(obj: Obj) -> ApiError | None:
        try:
            await client.patch(
                DRY_RUN[obj["kind"]],
                obj["metadata"]["name"],
                obj,
                namespace=dc.namespace,
                patch_type=PatchType.APPLY,
                field_manager=FIELD_MANAGER,
                force=True,
                dry_run=True,
            )
        except ApiError as err:
            return err
        return None

    problems: list[Problem] = []
    for obj, failure in zip(objects, await asyncio.gather(*(one(o) for o in objects)), strict=True):
        if failure is None:
            continue
        found = problems_of(dc, obj, failure)
        if found:
            problems.extend(p for p in found if p not in problems)
        elif failure.status.code != 404:
            warnings.append(
                f"{obj['kind']} {obj['metadata']['name']} could not be checked by a dry-run ({_why(failure)})"
            )
    return problems, warnings
