"""DorisClusterAutoscaler (doris.selectdb.com/v1, short name ``dca``): the automatic scaling of a
DorisCluster's BEs and CNs.

The operator decides with the HorizontalPodAutoscaler's algorithm (usage ratio, 10% tolerance,
stabilization windows, rate policies) and writes the DorisCluster's ``replicas`` under its own field
manager, so a BE scale-in goes through the same decommission path and data guard as a hand edit.
Metrics come from ``metrics.k8s.io`` (cpu/memory utilization of the pods' requests) or from a Prometheus
query. The field shapes mirror ``autoscaling/v2`` where they mean the same thing.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from .base import Model, Quantity
from .doriscluster import GROUP, VERSION, Condition, Named, ObjectMeta, StatusModel, cel, rule

KIND = "DorisClusterAutoscaler"
PLURAL = "dorisclusterautoscalers"
SHORT_NAME = "dca"
API_VERSION = f"{GROUP}/{VERSION}"

ScaledComponent = Literal["be", "cn"]
SCALED_COMPONENTS: tuple[ScaledComponent, ...] = ("be", "cn")


class ComponentRange(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            rule("self.minReplicas <= self.maxReplicas", "minReplicas must be <= maxReplicas", ".minReplicas")
        )
    )

    min_replicas: int = Field(ge=1, le=1000)
    """The fewest replicas the autoscaler sets (a BE scale-in also never goes below what holds the data)."""
    max_replicas: int = Field(ge=1, le=1000)


class MetricTarget(Model):
    """As in ``autoscaling/v2``: ``Utilization`` (percent of the pods' requests, resource metrics only),
    ``AverageValue`` (the value divided by the replicas) or ``Value``."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "self.type != 'Utilization' || has(self.averageUtilization)",
                "target.averageUtilization is required with type Utilization",
            ),
            rule(
                "self.type != 'AverageValue' || has(self.averageValue)",
                "target.averageValue is required with type AverageValue",
            ),
            rule("self.type != 'Value' || has(self.value)", "target.value is required with type Value"),
        )
    )

    type: Literal["Utilization", "AverageValue", "Value"]
    average_utilization: int | None = Field(default=None, ge=1, le=10000)
    average_value: Quantity | None = None
    value: Quantity | None = None


class ResourceMetric(Model):
    name: Literal["cpu", "memory"]
    target: MetricTarget


class PrometheusMetric(Model):
    server_url: str = Field(alias="serverURL", pattern=r"^https?://", max_length=2048)
    """The Prometheus server, e.g. ``http://prometheus-operated.monitoring:9090``."""
    query: str = Field(min_length=1, max_length=4096)
    """A PromQL query answering one number (the first sample of a vector is used)."""
    target: MetricTarget


class MetricSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "self.type != 'Resource' || has(self.resource)",
                "metrics[].resource is required with Resource",
            ),
            rule(
                "self.type != 'Prometheus' || has(self.prometheus)",
                "metrics[].prometheus is required with Prometheus",
            ),
            rule(
                "!has(self.prometheus) || self.prometheus.target.type != 'Utilization'",
                "a Prometheus metric's target is a Value or an AverageValue",
            ),
        )
    )

    type: Literal["Resource", "Prometheus"]
    resource: ResourceMetric | None = None
    prometheus: PrometheusMetric | None = None


class ScalingPolicy(Model):
    type: Literal["Pods", "Percent"]
    value: int = Field(ge=1)
    period_seconds: int = Field(ge=1, le=1800)


class ScalingRules(Model):
    stabilization_window_seconds: int | None = Field(default=None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[ScalingPolicy] | None = None


class Behavior(Model):
    """As ``autoscaling/v2`` HorizontalPodAutoscalerBehavior, with its defaults: scale up at once by up to
    100% or 4 pods per 15 s; scale down on the highest recommendation of the last 300 s."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


class ScaleDown(Model):
    enabled: bool = True
    """False: the autoscaler only adds replicas."""


class DorisClusterAutoscalerSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            rule("has(self.be) || has(self.cn)", "set be and/or cn: the components to scale")
        )
    )

    cluster: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """The DorisCluster in the same namespace."""
    be: ComponentRange | None = None
    cn: ComponentRange | None = None
    metrics: list[MetricSpec] = Field(min_length=1, max_length=10)
    behavior: Behavior | None = None
    scale_down: ScaleDown | None = None

    def component(self, comp: ScaledComponent) -> ComponentRange | None:
        value: ComponentRange | None = getattr(self, comp)
        return value


# ---- status -------------------------------------------------------------------------------------------


class MetricValue(StatusModel):
    name: str
    """``cpu``, ``memory`` or the Prometheus query."""
    current: str | None = None
    target: str
    proposed_replicas: int | None = None


class Decision(StatusModel):
    time: str
    from_replicas: int = Field(alias="from")
    to_replicas: int = Field(alias="to")
    reason: str
    message: str = ""


class Recommendation(StatusModel):
    time: str
    replicas: int


class ScaleEvent(StatusModel):
    time: str
    delta: int
    """Replicas added (positive) or removed (negative)."""


class ComponentAutoscalerStatus(StatusModel):
    current_replicas: int | None = None
    desired_replicas: int | None = None
    last_scale_time: str | None = None
    last_decision: Decision | None = None
    current_metrics: list[MetricValue] | None = None
    recommendations: list[Recommendation] | None = None
    """The recommendations inside the stabilization windows (kept here so a restart keeps the windows)."""
    scale_events: list[ScaleEvent] | None = None
    """Scale changes inside the policies' periods."""
    conditions: list[Condition] | None = None
    """AbleToScale, ScalingActive, ScalingLimited, as a HorizontalPodAutoscaler has them."""


class DorisClusterAutoscalerStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    """Ready (every component's metrics were read and its decision applied), Degraded."""
    be: ComponentAutoscalerStatus | None = None
    cn: ComponentAutoscalerStatus | None = None


class DorisClusterAutoscaler(Named, Model):
    api_version: Literal["doris.selectdb.com/v1"] = "doris.selectdb.com/v1"
    kind: Literal["DorisClusterAutoscaler"] = "DorisClusterAutoscaler"
    metadata: ObjectMeta
    spec: DorisClusterAutoscalerSpec
    status: DorisClusterAutoscalerStatus | None = None

    crd_plural: ClassVar[str] = PLURAL
