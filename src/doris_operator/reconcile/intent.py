"""Intent that must survive an operator crash, kept as annotations on the objects it concerns.

* ``doris.apache.org/members`` on a BE/CN/FE StatefulSet: per ordinal, the pod IP last seen and the
  node (BackendId or FE Name, Host, port) it was matched to, and ``leaving`` once this operator sent
  DECOMMISSION (BE) or DROP OBSERVER (FE) for it.  Written *before* the statement.
* ``doris.apache.org/queries-disabled`` on a BE/CN pod: ``host:port`` of the BE on which this operator
  set disable_query before deleting the pod.  Written before the statement; removed once the BE is
  back, alive and taking queries.
* ``doris.apache.org/balance-paused`` on the BE StatefulSet: the FE configs this operator set to true
  for a rolling restart of PV-backed BEs (``disable_balance,disable_colocate_balance``).  Written
  before the statements; removed after they are set back to false.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..k8s import Kube

MEMBERS = "doris.apache.org/members"
QUERIES_DISABLED = "doris.apache.org/queries-disabled"
BALANCE_PAUSED = "doris.apache.org/balance-paused"
ALLOW_VERSION_SKIP = "doris.apache.org/allow-version-skip"
"""On the DorisCluster, set by the user: ``"true"`` lets an image skip a Doris minor version."""

Annotate = Callable[[str, str, dict[str, str | None]], Awaitable[None]]
"""(kind, name, {key: value or None to remove}) -> merge-patch the object's annotations."""


def annotations_of(obj: dict[str, Any] | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("annotations") or {})


def annotator(kube: Kube, namespace: str) -> Annotate:
    async def annotate(kind: str, name: str, values: dict[str, str | None]) -> None:
        await kube.annotate(kind, name, namespace, values)  # counted, and refused once leadership has lapsed

    return annotate
