"""The readiness gate ``doris.apache.org/member-alive``: a pod is Ready only while Doris can use its
member.  FE and Broker: ``Alive``.  BE and CN: ``Alive``, not decommissioning and not query-disabled.

Set from Doris's own view (:mod:`.members`), never guessed: when no FE answers, every condition stays as it
is (unknown is not dead).  A member Doris does not list is not usable: False.  A pod just created has no
condition, which the kubelet counts as False, so nothing routes to it before Doris sees it alive."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..api.doriscluster import COMPONENTS, Component, DorisCluster
from ..builders import names
from ..doris.client import Backend, Broker, Frontend
from .members import MemberView, pod_hosts
from .observed import Obj


@dataclass(frozen=True)
class GateChange:
    pod: str
    status: str  # "True" | "False"
    reason: str
    message: str

    def condition(self, now: dt.datetime) -> Obj:
        return {
            "type": names.MEMBER_ALIVE,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def _verdict(comp: Component, row: Frontend | Backend | Broker | None) -> tuple[str, str, str]:
    if row is None:
        return "False", "NotRegistered", "Doris does not list this member"
    if not row.alive:
        return "False", "NotAlive", f"Doris reports it dead: {row.err_msg or 'no heartbeat'}"
    if isinstance(row, Backend):
        if row.system_decommissioned:
            return "False", "Decommissioning", "Doris is moving its tablets away (DECOMMISSION)"
        if row.query_disabled:
            return "False", "QueryDisabled", "Doris sends it no queries (disable_query)"
    return "True", "Alive", f"Doris reports the {comp.upper()} alive"


def plan_gates(dc: DorisCluster, pods: list[Obj], view: MemberView) -> list[GateChange]:
    """The conditions to write: only where Doris's view differs from the pod's current one."""
    if not view.known:
        return []
    changes: list[GateChange] = []
    for pod in pods:
        comp = pod["metadata"]["labels"].get(names.LABEL_COMPONENT)
        if comp not in COMPONENTS or not pod.get("gated") or pod["metadata"].get("deletionTimestamp"):
            continue
        if comp == "broker" and view.brokers is None:
            continue
        status, reason, message = _verdict(comp, view.row(comp, pod_hosts(dc, comp, pod)))
        current = pod.get("memberAlive")
        if current == status or (current is None and status == "False" and reason == "NotRegistered"):
            continue  # no condition reads as False already: a starting pod needs no write
        changes.append(GateChange(pod["metadata"]["name"], status, reason, message))
    return changes
