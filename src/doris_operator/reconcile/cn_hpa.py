"""CN replicas under the official operator's HorizontalPodAutoscaler (``cnSpec.autoScalingPolicy``).

The HPA (kube-controller-manager) sets the CN StatefulSet's replicas through its scale subresource. The
operator must not fight it: once another field manager owns ``spec.replicas``, the operator's apply
leaves the field out (server-side apply then keeps the HPA's value); until then it applies the replicas
the StatefulSet has, so it never moves them either way. A new StatefulSet starts at ``cnSpec.replicas``
within the policy's range.
"""

from __future__ import annotations

from ..api.doriscluster import DorisCluster
from ..builders import names
from ..k8s import FIELD_MANAGER
from .observed import Obj


def hpa_owns_cn(dc: DorisCluster) -> bool:
    cn = dc.spec.cn_spec
    return cn is not None and cn.auto_scaling_policy is not None and bool(cn.auto_scaling_policy.max_replicas)


def hand_over_replicas(dc: DorisCluster, desired: list[Obj], observed: dict[tuple[str, str], Obj]) -> None:
    """Edit the desired CN StatefulSet in place (call before membership: it then sees no change)."""
    if not hpa_owns_cn(dc):
        return
    name = names.statefulset(dc.name, "cn")
    live = observed.get(("StatefulSet", name))
    obj = next((o for o in desired if o["kind"] == "StatefulSet" and o["metadata"]["name"] == name), None)
    if live is None or obj is None:
        return
    managers = live["spec"].get("replicasManagers") or []
    if any(m != FIELD_MANAGER for m in managers):
        obj["spec"].pop("replicas", None)
    elif live["spec"].get("replicas") is not None:
        obj["spec"]["replicas"] = int(live["spec"]["replicas"])
