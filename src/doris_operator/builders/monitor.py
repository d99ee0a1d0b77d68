"""Pure functions DorisMonitor (+ its DorisCluster) -> the Kubernetes objects that monitor it.  No I/O.

* ``prometheusOperator`` mode: PodMonitors (FE on ``http-port``, BE and CN on ``webserver-port``, the
  operator on its ``metrics`` port), a PrometheusRule, and a ConfigMap of dashboards labelled for
  Grafana's dashboard sidecar.
* ``bundled`` mode: a Prometheus (ServiceAccount and a Role to list this namespace's pods, its config
  and rules in a ConfigMap, a StatefulSet with a PVC, a Service) and a Grafana (provisioning ConfigMap,
  the dashboards ConfigMap, a Deployment reading the admin password from a mounted Secret file, a
  Service).

Every object carries the labels :func:`labels` (the reconcile lists and prunes by them) and a
controller owner reference to the DorisMonitor, so deleting it deletes them (garbage collection).
"""

from __future__ import annotations

import hashlib
import json
from types import ModuleType
from typing import Any

import yaml

from ..api.doriscluster import DorisCluster
from ..api.dorismonitor import DorisMonitor, ResourceRequirements, ServiceSpec, owner_reference
from . import alerts as _alerts
from . import names

Obj = dict[str, Any]

LABEL_MONITOR = "doris.apache.org/monitor"
LABEL_PART = "doris.apache.org/monitor-part"
CONFIG_HASH = "doris.apache.org/config-hash"
MONITORING_API = "monitoring.coreos.com/v1"
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
RULES_FILE = "doris-rules.yml"
CONFIG_FILE = "prometheus.yml"
DEFAULT_STORAGE = "20Gi"
GRAFANA_ADMIN_MOUNT = "/etc/grafana-admin"

# (component regex, container port name) of the Doris pods scraped; names.* and builders/config.py
FE_PORT_NAME = "http-port"
BE_PORT_NAME = "webserver-port"

PARTS_OPERATOR = ("scrape", "rules", "dashboards")
PARTS_BUNDLED = ("prometheus", "rules", "grafana", "dashboards")


def labels(dm: DorisMonitor, part: str) -> dict[str, str]:
    return {
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        LABEL_MONITOR: dm.name,
        LABEL_PART: part,
        "app.kubernetes.io/part-of": "doris-monitor",
    }


def _meta(dm: DorisMonitor, name: str, part: str, extra_labels: dict[str, str] | None = None) -> Obj:
    return {
        "name": name,
        "namespace": dm.namespace,
        "labels": {**(extra_labels or {}), **labels(dm, part)},
        "ownerReferences": [owner_reference(dm)],
    }


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def name(dm: DorisMonitor, suffix: str) -> str:
    return f"{dm.name}-{suffix}"


# -- the labels every scrape target gets, in both modes -----------------------------------------------


def _target_relabelings() -> list[Obj]:
    """Prometheus Operator form (camelCase) of the relabelling onto namespace/pod/doris_cluster/component."""
    return [
        {"sourceLabels": ["__meta_kubernetes_namespace"], "targetLabel": "namespace"},
        {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"},
        {"sourceLabels": ["__meta_kubernetes_pod_label_app_doris_cluster"], "targetLabel": "doris_cluster"},
        {
            "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
            "targetLabel": "component",
        },
    ]


def _snake(relabel: Obj) -> Obj:
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {keys.get(k, k): v for k, v in relabel.items()}


# -- prometheusOperator mode ---------------------------------------------------------------------------


def pod_monitors(dm: DorisMonitor) -> list[Obj]:
    mode = dm.operator_mode
    user = dict(mode.labels or {})
    out: list[Obj] = []
    for suffix, components, port in (("fe", ["fe"], FE_PORT_NAME), ("be", ["be", "cn"], BE_PORT_NAME)):
        out.append(
            {
                "apiVersion": MONITORING_API,
                "kind": "PodMonitor",
                "metadata": _meta(dm, name(dm, suffix), "scrape", user),
                "spec": {
                    "jobLabel": names.LABEL_COMPONENT,
                    "namespaceSelector": {"matchNames": [dm.namespace]},
                    "selector": {
                        "matchLabels": {names.LABEL_CLUSTER: dm.spec.cluster},
                        "matchExpressions": [
                            {"key": names.LABEL_COMPONENT, "operator": "In", "values": components}
                        ],
                    },
                    "podMetricsEndpoints": [
                        {
                            "port": port,
                            "path": "/metrics",
                            "interval": mode.interval,
                            "relabelings": _target_relabelings(),
                        }
                    ],
                },
            }
        )
    target = dm.spec.operator
    if target.enabled:
        out.append(
            {
                "apiVersion": MONITORING_API,
                "kind": "PodMonitor",
                "metadata": _meta(dm, name(dm, "operator"), "scrape", user),
                "spec": {
                    "namespaceSelector": {"matchNames": [target.namespace]},
                    "selector": {"matchLabels": dict(target.pod_labels)},
                    "podMetricsEndpoints": [
                        {"port": target.port_name, "path": "/metrics", "interval": mode.interval}
                    ],
                },
            }
        )
    return out


def prometheus_rule(dm: DorisMonitor, dc: DorisCluster | None) -> Obj:
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": _meta(dm, name(dm, "rules"), "rules", dict(dm.operator_mode.labels or {})),
        "spec": {"groups": _alerts.rule_groups(dm, dc)},
    }


