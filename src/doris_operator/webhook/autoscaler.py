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


async def rival_problems(scaler: dca.DorisClusterAutoscaler, client: Any) -> list[Problem]:
    """Another DorisClusterAutoscaler of the same component of the same cluster, or, for CN, the
    cluster's ``cnSpec.autoScalingPolicy``: either would fight this one over the replicas."""
    from lightkube import ApiError

    from ..k8s import DorisClusterAutoscalerResource, DorisClusterResource

    problems: list[Problem] = []
    mine = {c for c in dca.SCALED_COMPONENTS if scaler.spec.component(c) is not None}
    async for other in client.list(DorisClusterAutoscalerResource, namespace=scaler.namespace):
        body = other.to_dict() if hasattr(other, "to_dict") else dict(other)
        spec = body.get("spec") or {}
        if body["metadata"]["name"] == scaler.name or spec.get("cluster") != scaler.spec.cluster:
            continue
        for comp in sorted(mine & {c for c in dca.SCALED_COMPONENTS if spec.get(c)}):
            problems.append(
                Problem(
                    f"spec.{comp}",
                    f"DorisClusterAutoscaler {body['metadata']['name']} already scales {comp} of "
                    f"DorisCluster {scaler.spec.cluster}: one autoscaler per component",
                )
            )
    if "cn" in mine:
        try:
            cluster = await client.get(DorisClusterResource, scaler.spec.cluster, namespace=scaler.namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
        else:
            body = cluster.to_dict() if hasattr(cluster, "to_dict") else dict(cluster)
            if ((body.get("spec") or {}).get("cnSpec") or {}).get("autoScalingPolicy"):
                problems.append(
                    Problem(
                        "spec.cn",
                        f"DorisCluster {scaler.spec.cluster} sets cnSpec.autoScalingPolicy: its "
                        "HorizontalPodAutoscaler scales the CNs; remove one of the two",
                    )
                )
    return problems


async def validate_autoscaler_live(req: Request, client: Any, timeout: float = 5.0) -> Verdict:
    """:func:`validate_autoscaler`, then the rivals read from the apiserver.  An apiserver that can't be
    read never refuses: the warning says what was not checked (the controller then scales neither
    of two autoscalers of one component)."""
    import asyncio

    verdict = validate_autoscaler(req)
    if not verdict.allowed or req.operation not in ("CREATE", "UPDATE"):
        return verdict
    scaler = parse_autoscaler(req.object or {})
    if req.namespace and not scaler.metadata.namespace:
        scaler.metadata.namespace = req.namespace
    try:
        verdict.problems.extend(await asyncio.wait_for(rival_problems(scaler, client), timeout * 0.8))
    except Exception as err:  # RBAC, a slow or unreachable apiserver
        verdict.warnings.append(f"other autoscalers of DorisCluster {scaler.spec.cluster} not checked: {err}")
    return verdict


DORIS_CLUSTER_AUTOSCALER = AdmissionKind(
    group=dc.GROUP,
    version=dc.VERSION,
    kind=dca.KIND,
    plural=dca.PLURAL,
    validate=validate_autoscaler,
    validate_live=validate_autoscaler_live,
)
