"""StatefulSets, Services, PodDisruptionBudgets and the credentials Secret of a DorisCluster."""

from __future__ import annotations

import base64
from typing import Any

from ..api.doriscluster import BaseSpec, Component, DorisCluster, owner_reference
from . import names
from .config import ComponentConfig
from .pod import data_volumes, pod_template

Obj = dict[str, Any]


def metadata(
    dc: DorisCluster, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> Obj:
    meta: Obj = {"name": name, "namespace": dc.namespace, "labels": labels}
    if annotations:
        meta["annotations"] = dict(annotations)
    if dc.metadata.uid:
        meta["ownerReferences"] = [owner_reference(dc)]
    return meta


def statefulset(
    dc: DorisCluster,
    comp: Component,
    spec: BaseSpec,
    config: ComponentConfig,
    fe_config: ComponentConfig,
    credentials_secret: str | None,
) -> Obj:
    claims = [claim for _, _, claim in data_volumes(spec, comp, config) if claim is not None]
    sts_spec: Obj = {
        "replicas": initial_replicas(dc, comp, spec),
        "selector": {"matchLabels": names.selector_labels(dc.name, comp)},
        "serviceName": names.internal_service(dc.name, comp),
        "podManagementPolicy": "Parallel",
        # The operator replaces pods itself, one at a time in Doris's order (BE, CN, FE with the master
        # last, Broker), stopping queries to a BE before its restart: see reconcile/rollout.py.
        "updateStrategy": {"type": "OnDelete"},
        "revisionHistoryLimit": 5,
        "template": pod_template(dc, comp, spec, config, fe_config, credentials_secret),
    }
    if claims:
        sts_spec["volumeClaimTemplates"] = claims
        retention = spec.persistent_volume_claim_retention_policy
        if retention is not None and retention.when_deleted:
            sts_spec["persistentVolumeClaimRetentionPolicy"] = {
                "whenDeleted": retention.when_deleted,
                "whenScaled": "Retain",  # scale-in keeps data: BE decommission decides, never the StatefulSet
            }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(dc, names.statefulset(dc.name, comp), names.object_labels(dc.name, comp)),
        "spec": sts_spec,
    }


def internal_service(dc: DorisCluster, comp: Component, config: ComponentConfig) -> Obj:
    """Headless Service: the pods' stable DNS names, published before they are ready so nodes can find
    each other while they start."""
    port = next(p for p in config.ports() if p.number == config.liveness_port)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            dc,
            names.internal_service(dc.name, comp),
            names.object_labels(dc.name, comp) | {names.LABEL_SERVICE_ROLE: "internal"},
        ),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": names.selector_labels(dc.name, comp),
            "ports": [{"name": port.name, "port": port.number, "targetPort": port.number, "protocol": "TCP"}],
        },
    }


def access_service(dc: DorisCluster, comp: Component, spec: BaseSpec, config: ComponentConfig) -> Obj:
    svc = spec.service
    svc_type = (svc.type if svc else None) or "ClusterIP"
    pinned = {
        p.target_port: p.node_port
        for p in (svc.service_ports if svc and svc.service_ports else [])
        if p.target_port and p.node_port
    }
    ports = []
    for port in config.ports():
        entry: Obj = {"name": port.name, "port": port.number, "targetPort": port.number, "protocol": "TCP"}
        if svc_type != "ClusterIP" and port.number in pinned:
            entry["nodePort"] = pinned[port.number]
        ports.append(entry)
    svc_spec: Obj = {
        "type": svc_type,
        "selector": names.selector_labels(dc.name, comp),
        "ports": ports,
        "sessionAffinity": "None" if svc_type == "LoadBalancer" else "ClientIP",
    }
    if svc is not None:
        if svc_type == "LoadBalancer" and svc.load_balancer_ip:
            svc_spec["loadBalancerIP"] = svc.load_balancer_ip
        if svc_type != "ClusterIP" and svc.external_traffic_policy:
            svc_spec["externalTrafficPolicy"] = svc.external_traffic_policy
        if svc_type == "LoadBalancer" and svc.load_balancer_source_ranges:
            svc_spec["loadBalancerSourceRanges"] = list(svc.load_balancer_source_ranges)
    labels = {**(svc.labels or {} if svc else {}), **names.object_labels(dc.name, comp)}
    labels[names.LABEL_SERVICE_ROLE] = "access"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            dc, names.access_service(dc.name, comp), labels, svc.annotations if svc else None
        ),
        "spec": svc_spec,
    }


def cn_autoscaler(dc: DorisCluster) -> Obj | None:
    """The official operator's CN autoscaling: ``cnSpec.autoScalingPolicy`` as an ``autoscaling/v2``
    HorizontalPodAutoscaler ``{c}-cn-autoscaler`` on the CN StatefulSet (``version: v1`` keeps only the
    replica range, as there). While the HPA sets the CN replicas, the operator leaves them to it."""
    cn = dc.spec.cn_spec
    policy = cn.auto_scaling_policy if cn else None
    if policy is None or not policy.max_replicas:
        return None
    spec: Obj = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "name": names.statefulset(dc.name, "cn"),
        },
        "maxReplicas": policy.max_replicas,
    }
    if policy.min_replicas:
        spec["minReplicas"] = policy.min_replicas
    if policy.version != "v1" and policy.hpa_policy is not None:
        if policy.hpa_policy.metrics:
            spec["metrics"] = [dict(m) for m in policy.hpa_policy.metrics]
        if policy.hpa_policy.behavior:
            spec["behavior"] = dict(policy.hpa_policy.behavior)
    labels = names.object_labels(dc.name) | {names.LABEL_COMPONENT: names.AUTOSCALER_COMPONENT}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(dc, names.cn_autoscaler(dc.name), labels),
        "spec": spec,
    }


def initial_replicas(dc: DorisCluster, comp: Component, spec: BaseSpec) -> int:
    """``replicas`` (default 1), within ``autoScalingPolicy``'s range for an autoscaled CN."""
    replicas = spec.replicas if spec.replicas is not None else 1
    policy = dc.spec.cn_spec.auto_scaling_policy if comp == "cn" and dc.spec.cn_spec else None
    if policy is not None and policy.max_replicas:
        replicas = max(min(replicas, policy.max_replicas), policy.min_replicas or 1)
    return replicas


def disruption_budget(dc: DorisCluster, comp: Component) -> Obj:
    """At most one pod of a component voluntarily down at a time: FE keeps its quorum, BE its replicas."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(dc, names.pdb(dc.name, comp), names.object_labels(dc.name, comp)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": names.selector_labels(dc.name, comp)}},
    }


def admin_user_secret(dc: DorisCluster) -> Obj | None:
    """The deprecated ``adminUser`` as a basic-auth Secret, so the password is mounted, not put in env."""
    admin = dc.spec.admin_user
    if dc.spec.auth_secret or admin is None or not admin.name:
        return None

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/basic-auth",
        "metadata": metadata(dc, names.admin_secret(dc.name), names.object_labels(dc.name)),
        "data": {"username": b64(admin.name), "password": b64(admin.password or "")},
    }