def _dashboards() -> ModuleType:
    """``builders.dashboards`` (and grafana_foundation_sdk): imported when a DorisMonitor first asks for
    dashboards, not by every operator run."""
    from . import dashboards

    return dashboards


def dashboards_config_map(dm: DorisMonitor, for_sidecar: bool) -> Obj:
    data = _dashboards().texts(dm)
    extra: dict[str, str] = {}
    meta = _meta(dm, name(dm, "dashboards"), "dashboards")
    if for_sidecar:
        mode = dm.operator_mode
        extra = {mode.dashboard_label: mode.dashboard_label_value}
        meta = _meta(dm, name(dm, "dashboards"), "dashboards", extra)
        if mode.dashboard_annotations:
            meta["annotations"] = dict(mode.dashboard_annotations)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


# -- bundled mode --------------------------------------------------------------------------------------


def prometheus_config(dm: DorisMonitor) -> Obj:
    """prometheus.yml of the bundled Prometheus: this cluster's pods only (kubernetes_sd in the
    namespace, with a label selector, then relabelling on our pod labels), and the operator by its
    Service's DNS name."""
    c = dm.spec.cluster
    interval = dm.bundled.prometheus.interval
    relabel = [_snake(r) for r in _target_relabelings()]

    def pods_job(job: str, components: str, port: str) -> Obj:
        return {
            "job_name": job,
            "metrics_path": "/metrics",
            "kubernetes_sd_configs": [
                {
                    "role": "pod",
                    "namespaces": {"names": [dm.namespace]},
                    "selectors": [{"role": "pod", "label": f"{names.LABEL_CLUSTER}={c}"}],
                }
            ],
            "relabel_configs": [
                {
                    "source_labels": ["__meta_kubernetes_pod_label_app_doris_cluster"],
                    "regex": c,
                    "action": "keep",
                },
                {
                    "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
                    "regex": components,
                    "action": "keep",
                },
                {
                    "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                    "regex": port,
                    "action": "keep",
                },
                {
                    "source_labels": ["__meta_kubernetes_pod_phase"],
                    "regex": "Succeeded|Failed",
                    "action": "drop",
                },
                *relabel,
            ],
        }

    jobs = [pods_job("doris-fe", "fe", FE_PORT_NAME), pods_job("doris-be", "be|cn", BE_PORT_NAME)]
    target = dm.spec.operator
    if target.enabled:
        jobs.append(
            {
                "job_name": "doris-operator",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"{target.service}.{target.namespace}.svc:{target.port}"]}],
            }
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [RULES_FILE],
        "scrape_configs": jobs,
    }


def rules_file(dm: DorisMonitor, dc: DorisCluster | None) -> Obj:
    return {"groups": _alerts.rule_groups(dm, dc)}


def _resources(r: ResourceRequirements | None, default: Obj) -> Obj:
    return r.to_dict() if r is not None else default


def _service(dm: DorisMonitor, svc_name: str, part: str, port: int, spec: ServiceSpec) -> Obj:
    entry: Obj = {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
    if spec.type != "ClusterIP" and spec.node_port is not None:
        entry["nodePort"] = spec.node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(dm, svc_name, part),
        "spec": {"type": spec.type, "selector": _selector(dm, part), "ports": [entry]},
    }


