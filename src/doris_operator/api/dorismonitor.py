"""DorisMonitor (doris.selectdb.com/v1, short name ``dmon``): metrics, alerts and dashboards for one
DorisCluster.  *(extension: the official operator has no such resource)*

Two modes:

* ``prometheusOperator`` (default): PodMonitors for FE, BE/CN and the operator, a PrometheusRule with the
  alerts, and the Grafana dashboards as ConfigMaps labelled for Grafana's dashboard sidecar; the labels
  are configurable so that a given Prometheus (its ``podMonitorSelector``/``ruleSelector``) picks them up.
* ``bundled``: for clusters with no monitoring stack, a Prometheus StatefulSet (scraping only this
  cluster's pods through kubernetes_sd) with the same rules, and a Grafana Deployment with the datasource
  and dashboards provisioned.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from .base import Model, Quantity, StringMap
from .doriscluster import GROUP, VERSION, Named, ObjectMeta, ServiceType, cel, rule
from .k8s import VolumeResourceRequirements

KIND = "DorisMonitor"
PLURAL = "dorismonitors"
SHORT_NAME = "dmon"
API_VERSION = f"{GROUP}/{VERSION}"

Mode = Literal["prometheusOperator", "bundled"]
MODES: tuple[Mode, ...] = ("prometheusOperator", "bundled")


class ResourceRequirements(Model):
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


class Alerts(Model):
    """Thresholds of the alerts (docs/monitoring.md has a runbook line per alert)."""

    enabled: bool = True
    disk_usage_ratio: float = Field(default=0.85, ge=0.01, le=1)
    """DorisBEDiskUsageHigh fires when a BE data directory is fuller than this (0-1)."""
    compaction_score: int = Field(default=100, ge=1)
    """DorisBECompactionScoreHigh fires when a BE's max base or cumulative compaction score exceeds this."""
    query_error_ratio: float = Field(default=0.05, ge=0.001, le=1)
    """DorisQueryErrorRateHigh fires when more than this share of queries fail (over 5 minutes)."""
    load_failure_ratio: float = Field(default=0.1, ge=0.001, le=1)
    """DorisLoadFailures fires when more than this share of load transactions fail (over 15 minutes)."""
    decommission_stuck_minutes: int = Field(default=30, ge=1)
    """DorisDecommissionStuck fires when a decommissioning BE's tablet count has not decreased for this
    long."""
    extra_labels: StringMap | None = None
    """Labels added to every alert (a team, a severity route)."""


class OperatorTarget(Model):
    """Where the operator's own /metrics is, to scrape it and alert on its reconcile errors."""

    enabled: bool = True
    namespace: str = "doris-operator"
    """The operator's namespace (the Helm release namespace)."""
    pod_labels: StringMap = Field(default_factory=lambda: {"app.kubernetes.io/name": "doris-operator"})
    """Labels selecting the operator's pods (prometheusOperator mode)."""
    service: str = "doris-operator-metrics"
    """The operator's metrics Service (bundled mode scrapes it by DNS name)."""
    port: int = Field(default=8080, ge=1, le=65535)
    port_name: str = "metrics"


class PrometheusOperatorMode(Model):
    labels: StringMap | None = None
    """Labels on the PodMonitors and the PrometheusRule, to match the Prometheus's selectors
    (kube-prometheus-stack: ``release: <its release name>``)."""
    dashboard_label: str = "grafana_dashboard"
    """The label Grafana's dashboard sidecar looks for on ConfigMaps."""
    dashboard_label_value: str = "1"
    dashboard_annotations: StringMap | None = None
    """Annotations on the dashboard ConfigMaps (the sidecar's folder annotation, say)."""
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$")
    """Scrape interval."""


class ServiceSpec(Model):
    type: ServiceType = "ClusterIP"
    node_port: int | None = Field(default=None, ge=30000, le=32767)


class BundledPrometheus(Model):
    image: str = "prom/prometheus:v3.16.0"
    retention: str = Field(default="15d", pattern=r"^[0-9]+(ms|s|m|h|d|w|y)$")
    storage: VolumeResourceRequirements | None = None
    """The PVC's resources (default 20Gi)."""
    storage_class_name: str | None = None
    resources: ResourceRequirements | None = None
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$")


class AdminSecret(Model):
    name: str = Field(min_length=1)
    key: str = "password"


class BundledGrafana(Model):
    enabled: bool = True
    image: str = "grafana/grafana:12.2.0"
    admin_user: str = "admin"
    admin_secret: AdminSecret | None = None
    """The Secret holding the admin password; when unset the operator creates ``<name>-grafana-admin``
    with a random password once (and never changes it)."""
    resources: ResourceRequirements | None = None
    service: ServiceSpec = Field(default_factory=ServiceSpec)


class BundledMode(Model):
    prometheus: BundledPrometheus = Field(default_factory=BundledPrometheus)
    grafana: BundledGrafana = Field(default_factory=BundledGrafana)


class DorisMonitorSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.mode) || self.mode != 'bundled' || !has(self.prometheusOperator)",
                "spec.prometheusOperator is for mode prometheusOperator; mode is bundled",
                ".prometheusOperator",
            ),
            rule(
                "(has(self.mode) && self.mode == 'bundled') || !has(self.bundled)",
                "spec.bundled is for mode bundled; mode is prometheusOperator",
                ".bundled",
            ),
        )
    )

    cluster: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """The DorisCluster (same namespace) to monitor."""
    mode: Mode = "prometheusOperator"
    prometheus_operator: PrometheusOperatorMode | None = None
    bundled: BundledMode | None = None
    alerts: Alerts = Field(default_factory=Alerts)
    operator: OperatorTarget = Field(default_factory=OperatorTarget)
    dashboards: bool = True
    """Grafana dashboards (ConfigMaps in prometheusOperator mode, provisioned in bundled mode)."""


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    observed_generation: int | None = None
    last_transition_time: str | None = None


class PartStatus(Model):
    """One part (scrape, rules, dashboards, prometheus, grafana)."""

    ready: bool = False
    reason: str | None = None
    message: str | None = None
    objects: list[str] | None = None
    """``Kind/name`` of what the part consists of."""
    url: str | None = None
    """In-cluster URL (bundled Prometheus and Grafana)."""
    node_port: int | None = None


class DorisMonitorStatus(Model):
    phase: str | None = None
    observed_generation: int | None = None
    mode: Mode | None = None
    conditions: list[Condition] | None = None
    parts: dict[str, PartStatus] | None = None
    prometheus_url: str | None = Field(default=None, alias="prometheusURL")
    grafana_url: str | None = Field(default=None, alias="grafanaURL")


class DorisMonitor(Named, Model):
    api_version: Literal["doris.selectdb.com/v1"] = "doris.selectdb.com/v1"
    kind: Literal["DorisMonitor"] = "DorisMonitor"
    metadata: ObjectMeta
    spec: DorisMonitorSpec
    status: DorisMonitorStatus | None = None

    crd_plural: ClassVar[str] = PLURAL

    @property
    def operator_mode(self) -> PrometheusOperatorMode:
        return self.spec.prometheus_operator or PrometheusOperatorMode()

    @property
    def bundled(self) -> BundledMode:
        return self.spec.bundled or BundledMode()


def owner_reference(dm: DorisMonitor) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": dm.name,
        "uid": dm.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }
