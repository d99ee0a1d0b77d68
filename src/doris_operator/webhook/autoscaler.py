"""Admission for DorisClusterAutoscaler: the schema and the rules the CRD's CEL can't express, each
problem naming its field. Two autoscalers of one component are also caught by the controller, which
then scales neither (``AmbiguousAutoscaler``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from ..api import doriscluster as dc
from ..api import dorisclusterautoscaler as dca
from ..api.validation import InvalidResource, Problem, schema_problems
from .admission import AdmissionKind, Request, Verdict


def parse_autoscaler(obj: Any) -> dca.DorisClusterAutoscaler:
    if not isinstance(obj, dict):
        raise InvalidResource([Problem("(root)", f"expected a mapping, got {type(obj).__name__}")])
    try:
        scaler = dca.DorisClusterAutoscaler.model_validate(obj)
    except ValidationError as err:
        raise InvalidResource(schema_problems(err)) from None
    problems = list(semantic_problems(scaler))
    if problems:
        raise InvalidResource(problems)
    return scaler


def semantic_problems(scaler: dca.DorisClusterAutoscaler) -> Iterator[Problem]:
    spec = scaler.spec
    if spec.be is None and spec.cn is None:
        yield Problem("spec", "set be and/or cn: the components to scale")
    for comp in dca.SCALED_COMPONENTS:
        bounds = spec.component(comp)
        if bounds is not None and bounds.min_replicas > bounds.max_replicas:
            yield Problem(f"spec.{comp}.minReplicas", f"{bounds.min_replicas} is above maxReplicas")
    for i, metric in enumerate(spec.metrics):
        if metric.type == "Resource" and metric.resource is None:
            yield Problem(f"spec.metrics[{i}].resource", "is required with type Resource")
        if metric.type == "Prometheus" and metric.prometheus is None:
            yield Problem(f"spec.metrics[{i}].prometheus", "is required with type Prometheus")
        target = (
            metric.resource.target
            if metric.resource
            else metric.prometheus.target
            if metric.prometheus
            else None
        )
        if target is None:
            continue
        path = f"spec.metrics[{i}].{'resource' if metric.resource else 'prometheus'}.target"
        if target.type == "Utilization" and metric.prometheus is not None:
            yield Problem(f"{path}.type", "a Prometheus metric's target is a Value or an AverageValue")
        field = {"Utilization": "averageUtilization", "AverageValue": "averageValue", "Value": "value"}[
            target.type
        ]
        if (
            getattr(
                target,
                {"averageUtilization": "average_utilization", "averageValue": "average_value"}.get(
                    field, field
                ),
            )
            is None
        ):
            yield Problem(f"{path}.{field}", f"is required with type {target.type}")


def validate_autoscaler(req: Request) -> Verdict:
    obj = req.object or {}
    old = req.old_object
    if req.operation == "UPDATE" and old is not None and old.get("spec") == obj.get("spec"):
        return Verdict()  # status or metadata only: never blocked
    verdict = Verdict()
    try:
        scaler = parse_autoscaler(obj)
    except InvalidResource as err:
        verdict.problems.extend(err.problems)
        return verdict
    if scaler.spec.scale_down is not None and not scaler.spec.scale_down.enabled:
        verdict.warnings.append("spec.scaleDown.enabled is false: this autoscaler only adds replicas")
    return verdict


DORIS_CLUSTER_AUTOSCALER = AdmissionKind(
    group=dc.GROUP,
    version=dc.VERSION,
    kind=dca.KIND,
    plural=dca.PLURAL,
    validate=validate_autoscaler,
)