def _selector(dm: DorisMonitor, part: str) -> dict[str, str]:
    return {LABEL_MONITOR: dm.name, LABEL_PART: part}


_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def prometheus_objects(dm: DorisMonitor, dc: DorisCluster | None) -> list[Obj]:
    p = dm.bundled.prometheus
    sa = name(dm, "prometheus")
    config = {
        CONFIG_FILE: yaml.safe_dump(prometheus_config(dm), sort_keys=False),
        RULES_FILE: yaml.safe_dump(rules_file(dm, dc), sort_keys=False),
    }
    storage = p.storage.to_dict() if p.storage is not None else {"requests": {"storage": DEFAULT_STORAGE}}
    claim: Obj = {"accessModes": ["ReadWriteOnce"], "resources": storage}
    if p.storage_class_name:
        claim["storageClassName"] = p.storage_class_name
    pod_labels = _selector(dm, "prometheus")
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(dm, name(dm, "prometheus"), "prometheus"),
        "spec": {
            "replicas": 1,
            "serviceName": name(dm, "prometheus"),
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {
                    "labels": {**pod_labels, names.LABEL_MANAGED_BY: names.MANAGED_BY},
                    "annotations": {CONFIG_HASH: _hash(config)},
                },
                "spec": {
                    "serviceAccountName": sa,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65534,
                        "runAsGroup": 65534,
                        "fsGroup": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "prometheus",
                            "image": p.image,
                            "args": [
                                f"--config.file=/etc/prometheus/{CONFIG_FILE}",
                                "--storage.tsdb.path=/prometheus",
                                f"--storage.tsdb.retention.time={p.retention}",
                                f"--web.listen-address=:{PROMETHEUS_PORT}",
                            ],
                            "ports": [{"name": "http", "containerPort": PROMETHEUS_PORT, "protocol": "TCP"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/-/ready", "port": "http"},
                                "periodSeconds": 10,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/-/healthy", "port": "http"},
                                "periodSeconds": 15,
                                "failureThreshold": 10,
                            },
                            "resources": _resources(
                                p.resources, {"requests": {"cpu": "200m", "memory": "512Mi"}}
                            ),
                            "securityContext": _SECURITY,
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/prometheus", "readOnly": True},
                                {"name": "data", "mountPath": "/prometheus"},
                            ],
                        }
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": name(dm, "prometheus-config")}}],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(dm, sa, "prometheus"),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(dm, sa, "prometheus"),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(dm, sa, "prometheus"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": dm.namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(dm, name(dm, "prometheus-config"), "rules"),
            "data": config,
        },
        statefulset,
        _service(dm, name(dm, "prometheus"), "prometheus", PROMETHEUS_PORT, p.service),
    ]


def grafana_admin_secret_name(dm: DorisMonitor) -> tuple[str, str]:
    """(Secret name, key) of the Grafana admin password."""
    secret = dm.bundled.grafana.admin_secret
    if secret is not None:
        return secret.name, secret.key
    return name(dm, "grafana-admin"), "password"


def generated_admin_secret(dm: DorisMonitor, password: str) -> Obj:
    """The Secret made when spec.bundled.grafana.adminSecret is unset (the password is chosen once by
    the reconcile, which never re-applies it)."""
    secret_name, key = grafana_admin_secret_name(dm)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(dm, secret_name, "grafana"),
        "type": "Opaque",
        "stringData": {key: password},
    }


def prometheus_url(dm: DorisMonitor) -> str:
    return f"http://{name(dm, 'prometheus')}.{dm.namespace}.svc:{PROMETHEUS_PORT}"


def grafana_url(dm: DorisMonitor) -> str:
    return f"http://{name(dm, 'grafana')}.{dm.namespace}.svc:{GRAFANA_PORT}"


