"""What a DorisCluster may make privileged.

The operator itself adds exactly what the official operator's contract needs: the ``default-init``
container of BE and CN (``sysctl vm.max_map_count`` and ``swapoff``, unless ``skipDefaultSystemInit``), the
``init`` container of ``systemInitialization`` and the privileged BE container of ``enableWorkloadGroup``.
The last two run what the user chose with full access to the node, so admission warns about them.

A ``podTemplate`` overlay is merged into the pod the operator builds; by default it may not add
privileged containers, host namespaces or hostPath volumes (an operator and webhook flag,
``--allow-privileged-pod-templates``, and the chart value ``podSecurity.allowPrivilegedPodTemplates``,
lift that).  The webhook refuses such an overlay; the controller, which may see objects the webhook
never saw, refuses to apply the component and reports it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .doriscluster import BeSpec, DorisCluster
from .validation import Problem


@dataclass
class Policy:
    allow_privileged: bool = False
    """Let podTemplate overlays add privileged containers, host namespaces and hostPath volumes."""


POLICY = Policy()
"""This process's policy (set once from the command line)."""

HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")


def _containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in ("containers", "initContainers", "ephemeralContainers"):
        items = pod.get(key)
        if isinstance(items, list):
            for index, container in enumerate(items):
                if isinstance(container, dict):
                    yield f"{key}[{index}]", container


def overlay_problems(dc: DorisCluster, policy: Policy | None = None) -> list[Problem]:
    """The podTemplate settings the policy refuses, one Problem each, naming the field."""
    policy = policy or POLICY
    if policy.allow_privileged:
        return []
    problems: list[Problem] = []
    why = "not allowed in podTemplate (the operator runs with --allow-privileged-pod-templates off)"
    for comp, spec in dc.components():
        overlay = spec.pod_template
        pod = overlay.get("spec") if isinstance(overlay, dict) else None
        if not isinstance(pod, dict):
            continue
        base = f"spec.{comp}Spec.podTemplate.spec"
        for key in HOST_NAMESPACES:
            if pod.get(key) is True:
                problems.append(Problem(f"{base}.{key}", f"{key}: true is {why}"))
        for path, container in _containers(pod):
            security = container.get("securityContext")
            if not isinstance(security, dict):
                continue
            if security.get("privileged") is True:
                problems.append(Problem(f"{base}.{path}.securityContext.privileged", f"privileged is {why}"))
            if security.get("allowPrivilegeEscalation") is True:
                problems.append(
                    Problem(
                        f"{base}.{path}.securityContext.allowPrivilegeEscalation",
                        f"allowPrivilegeEscalation is {why}",
                    )
                )
            capabilities = security.get("capabilities")
            added = capabilities.get("add") if isinstance(capabilities, dict) else None
            if isinstance(added, list) and added:
                problems.append(
                    Problem(
                        f"{base}.{path}.securityContext.capabilities.add", f"adding capabilities is {why}"
                    )
                )
        volumes = pod.get("volumes")
        if isinstance(volumes, list):
            for index, volume in enumerate(volumes):
                if isinstance(volume, dict) and "hostPath" in volume:
                    problems.append(
                        Problem(f"{base}.volumes[{index}].hostPath", f"hostPath volumes are {why}")
                    )
    return problems


def privileged_warnings(dc: DorisCluster) -> list[str]:
    """Admission warnings for what the contract makes privileged with the user's own choices."""
    out: list[str] = []
    for comp, spec in dc.components():
        if spec.system_initialization is not None:
            out.append(
                f"spec.{comp}Spec.systemInitialization: its init container runs privileged (full access to "
                "the node), as in the official operator; prefer node-level tuning where you can"
            )
        if isinstance(spec, BeSpec) and spec.enable_workload_group:
            out.append(
                f"spec.{comp}Spec.enableWorkloadGroup: the BE container runs privileged (cgroup access), as "
                "in the official operator"
            )
    return out
