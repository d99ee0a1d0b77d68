"""DorisCluster (doris.selectdb.com/v1): every field of the official operator's CRD, plus a few more.

Field names, aliases and meanings follow the official operator so existing manifests work unchanged.
Fields marked *(extension)* are ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator

from .base import QUANTITY_PATTERN, FreeForm, Model, Quantity, StringMap
from .k8s import (
    EnvVar,
    HostAlias,
    LocalObjectReference,
    PersistentVolumeClaimSpec,
    ResourceClaim,
    Toleration,
    VolumeResourceRequirements,
)

GROUP = "doris.selectdb.com"
VERSION = "v1"
KIND = "DorisCluster"
PLURAL = "dorisclusters"
API_VERSION = f"{GROUP}/{VERSION}"

ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
Component = Literal["fe", "be", "cn", "broker"]
COMPONENTS: tuple[Component, ...] = ("fe", "be", "cn", "broker")

IMAGE_PATTERN = (
    r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*"
    r"(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
"""An image reference (registry host and port, path, tag, digest); the same as the webhook's check."""


def cel(*rules: dict[str, str]) -> dict[str, Any]:
    """``x-kubernetes-validations`` for a model or field: CEL the apiserver evaluates itself, so these
    checks hold when the admission webhook is down (docs/webhook.md lists what is checked where)."""
    return {"x-kubernetes-validations": list(rules)}


def rule(expression: str, message: str, field_path: str | None = None) -> dict[str, str]:
    out = {"rule": expression, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    return out


def _opt(expr: str, field: str, default: str = "''") -> str:
    """``expr.field`` or ``default`` when unset (has() keeps the sizes the CEL cost estimator needs)."""
    return f"(has({expr}.{field}) ? {expr}.{field} : {default})"


def _pv_pairs(check: str) -> str:
    """For every persistent volume kept across an update (same name, old ``o``, new ``v``): ``check``."""
    return (
        "!has(oldSelf.persistentVolumes) || !has(self.persistentVolumes) || "
        "oldSelf.persistentVolumes.all(o, self.persistentVolumes.all(v, "
        f"!has(v.name) || !has(o.name) || v.name != o.name || ({check})))"
    )


def _storage_set(v: str) -> str:
    claim = f"{v}.persistentVolumeClaimSpec"
    return (
        f"has({claim}) && has({claim}.resources) && has({claim}.resources.requests) && "
        f"'storage' in {claim}.resources.requests"
    )


def _storage(v: str) -> str:
    return f"quantity(string({v}.persistentVolumeClaimSpec.resources.requests['storage']))"


def _pv_names(expr: str) -> str:
    return f"{_opt(expr, 'persistentVolumes', '[]')}.map(v, {_opt('v', 'name')})"


def _claim_field(v: str, field: str) -> str:
    return f"(has({v}.persistentVolumeClaimSpec) ? {_opt(v + '.persistentVolumeClaimSpec', field)} : '')"


_IMMUTABLE_VCT = "a StatefulSet's volumeClaimTemplates can't change"
BASE_SPEC_RULES = [
    rule(
        f"{_pv_names('self')}.all(n, n in {_pv_names('oldSelf')}) && "
        f"{_pv_names('oldSelf')}.all(n, n in {_pv_names('self')})",
        "persistentVolumes: volumes can't be added, removed or renamed once the component exists "
        f"({_IMMUTABLE_VCT})",
        ".persistentVolumes",
    ),
    rule(
        _pv_pairs(f"{_opt('v', 'mountPath')} == {_opt('o', 'mountPath')}"),
        f"persistentVolumes[].mountPath can't change ({_IMMUTABLE_VCT})",
        ".persistentVolumes",
    ),
    rule(
        _pv_pairs(f"{_claim_field('v', 'storageClassName')} == {_claim_field('o', 'storageClassName')}"),
        f"persistentVolumes[].persistentVolumeClaimSpec.storageClassName can't change ({_IMMUTABLE_VCT})",
        ".persistentVolumes",
    ),
    rule(
        _pv_pairs(
            f"!({_storage_set('v')}) || !({_storage_set('o')}) || "
            f"!{_storage('v')}.isLessThan({_storage('o')})"
        ),
        "persistentVolumes[].persistentVolumeClaimSpec.resources.requests.storage can't shrink",
        ".persistentVolumes",
    ),
]


class AdminUser(Model):
    """Deprecated by the official operator in favour of ``authSecret``; still honoured.  The operator puts
    these credentials into a Secret and mounts it, never into plain pod environment variables."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.name) || self.name.lowerAscii() != 'admin'",
                "name 'admin' can't manage nodes; use root or a dedicated user with NODE_PRIV",
                ".name",
            )
        )
    )

    name: str | None = None
    password: str | None = None


class KerberosInfo(Model):
    krb5_config_map: str | None = None
    """ConfigMap holding krb5.conf, mounted at /etc/krb5."""
    keytab_secret_name: str | None = None
    """Secret holding the keytab files, mounted at /etc/keytab."""
    keytab_path: str | None = None
    """Where the keytab files end up inside the container (default /etc/keytab)."""


class SharedPersistentVolumeClaim(Model):
    mount_path: str | None = None
    persistent_volume_claim_name: str | None = None
    support_components: list[Component] | None = None
    """Components that mount the claim; empty means every component."""


class ServicePort(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.nodePort) || self.nodePort == 0 || "
                "(self.nodePort >= 30000 && self.nodePort <= 32767)",
                "nodePort must be in the node port range 30000-32767",
                ".nodePort",
            )
        )
    )

    node_port: int | None = Field(default=None, ge=0, le=65535)
    """The node port to pin (NodePort and LoadBalancer Services)."""
    target_port: int | None = Field(default=None, ge=0, le=65535)
    """The container port this entry applies to, e.g. 9030 for the FE query port."""


class ExportService(Model):
    """The component's access Service ``{cluster}-{component}-service``."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "(has(self.type) && self.type != 'ClusterIP') || !has(self.servicePorts) || "
                "self.servicePorts.all(p, !has(p.nodePort) || p.nodePort == 0)",
                "servicePorts[].nodePort needs service.type NodePort or LoadBalancer",
                ".servicePorts",
            ),
            rule(
                "!has(self.servicePorts) || self.servicePorts.all(p, !has(p.nodePort) || p.nodePort == 0 || "
                "self.servicePorts.exists_one(q, has(q.nodePort) && q.nodePort == p.nodePort))",
                "servicePorts[].nodePort: each node port can be used once",
                ".servicePorts",
            ),
        )
    )

    type: ServiceType | None = None
    """ClusterIP (default), NodePort or LoadBalancer."""
    service_ports: list[ServicePort] | None = Field(default=None, max_length=32)
    annotations: StringMap | None = None
    """Copied onto the Service unchanged (cloud load-balancer settings)."""
    load_balancer_ip: str | None = Field(default=None, alias="loadBalancerIP")
    external_traffic_policy: Literal["Cluster", "Local"] | None = None
    """*(extension)* Local keeps the client source IP and avoids a second hop; NodePort/LoadBalancer only."""
    load_balancer_source_ranges: list[str] | None = None
    """*(extension)* CIDRs allowed to reach a LoadBalancer Service."""
    labels: StringMap | None = None
    """*(extension)* Extra labels on the access Service."""