def grafana_objects(dm: DorisMonitor) -> list[Obj]:
    g = dm.bundled.grafana
    secret_name, key = grafana_admin_secret_name(dm)
    provisioning = {
        "datasources.yaml": yaml.safe_dump(
            {
                "apiVersion": 1,
                "datasources": [
                    {
                        "name": "Prometheus",
                        "uid": "prometheus",
                        "type": "prometheus",
                        "access": "proxy",
                        "url": prometheus_url(dm),
                        "isDefault": True,
                        "editable": False,
                    }
                ],
            },
            sort_keys=False,
        ),
        "dashboards.yaml": yaml.safe_dump(
            {
                "apiVersion": 1,
                "providers": [
                    {
                        "name": "doris",
                        "folder": "Doris",
                        "type": "file",
                        "disableDeletion": True,
                        "allowUiUpdates": False,
                        "options": {"path": "/var/lib/grafana/dashboards/doris"},
                    }
                ],
            },
            sort_keys=False,
        ),
    }
    pod_labels = _selector(dm, "grafana")
    dashboards = dashboards_config_map(dm, for_sidecar=False) if dm.spec.dashboards else None
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(dm, name(dm, "grafana"), "grafana"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": pod_labels},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {
                    "labels": {**pod_labels, names.LABEL_MANAGED_BY: names.MANAGED_BY},
                    "annotations": {CONFIG_HASH: _hash(provisioning, (dashboards or {}).get("data"))},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 472,
                        "runAsGroup": 472,
                        "fsGroup": 472,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "grafana",
                            "image": g.image,
                            # the password is a file from the Secret: never an env value
                            "env": [
                                {"name": "GF_SECURITY_ADMIN_USER", "value": g.admin_user},
                                {
                                    "name": "GF_SECURITY_ADMIN_PASSWORD__FILE",
                                    "value": f"{GRAFANA_ADMIN_MOUNT}/{key}",
                                },
                                {"name": "GF_PATHS_PROVISIONING", "value": "/etc/grafana/provisioning"},
                                {"name": "GF_AUTH_ANONYMOUS_ENABLED", "value": "false"},
                                {"name": "GF_ANALYTICS_REPORTING_ENABLED", "value": "false"},
                            ],
                            "ports": [{"name": "http", "containerPort": GRAFANA_PORT, "protocol": "TCP"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/api/health", "port": "http"},
                                "periodSeconds": 10,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/api/health", "port": "http"},
                                "periodSeconds": 15,
                                "failureThreshold": 10,
                            },
                            "resources": _resources(
                                g.resources, {"requests": {"cpu": "100m", "memory": "128Mi"}}
                            ),
                            "securityContext": _SECURITY,
                            "volumeMounts": [
                                {"name": "admin", "mountPath": GRAFANA_ADMIN_MOUNT, "readOnly": True},
                                {
                                    "name": "provisioning",
                                    "mountPath": "/etc/grafana/provisioning/datasources/datasources.yaml",
                                    "subPath": "datasources.yaml",
                                    "readOnly": True,
                                },
                                {
                                    "name": "provisioning",
                                    "mountPath": "/etc/grafana/provisioning/dashboards/dashboards.yaml",
                                    "subPath": "dashboards.yaml",
                                    "readOnly": True,
                                },
                                {
                                    "name": "dashboards",
                                    "mountPath": "/var/lib/grafana/dashboards/doris",
                                    "readOnly": True,
                                },
                                {"name": "data", "mountPath": "/var/lib/grafana"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "admin",
                            "secret": {"secretName": secret_name, "items": [{"key": key, "path": key}]},
                        },
                        {"name": "provisioning", "configMap": {"name": name(dm, "grafana-provisioning")}},
                        (
                            {"name": "dashboards", "configMap": {"name": name(dm, "dashboards")}}
                            if dashboards is not None
                            else {"name": "dashboards", "emptyDir": {}}
                        ),
                        {"name": "data", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    out = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(dm, name(dm, "grafana-provisioning"), "grafana"),
            "data": provisioning,
        }
    ]
    if dashboards is not None:
        out.append(dashboards)
    out += [deployment, _service(dm, name(dm, "grafana"), "grafana", GRAFANA_PORT, g.service)]
    return out


def build(dm: DorisMonitor, dc: DorisCluster | None) -> list[Obj]:
    """Everything the DorisMonitor wants (the generated Grafana admin Secret aside: see
    :func:`generated_admin_secret`).  ``dc`` is its DorisCluster when it exists (the FE followers and
    quorum of the rules come from it)."""
    if dm.spec.mode == "prometheusOperator":
        out = pod_monitors(dm)
        if dm.spec.alerts.enabled:
            out.append(prometheus_rule(dm, dc))
        if dm.spec.dashboards:
            out.append(dashboards_config_map(dm, for_sidecar=True))
        return out
    out = prometheus_objects(dm, dc)
    if dm.bundled.grafana.enabled:
        out += grafana_objects(dm)
    return out
