"""Which DorisCluster field produced a field of a child object: the builders read backwards.

When the apiserver refuses a child (the webhook's server-side dry-run of the StatefulSets, Services and
PodDisruptionBudgets), its error names a field of the child (``spec.template.spec.affinity...``); the
user wrote a DorisCluster, so :func:`cluster_path` turns that into the DorisCluster field that produced
it (``spec.feSpec.affinity...``).  Kept next to the builders because it knows what they do: which
volume comes from which entry, that the operator's own anti-affinity term comes first, that the pod
template overlay wins over every other field.  Pure; no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..api.doriscluster import COMPONENTS, BaseSpec, Component, DorisCluster
from . import names
from .pod import volume_name

Obj = dict[str, Any]
Segment = str | int

_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\[([^\]]*)\]")
_KEY_VALUE = re.compile(r'\s*([A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^,\]]+)\s*(?:,|$)')


def parse(path: str, obj: Any) -> list[Segment]:
    """Segments of an apiserver field path, with list positions resolved against ``obj``.

    Reads both spellings: validation's ``spec.containers[0].env[2].name`` and server-side apply's
    ``.spec.containers[name="be"].env[name="X"]`` (a keyed list item becomes its index in ``obj``)."""
    out: list[Segment] = []
    node = obj
    text = path if path.startswith((".", "[")) else "." + path
    for match in _TOKEN.finditer(text):
        key, index, selector = match.groups()
        segment: Segment
        if key is not None:
            segment = key
        elif index is not None:
            segment = int(index)
        else:
            segment = _select(node, selector or "")
        out.append(segment)
        node = _child(node, segment)
    return out


def _select(node: Any, selector: str) -> Segment:
    wanted: dict[str, Any] = {}
    for key, raw in _KEY_VALUE.findall(selector):
        try:
            wanted[key] = json.loads(raw)
        except json.JSONDecodeError:
            wanted[key] = raw.strip()
    if isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items() if k):
                return i
            if "" in wanted and item == wanted[""]:  # a set: [="value"]
                return i
    return selector


def _child(node: Any, segment: Segment) -> Any:
    if isinstance(segment, int):
        return node[segment] if isinstance(node, list) and 0 <= segment < len(node) else None
    return node.get(segment) if isinstance(node, dict) else None


def render(segments: list[Segment]) -> str:
    out = ""
    for seg in segments:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else seg)
    return out


def _key(base: str, key: str) -> str:
    return f"{base}[{key}]"


def cluster_path(dc: DorisCluster, child: Obj, segments: list[Segment], value: str | None = None) -> str:
    """The DorisCluster field that produced ``segments`` of ``child`` (one of ``build(dc)``'s objects).
    ``value`` is the offending value the apiserver quoted, if any: it picks the map key of a label,
    annotation or node selector.  Falls back to the component (``spec.beSpec``) or to ``spec``."""
    meta = child.get("metadata") or {}
    comp = (meta.get("labels") or {}).get(names.LABEL_COMPONENT)
    if segments[:2] == ["metadata", "name"]:
        return "metadata.name"
    if comp not in COMPONENTS:
        return "spec"
    component: Component = comp
    spec = dc.spec.component(component)
    base = f"spec.{component}Spec"
    if spec is None:
        return "spec"
    kind = child.get("kind")
    if kind == "StatefulSet":
        return _statefulset(dc, component, spec, base, child, segments, value)
    if kind == "Service":
        if meta.get("name") == names.access_service(dc.name, component):
            return _access_service(spec, base, child, segments, value)
        return _config_source(spec, base)
    return base


def _config_source(spec: BaseSpec, base: str) -> str:
    """Ports come from the conf file of the component's ConfigMap, else they are Doris's defaults."""
    info = spec.config_map_info
    if info is not None and info.config_map_name:
        return f"{base}.configMapInfo.configMapName"
    return base


def _access_service(spec: BaseSpec, base: str, child: Obj, seg: list[Segment], value: str | None) -> str:
    svc = f"{base}.service"
    for field in ("annotations", "labels"):
        if seg[:2] == ["metadata", field]:
            if len(seg) > 2:
                return _key(f"{svc}.{field}", str(seg[2]))
            return _map_entry(f"{svc}.{field}", getattr(spec.service, field, None), value)
    if seg[:2] == ["spec", "ports"] and (len(seg) == 2 or not isinstance(seg[2], int)):
        return _config_source(spec, base)  # the ports as a whole: they come from the conf file
    if seg[:2] == ["spec", "ports"] and isinstance(seg[2], int):
        ports = child["spec"].get("ports") or []
        port = ports[seg[2]] if seg[2] < len(ports) else {}
        if seg[3:4] == ["nodePort"] and spec.service is not None:
            for i, entry in enumerate(spec.service.service_ports or []):
                if entry.target_port == port.get("targetPort"):
                    return f"{svc}.servicePorts[{i}].nodePort"
            return f"{svc}.servicePorts"
        return _config_source(spec, base)
    if (
        seg[:1] == ["spec"]
        and len(seg) > 1
        and seg[1]
        in (
            "type",
            "loadBalancerIP",
            "externalTrafficPolicy",
            "loadBalancerSourceRanges",
        )
    ):
        return svc + "." + render(seg[1:])
    return svc


def _statefulset(
    dc: DorisCluster,
    comp: Component,
    spec: BaseSpec,
    base: str,
    child: Obj,
    seg: list[Segment],
    value: str | None,
) -> str:
    if seg[:2] == ["spec", "replicas"]:
        return f"{base}.replicas"
    if seg[:2] == ["spec", "persistentVolumeClaimRetentionPolicy"]:
        return f"{base}.persistentVolumeClaimRetentionPolicy"
    if seg[:2] == ["spec", "volumeClaimTemplates"] and len(seg) > 2 and isinstance(seg[2], int):
        templates = child["spec"].get("volumeClaimTemplates") or []
        name = templates[seg[2]]["metadata"]["name"] if seg[2] < len(templates) else ""
        entry = _persistent_volume(spec, base, name)
        rest = seg[3:]
        if rest[:1] == ["spec"]:
            return entry + ".persistentVolumeClaimSpec" + "".join(_suffix(rest[1:]))
        if rest[:2] == ["metadata", "annotations"]:
            return entry + ".annotations"
        return entry
    if seg[:2] == ["spec", "template"]:
        return _template(dc, comp, spec, base, child["spec"]["template"], seg[2:], value)
    return base


def _suffix(seg: list[Segment]) -> list[str]:
    return [f"[{s}]" if isinstance(s, int) else f".{s}" for s in seg]


def _persistent_volume(spec: BaseSpec, base: str, name: str) -> str:
    pvs = spec.persistent_volumes or []
    for i, pv in enumerate(pvs):
        if pv.name == name and pv.mount_path:
            return f"{base}.persistentVolumes[{i}]"
    templates = [i for i, pv in enumerate(pvs) if not pv.mount_path]
    if templates:  # expanded from meta_dir / storage_root_path; the last template counts
        return f"{base}.persistentVolumes[{templates[-1]}]"
    return f"{base}.persistentVolumes"


def _in_overlay(overlay: Any, node: Any, seg: list[Segment]) -> list[Segment] | None:
    """The path of ``seg`` inside the pod template overlay, if the overlay set that field (lists of
    named items are merged by name, so positions differ)."""
    out: list[Segment] = []
    for s in seg:
        if isinstance(s, int):
            if not isinstance(overlay, list) or not isinstance(node, list) or s >= len(node):
                return None
            item = node[s]
            if all(isinstance(i, dict) and "name" in i for i in overlay) and isinstance(item, dict):
                pos = next((j for j, o in enumerate(overlay) if o.get("name") == item.get("name")), None)
                if pos is None:
                    return None
                out.append(pos)
                overlay, node = overlay[pos], item
            else:
                if s >= len(overlay):
                    return None
                out.append(s)
                overlay, node = overlay[s], item
        else:
            if not isinstance(overlay, dict) or s not in overlay:
                return None
            out.append(s)
            overlay, node = overlay[s], node.get(s) if isinstance(node, dict) else None
    return out


def _map_entry(base: str, user: dict[str, str] | None, value: str | None) -> str:
    """``base[key]`` for the key (or the key whose value) the apiserver quoted."""
    for key, val in (user or {}).items():
        if value is not None and value in (key, val):
            return _key(base, key)
    return base


def _template(
    dc: DorisCluster,
    comp: Component,
    spec: BaseSpec,
    base: str,
    template: Obj,
    seg: list[Segment],
    value: str | None,
) -> str:
    # The apiserver names the template's labels `spec.template.labels` (not .metadata.labels).
    if seg[:1] in (["labels"], ["annotations"]):
        seg = ["metadata", *seg]
    overlay = spec.pod_template or {}
    if seg[:2] in (["metadata", "labels"], ["metadata", "annotations"]):
        field = str(seg[1])
        theirs = ((overlay.get("metadata") or {}).get(field)) or {}
        if len(seg) > 2:
            key = str(seg[2])
            if key in theirs:
                return _key(f"{base}.podTemplate.metadata.{field}", key)
            return _key(f"{base}.{'podLabels' if field == 'labels' else 'annotations'}", key)
        found = _map_entry(f"{base}.podTemplate.metadata.{field}", theirs, value)
        if found.endswith("]"):
            return found
        own = spec.pod_labels if field == "labels" else spec.annotations
        return _map_entry(f"{base}.{'podLabels' if field == 'labels' else 'annotations'}", own, value)
    inside = _in_overlay(overlay, template, seg) if overlay else None
    if inside:
        return f"{base}.podTemplate" + "".join(_suffix(inside))
    if seg[:1] != ["spec"] or len(seg) < 2:
        return base
    pod, field, rest = template.get("spec") or {}, str(seg[1]), seg[2:]
    direct = {
        "tolerations": "tolerations",
        "hostAliases": "hostAliases",
        "imagePullSecrets": "imagePullSecrets",
        "topologySpreadConstraints": "topologySpreadConstraints",
        "priorityClassName": "priorityClassName",
        "serviceAccountName": "serviceAccount",
        "serviceAccount": "serviceAccount",
        "terminationGracePeriodSeconds": "terminationGracePeriodSeconds",
    }
    if field in direct:
        return f"{base}.{direct[field]}" + "".join(_suffix(rest))
    if field == "nodeSelector":
        if rest:
            return _key(f"{base}.nodeSelector", str(rest[0]))
        return _map_entry(f"{base}.nodeSelector", spec.node_selector, value)
    if field == "affinity":
        return _affinity(base, rest)
    if field == "securityContext":
        if (
            rest[:1] == ["fsGroup"]
            and spec.fs_group is not None
            and "fsGroup" not in (spec.security_context or {})
        ):
            return f"{base}.fsGroup"
        return f"{base}.securityContext" + "".join(_suffix(rest))
    if field == "volumes" and rest and isinstance(rest[0], int):
        volumes = pod.get("volumes") or []
        name = volumes[rest[0]]["name"] if rest[0] < len(volumes) else ""
        return _volume(dc, comp, spec, base, name, None)
    if field in ("containers", "initContainers") and rest and isinstance(rest[0], int):
        containers = pod.get(field) or []
        container = containers[rest[0]] if rest[0] < len(containers) else {}
        return _container(dc, comp, spec, base, container, rest[1:])
    return base


def _affinity(base: str, rest: list[Segment]) -> str:
    # The operator's own anti-affinity term (spread the component's pods) comes before the user's.
    anti = ["podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution"]
    if rest[:2] == anti and len(rest) > 2 and isinstance(rest[2], int):
        if rest[2] == 0:
            return f"{base}.affinity"
        rest = [*anti, rest[2] - 1, *rest[3:]]
    return f"{base}.affinity" + "".join(_suffix(rest))


def _container(
    dc: DorisCluster, comp: Component, spec: BaseSpec, base: str, container: Obj, rest: list[Segment]
) -> str:
    name = container.get("name")
    if name == "init":
        init = f"{base}.systemInitialization"
        if rest[:1] == ["image"]:
            return f"{init}.initImage"
        if rest[:1] == ["resources"] and len(rest) > 1:
            return init + "".join(_suffix(rest[1:]))
        if rest[:1] in (["command"], ["args"]):
            return init + "".join(_suffix(rest))
        return init
    if name == "default-init":
        return f"{base}.image" if rest[:1] == ["image"] else f"{base}.skipDefaultSystemInit"
    if name != comp:
        return f"{base}.podTemplate"
    head = rest[0] if rest else None
    if head == "image":
        return f"{base}.image"
    if head == "resources" and len(rest) > 1:
        return base + "".join(_suffix(rest[1:]))
    if head == "securityContext":
        return f"{base}.containerSecurityContext" + "".join(_suffix(rest[1:]))
    if head == "env" and len(rest) > 1 and isinstance(rest[1], int):
        env = container.get("env") or []
        var = env[rest[1]]["name"] if rest[1] < len(env) else None
        for i, user in enumerate(spec.env_vars or []):
            if user.name == var:
                return f"{base}.envVars[{i}]" + "".join(_suffix(rest[2:]))
        return f"{base}.envVars"
    if head == "volumeMounts" and len(rest) > 1 and isinstance(rest[1], int):
        mounts = container.get("volumeMounts") or []
        mount = mounts[rest[1]] if rest[1] < len(mounts) else {}
        return _volume(dc, comp, spec, base, mount.get("name", ""), rest[2] if len(rest) > 2 else None)
    if head == "readinessProbe":
        return f"{base}.readinessProbePolicy"
    if head == "livenessProbe":
        return f"{base}.liveTimeout"
    if head == "startupProbe":
        return f"{base}.startTimeout"
    if head == "ports":
        return _config_source(spec, base)
    return base


def _volume(
    dc: DorisCluster, comp: Component, spec: BaseSpec, base: str, name: str, mount_field: Segment | None
) -> str:
    """The DorisCluster entry a pod volume (or a mount of it) comes from."""
    suffix = ".mountPath" if mount_field == "mountPath" else ""
    for i, pv in enumerate(spec.persistent_volumes or []):
        if pv.name and name in (pv.name, volume_name(pv.name)):
            return f"{base}.persistentVolumes[{i}]{suffix}"
    info = spec.config_map_info
    if info is not None:
        if info.config_map_name and name == volume_name(info.config_map_name):
            return f"{base}.configMapInfo.configMapName"
        for i, cm in enumerate(info.config_maps or []):
            if cm.config_map_name and name == volume_name(cm.config_map_name):
                return f"{base}.configMapInfo.configMaps[{i}]{suffix}"
    for i, secret in enumerate(spec.secrets or []):
        if secret.secret_name and name == volume_name(secret.secret_name):
            return f"{base}.secrets[{i}]{suffix}"
    for i, shared in enumerate(dc.spec.shared_persistent_volume_claims or []):
        claim = shared.persistent_volume_claim_name
        if claim and name == volume_name(claim):
            return f"spec.sharedPersistentVolumeClaims[{i}]{suffix}"
    if name == "basic-auth":
        return "spec.authSecret" if dc.spec.auth_secret else "spec.adminUser"
    if name == "krb5":
        return "spec.kerberosInfo.krb5ConfigMap"
    if name == "keytab":
        return "spec.kerberosInfo.keytabSecretName"
    if spec.persistent_volumes:
        return f"{base}.persistentVolumes"
    return base