class Endpoints(Model):
    address: list[str] | None = None
    """FE hosts or IPs."""
    legacy_address: list[str] | None = Field(default=None, alias=":address", exclude=True)
    """The key as every official release up to 25.8.0 spells it; read as address when that is unset."""
    port: int | None = Field(default=None, ge=0, le=65535)
    """The FE query port."""

    @model_validator(mode="after")
    def _read_legacy_address(self) -> Endpoints:
        if self.address is None and self.legacy_address is not None:
            self.address = list(self.legacy_address)
        return self


class FeAddress(Model):
    service_name: str | None = Field(default=None, alias="ServiceName")
    """Accepted for compatibility; unused, as in the official operator."""
    endpoints: Endpoints | None = None


class MountConfigMapInfo(Model):
    config_map_name: str | None = None
    mount_path: str | None = None
    """Default /etc/doris."""


class ConfigMapInfo(Model):
    config_map_name: str | None = None
    """ConfigMap with the component's conf files (fe.conf, be.conf ...), mounted at /etc/doris."""
    resolve_key: str | None = None
    """Deprecated and ignored, as in the official operator."""
    config_maps: list[MountConfigMapInfo] | None = None


class Secret(Model):
    secret_name: str | None = None
    mount_path: str | None = None
    """Default /etc/doris."""


def _short_quantity(value: int | float | str) -> int | float | str:
    if len(str(value)) > 64:
        raise ValueError("a quantity is at most 64 characters")
    return value


