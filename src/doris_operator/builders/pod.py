"""The pod template of a component, following the official Doris images' contract: entrypoint and
arguments, environment, mounts, probes, preStop and grace period."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

from ..api.doriscluster import BaseSpec, BeSpec, BrokerSpec, CnSpec, Component, DorisCluster, FeSpec
from . import names
from .config import CONFIG_MOUNT_PATH, DORIS_HOME, DORIS_ROOT, HEALTH_PORT_KEY, ComponentConfig

Obj = dict[str, Any]

DEFAULT_INIT_IMAGE = "selectdb/alpine:latest"
DEFAULT_ELECTION_NUMBER = 3
BASIC_AUTH_PATH = "/etc/basic_auth"
PODINFO_PATH = "/etc/podinfo"
KRB5_PATH = "/etc/krb5"
KEYTAB_PATH = "/etc/keytab"

_ENTRYPOINT = {"fe": "fe", "be": "be", "cn": "be", "broker": "broker"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def volume_name(name: str) -> str:
    """A valid volume name for an object name (ConfigMap and Secret names may hold dots)."""
    if _DNS_LABEL.match(name) and len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:50].strip("-")
    return f"{base}-{digest}" if base else f"v-{digest}"


def election_number(spec: FeSpec) -> int:
    return spec.election_number if spec.election_number is not None else DEFAULT_ELECTION_NUMBER


def fe_address(dc: DorisCluster, spec: BaseSpec, fe_config: ComponentConfig) -> tuple[str, int]:
    """ENV_FE_ADDR and FE_QUERY_PORT: the configured external FE, else the FE access Service."""
    endpoints = spec.fe_address.endpoints if spec.fe_address else None
    if endpoints is not None and endpoints.address:
        return ",".join(endpoints.address), endpoints.port or fe_config.port("query_port")
    return names.access_service(dc.name, "fe"), fe_config.port("query_port")


def _env(name: str, value: str) -> Obj:
    return {"name": name, "value": value}


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _krb5_config(comp: Component, config: ComponentConfig) -> str:
    if comp == "fe":
        for key in ("java_opts_for_jdk_17", "java_opts"):
            match = re.search(r"-Djava\.security\.krb5\.conf=(\S+)", config.get(key) or "")
            if match:
                return match.group(1).strip("\"'")
    elif comp in ("be", "cn") and config.get("kerberos_krb5_conf_path"):
        return str(config.get("kerberos_krb5_conf_path"))
    return "/etc/krb5.conf"


def environment(
    dc: DorisCluster, comp: Component, spec: BaseSpec, config: ComponentConfig, fe_config: ComponentConfig
) -> list[Obj]:
    admin = dc.spec.admin_user
    env = [
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_IP", "status.podIP"),
        _field_env("HOST_IP", "status.hostIP"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _env("CONFIGMAP_MOUNT_PATH", CONFIG_MOUNT_PATH),
        _env("DNS_READY_TIMEOUT", "120"),
        _env("DNS_READY_INTERVAL", "2"),
        _env("USER", (admin.name if admin and admin.name and not dc.spec.auth_secret else None) or "root"),
        _env("DORIS_ROOT", DORIS_ROOT),
    ]
    krb = dc.spec.kerberos_info
    if krb is not None:
        env += [
            _env("KRB5_MOUNT_PATH", KRB5_PATH),
            _env("KRB5_CONFIG", _krb5_config(comp, config)),
            _env("KEYTAB_MOUNT_PATH", KEYTAB_PATH),
            _env("KEYTAB_FINAL_USED_PATH", krb.keytab_path or KEYTAB_PATH),
        ]
    # User variables override the operator's base ones ...
    for var in spec.env_vars or []:
        entry = var.to_dict()
        env = [e for e in env if e["name"] != var.name] + [entry]
    # ... but not the component contract, which the images depend on.
    contract: list[Obj] = []
    if isinstance(spec, BeSpec | CnSpec):
        if spec.skip_default_system_init:
            contract.append(_env("SKIP_CHECK_ULIMIT", "true"))
        if spec.auto_resolve_limit_cpu and spec.limits and "cpu" in spec.limits:
            contract.append(_env("BE_CPU_LIMIT", str(spec.limits["cpu"])))
    addr, query_port = fe_address(dc, spec, fe_config)
    contract += [_env("ENV_FE_ADDR", addr), _env("FE_QUERY_PORT", str(query_port))]
    if isinstance(spec, FeSpec):
        contract.append(_env("ELECT_NUMBER", str(election_number(spec))))
    if isinstance(spec, BeSpec) and spec.enable_workload_group:
        contract.append(_env("ENABLE_WORKLOAD_GROUP", "true"))
    if comp == "cn":
        contract.append(_env("COMPONENT_TYPE", "COMPUTE"))
    taken = {e["name"] for e in contract}
    return [e for e in env if e["name"] not in taken] + contract


def _health_command(port: int, config: ComponentConfig, fqdn: bool) -> str:
    scheme, tls_args = "http", ""
    if config.flag("enable_tls"):
        scheme = "https"
        tls_args = " ".join(
            f"--{opt} {config.get(key)}"
            for opt, key in (
                ("cacert", "tls_ca_certificate_path"),
                ("cert", "tls_certificate_path"),
                ("key", "tls_private_key_path"),
            )
            if config.get(key)
        )
    if fqdn:
        # Ready only once the pod's own DNS name resolves: FE and BE register by FQDN.
        return (
            'host="$(hostname -f)" && getent hosts "$host" >/dev/null && '
            f"curl --fail --silent --output /dev/null {tls_args} {scheme}://$host:{port}/api/health"
        ).replace("  ", " ")
    return (
        f"curl --fail --silent --output /dev/null {tls_args} {scheme}://localhost:{port}/api/health".replace(
            "  ", " "
        )
    )


def probes(comp: Component, spec: BaseSpec, config: ComponentConfig, fqdn: bool) -> dict[str, Obj]:
    start_timeout = max(spec.start_timeout or 0, 360)
    if comp == "broker":
        handler: Obj = {"exec": {"command": [f"{DORIS_ROOT}/broker_is_alive.sh", str(config.liveness_port)]}}
        readiness: Obj = copy.deepcopy(handler)
    else:
        handler = {"tcpSocket": {"port": config.liveness_port}}
        health_port = config.port(HEALTH_PORT_KEY[comp])
        if fqdn or config.flag("enable_tls"):
            readiness = {"exec": {"command": ["/bin/bash", "-c", _health_command(health_port, config, fqdn)]}}
        else:
            readiness = {"httpGet": {"path": "/api/health", "port": health_port}}
    policy = spec.readiness_probe_policy
    readiness |= {"periodSeconds": 5, "failureThreshold": 3}
    if policy is not None:
        for key, value in (
            ("timeoutSeconds", policy.timeout_seconds),
            ("failureThreshold", policy.failure_threshold),
            ("periodSeconds", policy.period_seconds),
        ):
            if value:
                readiness[key] = value
    return {
        "livenessProbe": copy.deepcopy(handler)
        | {
            "initialDelaySeconds": 80,
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": spec.live_timeout if spec.live_timeout and spec.live_timeout > 0 else 180,
        },
        "startupProbe": copy.deepcopy(handler) | {"periodSeconds": 5, "failureThreshold": start_timeout // 5},
        "readinessProbe": readiness,
    }


def _resources(requests: Any, limits: Any, claims: Any = None) -> Obj:
    out: Obj = {}
    if requests:
        out["requests"] = dict(requests)
    if limits:
        out["limits"] = dict(limits)
    if claims:
        out["claims"] = [c.to_dict() for c in claims]
    return out


def data_volumes(
    spec: BaseSpec, comp: Component, config: ComponentConfig
) -> list[tuple[str, str, Obj | None]]:
    """(volume name, mount path, claim template or None for emptyDir) for the component's data."""
    if not spec.persistent_volumes:
        if comp == "fe":
            return [("fe-meta", f"{DORIS_HOME['fe']}/doris-meta", None)]
        if comp in ("be", "cn"):
            return [("be-storage", f"{DORIS_HOME['be']}/storage", None)]
        return []
    out: list[tuple[str, str, Obj | None]] = []
    templates = [pv for pv in spec.persistent_volumes if not pv.mount_path]
    for pv in spec.persistent_volumes:
        if pv.mount_path:
            out.append((pv.name or "", pv.mount_path, _claim(pv.name or "", pv)))
    if templates and comp != "broker":
        # A template entry (no mountPath) covers every meta_dir / storage_root_path; the last one counts.
        template = templates[-1]
        paths = [p for p in config.data_paths() if p not in {m for _, m, _ in out}]
        for path in paths:
            name = template.name or ""
            if len(paths) > 1:
                suffix = re.sub(r"[^a-z0-9]+", "-", path.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-")
                name = volume_name(f"{name}-{suffix}" if suffix else name)
            out.append((name, path, _claim(name, template)))
    return out


def _claim(name: str, pv: Any) -> Obj:
    meta: Obj = {"name": name}
    if pv.annotations:
        meta["annotations"] = dict(pv.annotations)
    spec = pv.persistent_volume_claim_spec.to_dict() if pv.persistent_volume_claim_spec else {}
    spec.setdefault("accessModes", ["ReadWriteOnce"])
    return {"metadata": meta, "spec": spec}


def _default_affinity(dc: DorisCluster, comp: Component, spec: BaseSpec) -> Obj:
    def term(target: Component, weight: int) -> Obj:
        return {
            "weight": weight,
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": names.selector_labels(dc.name, target)},
                "topologyKey": "kubernetes.io/hostname",
            },
        }

    user = copy.deepcopy(spec.affinity or {})
    anti = user.setdefault("podAntiAffinity", {})
    anti["preferredDuringSchedulingIgnoredDuringExecution"] = [
        term(comp, 20),
        *anti.get("preferredDuringSchedulingIgnoredDuringExecution", []),
    ]
    near: Component | None = None
    if isinstance(spec, BeSpec) and spec.enable_fe_affinity:
        near, weight = "fe", 15
    elif isinstance(spec, BrokerSpec) and spec.kick_off_affinity_be:
        near, weight = "be", 20
    if near is not None:
        aff = user.setdefault("podAffinity", {})
        aff["preferredDuringSchedulingIgnoredDuringExecution"] = [
            *aff.get("preferredDuringSchedulingIgnoredDuringExecution", []),
            term(near, weight),
        ]
    return user


