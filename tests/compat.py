"""The official operator's manifests in /work/shared/compat (its doc/examples, its Helm chart rendered
under several value sets, its CRD), and what "rendered with its fields honoured" means for them."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from doris_operator.builders.config import CONFIG_MOUNT_PATH
from doris_operator.builders.pod import volume_name

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [os.environ.get("DORIS_OPERATOR_COMPAT"), ROOT.parent / "shared/compat", "/work/shared/compat"]
COMPAT = next((Path(p) for p in _CANDIDATES if p and Path(p).is_dir()), Path("/work/shared/compat"))
OFFICIAL_CRD = COMPAT / "official-crd-doris.selectdb.com_dorisclusters.yaml"
Obj = dict[str, Any]


@dataclass
class Sample:
    id: str
    manifest: Obj
    """The DorisCluster, renamed to the sample id (helm ones are all doriscluster-helm), no namespace."""
    objects: list[Obj] = field(default_factory=list)
    """ConfigMaps and Secrets that come with it (rendered by the chart, or the conf files of examples/)."""

    def config_maps(self) -> dict[str, dict[str, str]]:
        return {
            o["metadata"]["name"]: dict(o.get("data") or {}) for o in self.objects if o["kind"] == "ConfigMap"
        }


def _config_map(name: str, key: str, path: Path) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {key: path.read_text()},
    }


def samples() -> list[Sample]:
    out: list[Sample] = []
    examples = COMPAT / "examples"
    # The examples' comments say: kubectl create configmap fe-configmap --from-file=fe.conf (and so on).
    conf = [
        _config_map("fe-configmap", "fe.conf", examples / "fe.conf"),
        _config_map("be-configmap", "be.conf", examples / "be.conf"),
        _config_map("cn-configmap", "be.conf", examples / "be.conf"),
        _config_map("broker-configmap", "apache_hdfs_broker.conf", examples / "apache_hdfs_broker.conf"),
    ]
    for path in sorted(examples.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        out.append(
            _sample(f"ex-{path.stem.removeprefix('doriscluster-sample').strip('-') or 'sample'}", docs, conf)
        )
    for path in sorted((COMPAT / "helm-rendered").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        out.append(_sample(f"helm-{path.stem}", docs, []))
    return out


def _sample(sample_id: str, docs: list[Obj], extra: list[Obj]) -> Sample:
    (manifest,) = [copy.deepcopy(d) for d in docs if d.get("kind") == "DorisCluster"]
    manifest["metadata"]["name"] = sample_id
    manifest["metadata"].pop("namespace", None)
    objects = [copy.deepcopy(d) for d in docs if d.get("kind") in ("ConfigMap", "Secret")]
    names = {o["metadata"]["name"] for o in objects}
    wanted = _config_map_names(manifest)
    objects += [copy.deepcopy(o) for o in extra if o["metadata"]["name"] in wanted - names]
    for o in objects:
        o["metadata"].pop("namespace", None)
    return Sample(sample_id, manifest, objects)


def _config_map_names(manifest: Obj) -> set[str]:
    out: set[str] = set()
    for comp in ("fe", "be", "cn", "broker"):
        info = (manifest["spec"].get(f"{comp}Spec") or {}).get("configMapInfo") or {}
        if info.get("configMapName"):
            out.add(info["configMapName"])
        out |= {c["configMapName"] for c in info.get("configMaps") or [] if c.get("configMapName")}
    return out


# ---- fields honoured ------------------------------------------------------------------------------------


def _by(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert found, f"no {kind} {name} among {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return found[0]


def _subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return (
            isinstance(big, list)
            and len(small) <= len(big)
            and all(_subset(s, b) for s, b in zip(small, big, strict=False))
        )
    return bool(small == big or str(small) == str(big))


def assert_honoured(manifest: Obj, objects: list[Obj], ports: dict[str, set[int]]) -> list[str]:
    """Every field the sample sets shows in the objects built from it; returns the fields checked.
    ``ports``: component -> its container ports (to know which servicePorts entries apply)."""
    name = manifest["metadata"]["name"]
    spec = manifest["spec"]
    checked: list[str] = []

    def check(path: str, ok: bool) -> None:
        assert ok, f"{name}: {path} is not honoured"
        checked.append(path)

    if spec.get("adminUser"):
        secret = _by(objects, "Secret", f"{name}-admin-user")
        check("adminUser", secret["type"] == "kubernetes.io/basic-auth")
    for comp in ("fe", "be", "cn", "broker"):
        c = spec.get(f"{comp}Spec")
        if c is None:
            continue
        base = f"{comp}Spec"
        sts = _by(objects, "StatefulSet", f"{name}-{comp}")
        pod = sts["spec"]["template"]["spec"]
        main = next(x for x in pod["containers"] if x["name"] == comp)
        init = {x["name"]: x for x in pod.get("initContainers") or []}
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        check(f"{base}.image", main["image"] == c["image"])
        if "replicas" in c and not c.get("autoScalingPolicy"):
            check(f"{base}.replicas", sts["spec"]["replicas"] == c["replicas"])
        for key in ("requests", "limits"):
            if c.get(key):
                check(f"{base}.{key}", _subset(c[key], main["resources"][key]))
        if c.get("electionNumber"):
            env = {e["name"]: e.get("value") for e in main["env"]}
            check(f"{base}.electionNumber", env["ELECT_NUMBER"] == str(c["electionNumber"]))
        svc = c.get("service") or {}
        if svc and comp != "broker":
            access = _by(objects, "Service", f"{name}-{comp}-service")["spec"]
            check(f"{base}.service.type", access["type"] == svc.get("type", "ClusterIP"))
            if svc.get("loadBalancerIP"):
                check(f"{base}.service.loadBalancerIP", access["loadBalancerIP"] == svc["loadBalancerIP"])
            if svc.get("annotations"):
                meta = _by(objects, "Service", f"{name}-{comp}-service")["metadata"]
                check(f"{base}.service.annotations", _subset(svc["annotations"], meta["annotations"]))
            pinned = {p["targetPort"]: p.get("nodePort") for p in access["ports"]}
            for i, entry in enumerate(svc.get("servicePorts") or []):
                if entry["targetPort"] in ports[comp]:
                    check(
                        f"{base}.service.servicePorts[{i}]", pinned[entry["targetPort"]] == entry["nodePort"]
                    )
                else:  # ignored, as the official operator ignores it
                    check(
                        f"{base}.service.servicePorts[{i}] (ignored)",
                        entry["nodePort"] not in pinned.values(),
                    )
        info = c.get("configMapInfo") or {}
        if info.get("configMapName"):
            vname = volume_name(info["configMapName"])
            check(
                f"{base}.configMapInfo.configMapName",
                volumes[vname]["configMap"]["name"] == info["configMapName"]
                and mounts[CONFIG_MOUNT_PATH] == vname,
            )
        for i, cm in enumerate(info.get("configMaps") or []):
            vname = volume_name(cm["configMapName"])
            check(f"{base}.configMapInfo.configMaps[{i}]", mounts[cm["mountPath"]] == vname)
        for i, secret in enumerate(c.get("secrets") or []):
            vname = volume_name(secret["secretName"])
            check(
                f"{base}.secrets[{i}]",
                volumes[vname]["secret"]["secretName"] == secret["secretName"]
                and mounts[secret.get("mountPath", CONFIG_MOUNT_PATH)] == vname,
            )
        claims = {t["metadata"]["name"]: t for t in sts["spec"].get("volumeClaimTemplates") or []}
        for i, pv in enumerate(c.get("persistentVolumes") or []):
            template = claims[pv["name"]]
            check(
                f"{base}.persistentVolumes[{i}]",
                _subset(pv["persistentVolumeClaimSpec"], template["spec"])
                and mounts[pv["mountPath"]] == pv["name"],
            )
        if c.get("systemInitialization"):
            si = c["systemInitialization"]
            container = init["init"]
            ok = all(container.get(k) == si[k] for k in ("command", "args") if k in si)
            if si.get("initImage") and comp in ("fe", "broker"):
                ok = ok and container["image"] == si["initImage"]
            check(f"{base}.systemInitialization", ok and container["securityContext"]["privileged"] is True)
        if c.get("affinity"):
            check(f"{base}.affinity", _subset(c["affinity"], pod["affinity"]))
        if c.get("nodeSelector"):
            check(f"{base}.nodeSelector", pod["nodeSelector"] == c["nodeSelector"])
        if c.get("tolerations"):
            check(f"{base}.tolerations", pod["tolerations"] == c["tolerations"])
        if c.get("hostAliases"):
            check(f"{base}.hostAliases", pod["hostAliases"] == c["hostAliases"])
        if c.get("imagePullSecrets"):
            check(f"{base}.imagePullSecrets", pod["imagePullSecrets"] == c["imagePullSecrets"])
        if c.get("serviceAccount"):
            check(f"{base}.serviceAccount", pod["serviceAccountName"] == c["serviceAccount"])
        if c.get("podLabels"):
            check(f"{base}.podLabels", _subset(c["podLabels"], sts["spec"]["template"]["metadata"]["labels"]))
        if c.get("annotations"):
            check(
                f"{base}.annotations",
                _subset(c["annotations"], sts["spec"]["template"]["metadata"]["annotations"]),
            )
        for i, var in enumerate(c.get("envVars") or []):
            check(f"{base}.envVars[{i}]", var in main["env"])
    return checked
