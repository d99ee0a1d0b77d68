"""Admission decisions, independent of HTTP and TLS: AdmissionReview in, AdmissionReview out.

A registry maps each custom resource kind to a validator (problems and warnings) and a defaulter
(JSONPatch operations).  DorisCluster is registered here; DorisInitializer, DorisMonitor and
DorisClusterAutoscaler register theirs the same way when they exist::

    REGISTRY.register(AdmissionKind("doris.selectdb.com", "v1", "DorisMonitor", "dorismonitors",
                                    validate=validate_monitor, default=default_monitor))
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api import doriscluster as dc
from ..api import podsecurity
from ..api.validation import InvalidResource, Problem, parse_cluster, parse_quantity
from ..builders.pod import DEFAULT_ELECTION_NUMBER

Obj = dict[str, Any]
Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
REVIEW_API_VERSION = "admission.k8s.io/v1"


@dataclass(frozen=True)
class Request:
    """The parts of an AdmissionReview request the validators and defaulters use."""

    uid: str
    operation: str
    object: Obj | None
    old_object: Obj | None = None
    namespace: str | None = None
    name: str | None = None
    username: str = ""
    dry_run: bool = False
    sub_resource: str = ""

    @classmethod
    def from_review(cls, review: Mapping[str, Any]) -> Request:
        req = review.get("request")
        if not isinstance(req, Mapping) or not req.get("uid"):
            raise ValueError("not an AdmissionReview request: request.uid is missing")
        return cls(
            uid=str(req["uid"]),
            operation=str(req.get("operation", "")),
            object=req.get("object"),
            old_object=req.get("oldObject"),
            namespace=req.get("namespace"),
            name=req.get("name"),
            username=str((req.get("userInfo") or {}).get("username", "")),
            dry_run=bool(req.get("dryRun", False)),
            sub_resource=str(req.get("subResource") or ""),
        )


@dataclass
class Verdict:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.problems

    @property
    def message(self) -> str:
        return "\n".join(str(p) for p in self.problems)


Validator = Callable[[Request], Verdict]
Defaulter = Callable[[Request], list[Obj]]
"""JSONPatch operations (RFC 6902) that fill in defaults; empty when nothing is missing."""


@dataclass(frozen=True)
class AdmissionKind:
    group: str
    version: str
    kind: str
    plural: str
    validate: Validator | None = None
    default: Defaulter | None = None
    namespaced: bool = True

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}"

    def path(self, hook: Literal["validate", "mutate"]) -> str:
        return f"/{hook}/{self.group}/{self.plural}"

    def webhook_name(self, hook: Literal["validate", "mutate"]) -> str:
        """Unique, fully qualified names for the webhook entries (at least three DNS labels)."""
        return f"{hook}.{self.plural}.{self.group}"


class Registry:
    """The kinds the webhook serves; the configurations list one webhook per kind and hook."""

    def __init__(self) -> None:
        self._kinds: dict[str, AdmissionKind] = {}

    def register(self, kind: AdmissionKind) -> AdmissionKind:
        if kind.key in self._kinds:
            raise ValueError(f"{kind.kind} ({kind.key}) is already registered")
        self._kinds[kind.key] = kind
        return kind

    def get(self, group: str, plural: str) -> AdmissionKind | None:
        return self._kinds.get(f"{group}/{plural}")

    def kinds(self) -> list[AdmissionKind]:
        return list(self._kinds.values())


# ---- AdmissionReview -----------------------------------------------------------------------------------


def _review(response: Obj) -> Obj:
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": response}


def validation_response(req: Request, verdict: Verdict, kind: str = "") -> Obj:
    """``allowed: false`` with every problem as ``field.path: message`` in ``status.message`` (one per
    line) and in ``status.details.causes``; warnings either way."""
    response: Obj = {"uid": req.uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {
            "status": "Failure",
            "code": 422,
            "reason": "Invalid",
            "message": verdict.message,
            "details": {
                "name": req.name or "",
                "kind": kind,
                "causes": [
                    {"type": "FieldValueInvalid", "field": p.path, "message": p.message}
                    for p in verdict.problems
                ],
            },
        }
    if verdict.warnings:
        response["warnings"] = verdict.warnings
    return _review(response)


def mutation_response(req: Request, patch: list[Obj]) -> Obj:
    response: Obj = {"uid": req.uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    return _review(response)


def validate_review(kind: AdmissionKind, review: Mapping[str, Any]) -> Obj:
    req = Request.from_review(review)
    if kind.validate is None or req.operation not in ("CREATE", "UPDATE"):
        return validation_response(req, Verdict())
    return validation_response(req, kind.validate(req), kind.kind)


def mutate_review(kind: AdmissionKind, review: Mapping[str, Any]) -> Obj:
    req = Request.from_review(review)
    if kind.default is None or req.operation not in ("CREATE", "UPDATE") or req.object is None:
        return mutation_response(req, [])
    return mutation_response(req, kind.default(req))


# ---- DorisCluster: validation ------------------------------------------------------------------------------

IMMUTABLE_CLAIMS = "the StatefulSet's volumeClaimTemplates can't change"


def _spec(obj: Obj | None) -> Obj:
    spec = (obj or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def _component(spec: Obj, comp: str) -> Obj | None:
    value = spec.get(f"{comp}Spec")
    return value if isinstance(value, dict) else None


def _volumes(component: Obj) -> list[Obj]:
    pvs = component.get("persistentVolumes")
    return [pv for pv in pvs if isinstance(pv, dict)] if isinstance(pvs, list) else []


def _claim(pv: Obj, *keys: str) -> Any:
    node: Any = pv.get("persistentVolumeClaimSpec")
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def update_problems(old: Obj, new: Obj) -> Iterator[Problem]:
    """What may not change on UPDATE, beyond what :func:`parse_cluster` checks on any object:

    * persistent volumes of a component that already exists (its StatefulSet has them as
      volumeClaimTemplates, which are immutable): none added, removed or renamed; mountPath and
      storageClassName unchanged; storage never smaller;
    * FE replicas below the default electionNumber when electionNumber is not set (scaling down would
      remove followers; with electionNumber set, parse_cluster already checks it).
    """
    old_spec, new_spec = _spec(old), _spec(new)
    for comp in dc.COMPONENTS:
        before, after = _component(old_spec, comp), _component(new_spec, comp)
        if before is None or after is None:
            continue
        base = f"spec.{comp}Spec.persistentVolumes"
        old_by_name = {pv["name"]: pv for pv in _volumes(before) if isinstance(pv.get("name"), str)}
        seen: set[str] = set()
        for i, pv in enumerate(_volumes(after)):
            name = pv.get("name")
            if not isinstance(name, str) or not name:
                continue  # parse_cluster reports it
            seen.add(name)
            path = f"{base}[{i}]"
            prev = old_by_name.get(name)
            if prev is None:
                yield Problem(
                    f"{path}.name",
                    f"volume {name!r} can't be added to an existing {comp.upper()}: {IMMUTABLE_CLAIMS}",
                )
                continue
            if pv.get("mountPath") != prev.get("mountPath"):
                yield Problem(
                    f"{path}.mountPath",
                    f"can't change from {prev.get('mountPath')!r} to {pv.get('mountPath')!r}: "
                    f"{IMMUTABLE_CLAIMS}",
                )
            old_class, new_class = _claim(prev, "storageClassName"), _claim(pv, "storageClassName")
            if old_class != new_class:
                yield Problem(
                    f"{path}.persistentVolumeClaimSpec.storageClassName",
                    f"can't change from {old_class!r} to {new_class!r}: {IMMUTABLE_CLAIMS}",
                )
            old_size, new_size = (
                _claim(prev, "resources", "requests", "storage"),
                _claim(pv, "resources", "requests", "storage"),
            )
            if old_size is not None and new_size is not None:
                try:
                    shrinks = parse_quantity(new_size) < parse_quantity(old_size)
                except (ValueError, TypeError):
                    shrinks = False  # a malformed quantity is reported by parse_cluster
                if shrinks:
                    yield Problem(
                        f"{path}.persistentVolumeClaimSpec.resources.requests.storage",
                        f"{new_size} is smaller than {old_size}: volumes can't shrink",
                    )
        for name in old_by_name:
            if name not in seen:
                yield Problem(base, f"volume {name!r} can't be removed from an existing {comp.upper()}: "
                              f"{IMMUTABLE_CLAIMS}")  # fmt: skip
    before, after = _component(old_spec, "fe"), _component(new_spec, "fe")
    if before is not None and after is not None and after.get("electionNumber") is None:
        old_n, new_n = before.get("replicas", 1), after.get("replicas", 1)
        shrinks = isinstance(old_n, int) and isinstance(new_n, int) and new_n < old_n
        if shrinks and new_n < DEFAULT_ELECTION_NUMBER:
            yield Problem(
                "spec.feSpec.replicas",
                f"scaling FE from {old_n} to {new_n} would remove followers: electionNumber is "
                f"{DEFAULT_ELECTION_NUMBER} (the default) and followers are never scaled in",
            )


def deprecation_warnings(obj: Obj) -> list[str]:
    spec = _spec(obj)
    out: list[str] = []
    if spec.get("adminUser") is not None:
        if spec.get("authSecret"):
            out.append("spec.adminUser is deprecated and ignored because spec.authSecret is set: remove it")
        else:
            out.append(
                "spec.adminUser is deprecated: put the credentials in a kubernetes.io/basic-auth Secret "
                "(keys username, password) and set spec.authSecret (use authSecret)"
            )
    for comp in dc.COMPONENTS:
        component = _component(spec, comp)
        if component is None:
            continue
        info = component.get("configMapInfo")
        if isinstance(info, dict) and info.get("resolveKey"):
            out.append(f"spec.{comp}Spec.configMapInfo.resolveKey is deprecated and ignored")
        address = component.get("feAddress")
        if isinstance(address, dict) and address.get("ServiceName"):
            out.append(f"spec.{comp}Spec.feAddress.ServiceName is not used: set feAddress.endpoints")
    return out


def validate_doris_cluster(req: Request) -> Verdict:
    obj = req.object or {}
    verdict = Verdict(warnings=deprecation_warnings(obj))
    old = req.old_object
    if req.operation == "UPDATE" and old is not None and _spec(old) == _spec(obj):
        return Verdict()  # metadata or status only: never blocked (deletion, finalizers, labels)
    try:
        cluster = parse_cluster(obj)
    except InvalidResource as err:
        verdict.problems.extend(err.problems)
    else:
        verdict.problems.extend(podsecurity.overlay_problems(cluster))
        verdict.warnings.extend(podsecurity.privileged_warnings(cluster))
    if req.operation == "UPDATE" and old is not None:
        known = {str(p) for p in verdict.problems}
        verdict.problems.extend(p for p in update_problems(old, obj) if str(p) not in known)
    return verdict


# ---- DorisCluster: defaults --------------------------------------------------------------------------------


def doris_cluster_defaults(obj: Obj) -> list[Obj]:
    """JSONPatch operations writing the defaults the builder applies implicitly, so the stored object
    shows them.  Each one is exactly what the builder assumes when the field is absent, so defaulting
    never changes what runs:

    * ``<component>.replicas: 1`` (the StatefulSet gets 1 replica); not for a CN with an
      autoScalingPolicy, whose replicas are the autoscaler's;
    * ``feSpec.electionNumber: 3`` only when FE replicas >= 3 (the builder's ELECT_NUMBER is 3; with
      fewer replicas writing 3 would break ``electionNumber <= replicas``, and writing ``replicas``
      would make the FEs added by a later scale-out observers instead of followers);
    * ``<component>.service.type: ClusterIP`` when a service is given without a type.
    """
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    ops: list[Obj] = []
    for comp in dc.COMPONENTS:
        key = f"{comp}Spec"
        component = spec.get(key)
        if not isinstance(component, dict):
            continue
        replicas = component.get("replicas")
        if replicas is None and not (comp == "cn" and component.get("autoScalingPolicy") is not None):
            replicas = 1
            ops.append({"op": "add", "path": f"/spec/{key}/replicas", "value": 1})
        if (
            comp == "fe"
            and component.get("electionNumber") is None
            and isinstance(replicas, int)
            and not isinstance(replicas, bool)
            and replicas >= DEFAULT_ELECTION_NUMBER
        ):
            ops.append({"op": "add", "path": f"/spec/{key}/electionNumber", "value": DEFAULT_ELECTION_NUMBER})
        service = component.get("service")
        if isinstance(service, dict) and service.get("type") is None:
            ops.append({"op": "add", "path": f"/spec/{key}/service/type", "value": "ClusterIP"})
    return ops


def default_doris_cluster(req: Request) -> list[Obj]:
    return doris_cluster_defaults(req.object or {})


DORIS_CLUSTER = AdmissionKind(
    group=dc.GROUP,
    version=dc.VERSION,
    kind=dc.KIND,
    plural=dc.PLURAL,
    validate=validate_doris_cluster,
    default=default_doris_cluster,
)


def default_registry() -> Registry:
    from .autoscaler import DORIS_CLUSTER_AUTOSCALER  # they build on this module
    from .initializer import DORIS_INITIALIZER

    registry = Registry()
    registry.register(DORIS_CLUSTER)
    registry.register(DORIS_INITIALIZER)
    registry.register(DORIS_CLUSTER_AUTOSCALER)
    return registry


REGISTRY = default_registry()
"""The kinds the ``webhook`` command and :func:`doris_operator.webhook.serve` serve by default."""