StorageQuantity = Annotated[
    Quantity,
    AfterValidator(_short_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A quantity with the length bound the CEL rule "storage can't shrink" needs to fit the cost budget."""


class ClaimResources(VolumeResourceRequirements):
    requests: dict[str, StorageQuantity] | None = None


class ClaimSpec(PersistentVolumeClaimSpec):
    """The claim spec, with the bounds the CEL rules on persistentVolumes need."""

    resources: ClaimResources | None = None
    storage_class_name: str | None = Field(default=None, max_length=253)


class PersistentVolume(Model):
    persistent_volume_claim_spec: ClaimSpec | None = None
    mount_path: str | None = Field(default=None, max_length=1024)
    """Where to mount it.  Without it the entry is a template expanded to every path of meta_dir (FE) or
    storage_root_path (BE, CN)."""
    name: str | None = Field(default=None, max_length=63)
    annotations: StringMap | None = None
    provisioner: Literal["", "StatefulSet", "Operator"] | None = None


class SystemInitialization(Model):
    init_image: str | None = None
    """Image of the privileged ``init`` container; default: the component's image for BE and CN,
    selectdb/alpine:latest for FE and Broker."""
    command: list[str] | None = None
    args: list[str] | None = None
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None
    claims: list[ResourceClaim] | None = None
    """Dynamic resource claims (``spec.resourceClaims`` of the pod) the init container uses."""


class ReadinessProbePolicy(Model):
    timeout_seconds: int | None = Field(default=None, ge=0)
    failure_threshold: int | None = Field(default=None, ge=0)
    period_seconds: int | None = Field(default=None, ge=0)


class HpaPolicy(Model):
    metrics: list[FreeForm] | None = None
    behavior: FreeForm | None = None


class AutoScalingPolicy(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "autoScalingPolicy.minReplicas must be <= maxReplicas",
                ".minReplicas",
            )
        )
    )

    version: Literal["v1", "v2"] | None = None
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=0)
    hpa_policy: HpaPolicy | None = None


class PvcRetentionPolicy(Model):
    when_deleted: Literal["Retain", "Delete"] | None = None


class BaseSpec(Model):
    """Fields shared by FE, BE, CN and Broker."""

    model_config = ConfigDict(json_schema_extra=cel(*BASE_SPEC_RULES))

    image: str = Field(
        max_length=512,
        json_schema_extra=cel(
            rule("self.trim() != ''", "image must not be empty"),
            rule(
                f"self.trim() == '' || self.matches(r'{IMAGE_PATTERN}')",
                "image must be an image reference like selectdb/doris.fe-ubuntu:2.1.8",
            ),
        ),
    )
    """The component image, e.g. selectdb/doris.fe-ubuntu:2.1.8."""
    replicas: int | None = Field(default=None, ge=0)
    image_pull_secrets: list[LocalObjectReference] | None = None
    annotations: StringMap | None = None
    """Pod annotations."""
    service_account: str | None = None
    service: ExportService | None = None
    fs_group: int | None = None
    """Older official CRDs had this; it becomes the pod securityContext.fsGroup."""
    fe_address: FeAddress | None = None
    config_map_info: ConfigMapInfo | None = None
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None
    claims: list[ResourceClaim] | None = None
    node_selector: StringMap | None = None
    env_vars: list[EnvVar] | None = None
    affinity: FreeForm | None = None
    tolerations: list[Toleration] | None = None
    pod_labels: StringMap | None = None
    host_aliases: list[HostAlias] | None = None
    persistent_volumes: list[PersistentVolume] | None = Field(default=None, max_length=64)
    system_initialization: SystemInitialization | None = None
    security_context: FreeForm | None = None
    """Pod security context."""
    container_security_context: FreeForm | None = None
    """Security context of every container that has none of its own."""
    secrets: list[Secret] | None = None
    start_timeout: int | None = Field(default=None, ge=0)
    """Seconds the startup probe allows (at least 360)."""
    live_timeout: int | None = Field(default=None, ge=0)
    """Liveness probe timeoutSeconds (default 180)."""
    readiness_probe_policy: ReadinessProbePolicy | None = None
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    """*(extension)* Default: grace_shutdown_wait_seconds from the conf file, else FE 330, BE/CN 200."""
    topology_spread_constraints: list[FreeForm] | None = None
    """*(extension)* Pod topology spread constraints."""
    priority_class_name: str | None = None
    """*(extension)*"""
    persistent_volume_claim_retention_policy: PvcRetentionPolicy | None = None
    """*(extension)* Whether the StatefulSet deletes the PersistentVolumeClaims when the DorisCluster is
    deleted (default Retain: data survives a deleted DorisCluster)."""
    pod_template: FreeForm | None = None
    """*(extension)* A pod template merged over the generated one (metadata and spec; containers and
    volumes are merged by name) for anything the other fields don't cover."""


class FeSpec(BaseSpec):
    model_config = ConfigDict(
        json_schema_extra=cel(
            *BASE_SPEC_RULES,
            rule(
                "!has(self.electionNumber) || "
                "self.electionNumber <= (has(self.replicas) ? self.replicas : 1)",
                "electionNumber must be <= replicas: the followers are elected from the FE replicas",
                ".electionNumber",
            ),
        )
    )

    election_number: int | None = Field(default=None, ge=1)
    """How many FEs are followers (default 3); the rest are observers."""


class BeSpec(BaseSpec):
    enable_workload_group: bool | None = None
    skip_default_system_init: bool | None = None
    enable_fe_affinity: bool | None = None
    auto_resolve_limit_cpu: bool | None = Field(default=None, alias="autoResolveLimitCPU")


class CnSpec(BaseSpec):
    skip_default_system_init: bool | None = None
    auto_resolve_limit_cpu: bool | None = Field(default=None, alias="autoResolveLimitCPU")
    auto_scaling_policy: AutoScalingPolicy | None = None


class BrokerSpec(BaseSpec):
    kick_off_affinity_be: bool | None = None


DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"
"""A Go-style duration: ``5m``, ``90s``, ``1h30m``."""


class FailoverSpec(Model):
    """*(extension)* Recovery from lost nodes (docs/fault-recovery.md).  On by default."""

    enabled: bool | None = None
    """Default true.  false: the operator never force-deletes a pod on a lost node."""
    period: str | None = Field(default=None, pattern=DURATION_PATTERN, max_length=32)
    """How long a node must be NotReady (or gone) before its pods are force-deleted (default 5m)."""
    max_failovers: int | None = Field(default=None, ge=0)
    """Force-deletions allowed per ``window`` in the whole cluster (default 3; 0 turns failover off)."""
    window: str | None = Field(default=None, pattern=DURATION_PATTERN, max_length=32)
    """The window ``maxFailovers`` counts in (default 1h)."""
    recreate_local_claims: bool | None = None
    """Default false.  true: a BE whose volume is local to the lost node gets a new, empty claim, but
    only while tablet health shows no tablet would lose its last healthy replica."""


class DrainSpec(Model):
    """*(extension)* Drain-safe evictions of BE and CN pods (docs/fault-recovery.md).  On by default."""

    enabled: bool | None = None
    """Default true.  false: the eviction webhook lets evictions of this cluster's pods through at once
    (the PodDisruptionBudget still applies; the FE quorum check stays)."""
    timeout_seconds: int | None = Field(default=None, ge=0)
    """How long an eviction waits for the BE's running queries to end after disable_query (default 600);
    then it is allowed."""


def _fe_address_set(comp: str) -> str:
    """``address`` set, or ``endpoints`` without ``address``: CEL can't read the older ``:address`` key (a
    ':' can't be escaped in a CEL field name), so the webhook checks that one."""
    endpoints = f"self.{comp}.?feAddress.?endpoints"
    return (
        f"(!has(self.{comp}) || {endpoints}.?address.orValue([]).size() > 0 || "
        f"({endpoints}.hasValue() && !{endpoints}.?address.hasValue()))"
    )


class DorisClusterSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "has(self.feSpec) || has(self.beSpec) || has(self.cnSpec) || has(self.brokerSpec)",
                "spec has no component: set feSpec (and beSpec, cnSpec, brokerSpec as needed)",
            ),
            rule(
                "has(self.feSpec) || ("
                + " && ".join(_fe_address_set(c) for c in ("beSpec", "cnSpec", "brokerSpec"))
                + ")",
                "BE, CN and Broker need an FE: set spec.feSpec, or <component>.feAddress.endpoints.address "
                "for an FE outside this resource",
            ),
        )
    )

    fe_spec: FeSpec | None = None
    be_spec: BeSpec | None = None
    cn_spec: CnSpec | None = None
    broker_spec: BrokerSpec | None = None
    admin_user: AdminUser | None = None
    auth_secret: str | None = None
    """A kubernetes.io/basic-auth Secret (keys username, default root, and password) the nodes and the
    operator use to manage the cluster; mounted at /etc/basic_auth."""
    enable_restart_when_config_change: bool | None = None
    kerberos_info: KerberosInfo | None = None
    shared_persistent_volume_claims: list[SharedPersistentVolumeClaim] | None = None
    failover: FailoverSpec | None = None
    """*(extension)* Force-delete pods stuck on lost nodes so their StatefulSet recreates them."""
    drain: DrainSpec | None = None
    """*(extension)* Evictions (kubectl drain) of BE/CN pods wait until the BE has no running queries."""
    member_readiness_gate: bool | None = None
    """*(extension)* Default true: pods carry the readiness gate ``doris.apache.org/member-alive``, set
    from Doris's own view, so Services route only to members Doris can use.  Changing it restarts pods."""

    def component(self, comp: Component) -> BaseSpec | None:
        spec: BaseSpec | None = getattr(self, f"{comp}_spec")
        return spec