def _init_containers(comp: Component, spec: BaseSpec) -> list[Obj]:
    out: list[Obj] = []
    privileged = {"privileged": True}
    if comp in ("be", "cn") and not getattr(spec, "skip_default_system_init", False):
        out.append(
            {
                "name": "default-init",
                "image": spec.image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", "sysctl -w vm.max_map_count=2000000 && swapoff -a"],
                "securityContext": privileged,
            }
        )
    init = spec.system_initialization
    if init is not None:
        image = init.init_image or DEFAULT_INIT_IMAGE
        if comp in ("be", "cn") and image == DEFAULT_INIT_IMAGE:
            image = spec.image  # the Doris image has the tools; no extra image to pull (or to lack arm64)
        container: Obj = {
            "name": "init",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "securityContext": privileged,
        }
        if init.command:
            container["command"] = list(init.command)
        if init.args:
            container["args"] = list(init.args)
        if resources := _resources(init.requests, init.limits, init.claims):
            container["resources"] = resources
        out.append(container)
    return out


def merge_overlay(base: Any, overlay: Any) -> Any:
    """Merge a user's pod-template overlay: maps recursively, lists of named items by name, other lists
    and scalars replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge_overlay(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (
        isinstance(base, list)
        and isinstance(overlay, list)
        and all(isinstance(i, dict) and "name" in i for i in base + overlay)
    ):
        merged = {item["name"]: item for item in base}
        order = [item["name"] for item in base]
        for item in overlay:
            if item["name"] in merged:
                merged[item["name"]] = merge_overlay(merged[item["name"]], item)
            else:
                merged[item["name"]] = copy.deepcopy(item)
                order.append(item["name"])
        return [merged[n] for n in order]
    return copy.deepcopy(overlay)


def pod_template(
    dc: DorisCluster,
    comp: Component,
    spec: BaseSpec,
    config: ComponentConfig,
    fe_config: ComponentConfig,
    credentials_secret: str | None,
) -> Obj:
    fqdn = fe_config.get("enable_fqdn_mode") is None or fe_config.flag("enable_fqdn_mode")
    volumes: list[Obj] = [
        {
            "name": "podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                ]
            },
        }
    ]
    mounts: list[Obj] = [{"name": "podinfo", "mountPath": PODINFO_PATH}]
    shared = [
        s
        for s in dc.spec.shared_persistent_volume_claims or []
        if not s.support_components or comp in s.support_components
    ]
    shared_paths = {(s.mount_path or "").replace("$DORIS_HOME", DORIS_HOME[comp]) for s in shared}
    for name, path, claim in data_volumes(spec, comp, config):
        if path in shared_paths:
            continue  # a shared claim on the same path wins, as in the official operator
        if claim is None:
            volumes.append({"name": name, "emptyDir": {}})
        mounts.append({"name": name, "mountPath": path})
    info = spec.config_map_info
    if info is not None:
        entries: list[tuple[str | None, str]] = [(info.config_map_name, CONFIG_MOUNT_PATH)]
        entries += [(m.config_map_name, m.mount_path or CONFIG_MOUNT_PATH) for m in info.config_maps or []]
        for cm, path in entries:
            if cm:
                volumes.append({"name": volume_name(cm), "configMap": {"name": cm}})
                mounts.append({"name": volume_name(cm), "mountPath": path})
    for secret in spec.secrets or []:
        if secret.secret_name:
            volumes.append(
                {"name": volume_name(secret.secret_name), "secret": {"secretName": secret.secret_name}}
            )
            mounts.append(
                {"name": volume_name(secret.secret_name), "mountPath": secret.mount_path or CONFIG_MOUNT_PATH}
            )
    if credentials_secret:
        volumes.append({"name": "basic-auth", "secret": {"secretName": credentials_secret}})
        mounts.append({"name": "basic-auth", "mountPath": BASIC_AUTH_PATH, "readOnly": True})
    krb = dc.spec.kerberos_info
    if krb is not None:
        if krb.krb5_config_map:
            volumes.append({"name": "krb5", "configMap": {"name": krb.krb5_config_map}})
            mounts.append({"name": "krb5", "mountPath": KRB5_PATH})
        if krb.keytab_secret_name:
            volumes.append({"name": "keytab", "secret": {"secretName": krb.keytab_secret_name}})
            mounts.append({"name": "keytab", "mountPath": KEYTAB_PATH})
    for claim_ref in shared:
        if claim_ref.persistent_volume_claim_name and claim_ref.mount_path:
            vname = volume_name(claim_ref.persistent_volume_claim_name)
            volumes.append(
                {
                    "name": vname,
                    "persistentVolumeClaim": {"claimName": claim_ref.persistent_volume_claim_name},
                }
            )
            mounts.append(
                {"name": vname, "mountPath": claim_ref.mount_path.replace("$DORIS_HOME", DORIS_HOME[comp])}
            )

    security = copy.deepcopy(spec.container_security_context) if spec.container_security_context else None
    if isinstance(spec, BeSpec) and spec.enable_workload_group:
        security = (security or {}) | {"privileged": True}
    entry = _ENTRYPOINT[comp]
    container: Obj = {
        "name": comp,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [f"{DORIS_ROOT}/{entry}_entrypoint.sh"],
        "args": ["$(ENV_FE_ADDR)"],
        "env": environment(dc, comp, spec, config, fe_config),
        "ports": [{"name": p.name, "containerPort": p.number, "protocol": "TCP"} for p in config.ports()],
        "volumeMounts": mounts,
        "lifecycle": {"preStop": {"exec": {"command": [f"{DORIS_ROOT}/{entry}_prestop.sh"]}}},
        **probes(comp, spec, config, fqdn),
    }
    if resources := _resources(spec.requests, spec.limits, spec.claims):
        container["resources"] = resources
    if security:
        container["securityContext"] = security

    pod_spec: Obj = {
        "containers": [container],
        "volumes": volumes,
        "affinity": _default_affinity(dc, comp, spec),
    }
    if init := _init_containers(comp, spec):
        pod_spec["initContainers"] = init
    if dc.spec.member_readiness_gate is not False:
        # Ready only once the operator has seen the member alive in Doris (reconcile/readiness.py).
        pod_spec["readinessGates"] = [{"conditionType": names.MEMBER_ALIVE}]
    grace = spec.termination_grace_period_seconds
    grace = grace if grace is not None else config.grace_seconds
    if grace is not None:
        pod_spec["terminationGracePeriodSeconds"] = grace
    pod_security = copy.deepcopy(spec.security_context) if spec.security_context else {}
    # The container runtime's default seccomp profile unless the user chose one (Pod Security "baseline"
    # allows it; the kubelet's own default is Unconfined).
    pod_security.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    if spec.fs_group is not None:
        pod_security.setdefault("fsGroup", spec.fs_group)
    optional: dict[str, Any] = {
        "securityContext": pod_security,
        "serviceAccountName": spec.service_account,
        "nodeSelector": spec.node_selector,
        "tolerations": [t.to_dict() for t in spec.tolerations or []],
        "hostAliases": [h.to_dict() for h in spec.host_aliases or []],
        "imagePullSecrets": [s.to_dict() for s in spec.image_pull_secrets or []],
        "topologySpreadConstraints": spec.topology_spread_constraints,
        "priorityClassName": spec.priority_class_name,
    }
    pod_spec.update({k: v for k, v in optional.items() if v})

    metadata: Obj = {"labels": names.pod_labels(dc.name, comp, spec.pod_labels)}
    annotations = dict(spec.annotations or {})
    restarted = (dc.metadata.annotations or {}).get(names.restarted_at(comp))
    if restarted:
        annotations[names.restarted_at(comp)] = restarted  # a new value rolls the component
    if dc.spec.enable_restart_when_config_change and config.source:
        digest = hashlib.sha256(json.dumps(config.values, sort_keys=True).encode()).hexdigest()[:16]
        annotations[names.CONFIG_HASH] = digest  # new conf file content rolls the component
    if annotations:
        metadata["annotations"] = annotations
    template: Obj = {"metadata": metadata, "spec": pod_spec}
    if spec.pod_template:
        template = merge_overlay(template, spec.pod_template)
        # The selector labels are what the StatefulSet and Services select on: the overlay can't move them.
        template["metadata"]["labels"] |= names.selector_labels(dc.name, comp) | {
            names.LABEL_CLUSTER: dc.name
        }
    return template
