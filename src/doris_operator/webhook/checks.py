"""DorisCluster admission checks that need more than the manifest: the ConfigMaps it names (the real
ports and data paths), the old object (what an update changes) and the pods that run.  Pure: the
facts come from :mod:`.live`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..api.doriscluster import COMPONENTS, DorisCluster
from ..api.validation import Problem
from ..builders.config import ConfigMaps, config_map_names, resolve
from ..builders.pod import data_volumes

Obj = dict[str, Any]
_VERSION = re.compile(r"(?<![0-9.])(\d+)\.(\d+)(?:\.(\d+))?")


def _known(comp: str, dc: DorisCluster, config_maps: ConfigMaps | None) -> bool:
    """Whether the component's conf file is known: no ConfigMap named, or every named one was read."""
    spec = dc.spec.component(comp)  # type: ignore[arg-type]
    if spec is None:
        return False
    return not config_map_names(spec) or (
        config_maps is not None and all(n in config_maps for n in config_map_names(spec))
    )


def service_port_warnings(dc: DorisCluster, config_maps: ConfigMaps | None) -> Iterator[str]:
    """A servicePorts entry whose targetPort is no port of the component is ignored, as the official
    operator ignores it (its Helm chart's own NodePort example has one); say so."""
    for comp, spec in dc.components():
        svc = spec.service
        if svc is None or not svc.service_ports or comp == "broker" or not _known(comp, dc, config_maps):
            continue
        ports = resolve(comp, spec, config_maps or {}).ports()
        numbers = {p.number for p in ports}
        for i, entry in enumerate(svc.service_ports):
            if entry.target_port and entry.target_port not in numbers:
                listed = ", ".join(f"{p.number} ({p.key})" for p in ports)
                yield (
                    f"spec.{comp}Spec.service.servicePorts[{i}].targetPort: {entry.target_port} is not a "
                    f"port of {comp.upper()} ({listed}): the entry is ignored, as the official operator "
                    "ignores it"
                )


def storage_warnings(dc: DorisCluster, config_maps: ConfigMaps | None) -> Iterator[str]:
    """FE metadata and BE tablets on an emptyDir (or the container's own filesystem) are lost when the
    pod is replaced."""
    shared = {s.mount_path for s in dc.spec.shared_persistent_volume_claims or [] if s.mount_path}
    for comp, spec in dc.components():
        if comp not in ("fe", "be") or not _known(comp, dc, config_maps):
            continue
        config = resolve(comp, spec, config_maps or {})
        what = "metadata (meta_dir)" if comp == "fe" else "tablets (storage_root_path)"
        claimed = {path for _, path, claim in data_volumes(spec, comp, config) if claim is not None} | shared
        lost = [p for p in config.data_paths() if p not in claimed]
        if not lost:
            continue
        where = "an emptyDir" if not spec.persistent_volumes else "the container's filesystem"
        yield (
            f"spec.{comp}Spec.persistentVolumes: no persistent volume holds {', '.join(lost)}: the "
            f"{comp.upper()} {what} is on {where} and is lost when the pod restarts or moves; add a "
            "persistentVolumes entry"
        )


def doris_version(image: str) -> tuple[int, int, int] | None:
    """``apache/doris:fe-2.1.7`` -> (2, 1, 7): the version in the image tag, if it has one."""
    tag = image.rsplit("@", 1)[0]
    tag = tag.rsplit(":", 1)[1] if ":" in tag.rsplit("/", 1)[-1] else ""
    match = _VERSION.search(tag)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def version_warnings(old: Obj, new: Obj) -> Iterator[str]:
    """Doris upgrades one minor version at a time (3.0 -> 3.1 -> 3.2); patch releases may be skipped."""
    for comp in COMPONENTS:
        before = ((old.get("spec") or {}).get(f"{comp}Spec") or {}).get("image")
        after = ((new.get("spec") or {}).get(f"{comp}Spec") or {}).get("image")
        if not isinstance(before, str) or not isinstance(after, str) or before == after:
            continue
        was, now = doris_version(before), doris_version(after)
        if was is None or now is None:
            continue
        skipped: list[str] = []
        if now[0] == was[0] and now[1] > was[1] + 1:
            skipped = [f"{was[0]}.{m}" for m in range(was[1] + 1, now[1])]
        elif now[0] > was[0] and now[1] > 0:
            skipped = [f"{now[0]}.{m}" for m in range(0, now[1])]
        if now[:2] < was[:2]:
            yield (
                f"spec.{comp}Spec.image: {before} -> {after} goes back from Doris {was[0]}.{was[1]} to "
                f"{now[0]}.{now[1]}: Doris does not support downgrades of its metadata"
            )
        elif skipped:
            steps = " -> ".join([f"{was[0]}.{was[1]}", *skipped, f"{now[0]}.{now[1]}"])
            yield (
                f"spec.{comp}Spec.image: {before} -> {after} skips Doris {', '.join(skipped)}: upgrade one "
                f"minor version at a time ({steps})"
            )


def removal_problems(running: dict[str, list[str]]) -> Iterator[Problem]:
    for comp, pods in sorted(running.items()):
        shown = ", ".join(pods[:5]) + (f" and {len(pods) - 5} more" if len(pods) > 5 else "")
        yield Problem(
            f"spec.{comp}Spec",
            f"can't remove {comp.upper()} while its pods run ({shown}): they hold data or are registered in "
            f"Doris; set spec.{comp}Spec.replicas to 0 first, then remove it once they are gone",
        )