# ---- status -------------------------------------------------------------------------------------------


class StatusModel(Model):
    # Status may have been written by another operator (a cluster migrated from the official one).
    model_config = ConfigDict(extra="ignore")


class Condition(StatusModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class ComponentCondition(StatusModel):
    sub_resource_name: str | None = None
    phase: str = ""
    last_transition_time: str | None = None
    reason: str = ""
    message: str = ""


class HorizontalScaler(StatusModel):
    name: str | None = None
    version: str | None = None


class AccessPort(StatusModel):
    name: str
    port: int
    node_port: int | None = None


class ServiceAccess(StatusModel):
    """How to reach a component: its access Service, ports, node ports and load-balancer addresses."""

    service: str
    type: str
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    ports: list[AccessPort] | None = None
    ingress: list[str] | None = None


class ComponentStatus(StatusModel):
    access_service: str | None = None
    failed_instances: list[str] | None = None
    creating_instances: list[str] | None = None
    running_instances: list[str] | None = None
    component_condition: ComponentCondition | None = None
    core_config_map_hash_value: str | None = None
    horizontal_scaler: HorizontalScaler | None = None
    replicas: int | None = None
    """Desired replicas."""
    ready_replicas: int | None = None
    ready: str | None = None
    """``ready/desired``, for kubectl get."""
    conditions: list[Condition] | None = None
    access: ServiceAccess | None = None
    decommissioning: dict[str, int] | None = None
    """Pods whose BE is being decommissioned before the StatefulSet shrinks -> tablets it still holds."""
    observed_generation: int | None = None


class FailoverRecord(StatusModel):
    pod: str
    uid: str = ""
    """The uid of the pod that was force-deleted."""
    component: str = ""
    node: str = ""
    time: str = ""
    reason: str = ""
    recreated_claims: list[str] | None = None
    completed: bool | None = None
    """True once the recreated pod's member is alive in Doris."""


class FailoverStatus(StatusModel):
    records: list[FailoverRecord] | None = None
    """Force-deletions within the window (they count toward maxFailovers), newest last."""
    lost_nodes: dict[str, str] | None = None
    """Nodes the operator found gone (deleted), and since when: the period counts from there."""
    waiting: list[str] | None = None
    """Why a lost node's pod is not failed over yet."""


class DorisClusterStatus(StatusModel):
    phase: str | None = None
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    fe_status: ComponentStatus | None = None
    be_status: ComponentStatus | None = None
    cn_status: ComponentStatus | None = None
    broker_status: ComponentStatus | None = None
    failover: FailoverStatus | None = None


class ObjectMeta(Model):
    model_config = ConfigDict(extra="ignore")
    name: str
    namespace: str | None = None
    labels: StringMap | None = None
    annotations: StringMap | None = None
    uid: str | None = None
    generation: int | None = None


class Named:
    """``name`` and ``namespace`` of one of the operator's namespaced resources (a mixin of the models
    that have a ``metadata: ObjectMeta`` field)."""

    if TYPE_CHECKING:
        metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"


class DorisCluster(Named, Model):
    api_version: Literal["doris.selectdb.com/v1"] = "doris.selectdb.com/v1"
    kind: Literal["DorisCluster"] = "DorisCluster"
    metadata: ObjectMeta
    spec: DorisClusterSpec
    status: DorisClusterStatus | None = None

    crd_plural: ClassVar[str] = PLURAL

    def components(self) -> list[tuple[Component, BaseSpec]]:
        """The configured components, in start-up order."""
        out: list[tuple[Component, BaseSpec]] = []
        for comp in COMPONENTS:
            spec = self.spec.component(comp)
            if spec is not None:
                out.append((comp, spec))
        return out


def owner_reference(dc: DorisCluster) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": dc.name,
        "uid": dc.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }
