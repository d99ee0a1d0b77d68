"""Drain-safe evictions: a validating webhook on ``pods/eviction`` (what ``kubectl drain`` and the cluster
autoscaler create) for the pods of a DorisCluster.

* BE and CN: the first eviction sets ``disable_query`` on that BE through the FE, marks the pod
  (``doris.apache.org/drain-started-at`` and ``-drain-backend``, so the intent survives an operator
  crash), and is refused with 429 and ``Retry-After``, which eviction clients retry.  Later evictions are
  refused while ``information_schema.backend_active_tasks`` lists tasks on that BE, and allowed once it
  lists none, or once ``spec.drain.timeoutSeconds`` (default 600) have passed since the first.  The BE
  takes queries again when its pod is back: the image's entrypoint re-enables it when it restarts, and the
  operator re-enables a pod whose drain was abandoned.
* FE: an eviction that would leave fewer alive followers than a quorum (by SHOW FRONTENDS) is refused,
  whatever the PodDisruptionBudget allows.

The webhook fails open: its configuration has ``failurePolicy: Ignore``, and when Doris can't be asked the
eviction is allowed with a warning.  A drain never wedges on a dead webhook; the PodDisruptionBudget
still applies then."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Pod

from ..access import credentials_refused
from ..api.doriscluster import Component, DorisCluster
from ..api.lenient import parse_stored_cluster
from ..api.validation import InvalidResource
from ..builders import names
from ..builders.config import config_map_names
from ..builders.config import resolve as resolve_config
from ..doris.client import Backend, Credentials, DorisError, Timeouts
from ..k8s import DorisClusterResource, Kube
from ..reconcile.failover import TIME_FORMAT, _time
from ..reconcile.faults import drain_timeout
from ..reconcile.members import FeAccess, MemberView, fe_candidates, host_matches, pod_hosts, read_members
from ..reconcile.membership import credentials
from ..reconcile.podops import patch_pod_annotations
from .admission import Request

log = logging.getLogger(__name__)
Obj = dict[str, Any]
RETRY_AFTER_SECONDS = 5
DEADLINE_SECONDS = 8.0
"""The webhook's own budget; its configuration's timeoutSeconds is 10."""
PATH = "/validate-eviction"
WEBHOOK_NAME = "evictions.pods.doris.apache.org"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str = ""
    warning: str = ""


def _review(uid: str, decision: Decision, pod: str) -> Obj:
    response: Obj = {"uid": uid, "allowed": decision.allowed}
    if not decision.allowed:
        response["status"] = {
            "status": "Failure",
            "code": 429,
            "reason": "TooManyRequests",
            "message": decision.message,
            "details": {"name": pod, "kind": "pods", "retryAfterSeconds": RETRY_AFTER_SECONDS},
        }
    if decision.warning:
        response["warnings"] = [decision.warning]
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def quorum_decision(view: MemberView, hosts: list[str], pod: str) -> Decision:
    """An FE may go only if the alive followers left are still a majority of the followers."""
    assert view.frontends is not None
    followers = [f for f in view.frontends if f.role.upper() == "FOLLOWER"]
    me = next((f for f in view.frontends if host_matches(f.host, hosts)), None)
    if me is None or me.role.upper() != "FOLLOWER" or not me.alive:
        return Decision(True)
    left = sum(1 for f in followers if f.alive and f is not me)
    quorum = len(followers) // 2 + 1
    if left < quorum:
        return Decision(
            False,
            f"evicting FE {pod} would leave {left} alive followers of {len(followers)}, fewer than the "
            f"quorum of {quorum}: bring the other followers back first",
        )
    return Decision(True)


def running_tasks(columns: list[str], rows: list[tuple[Any, ...]], backend_id: int) -> int:
    """Tasks of ``backend_id`` in information_schema.backend_active_tasks (BE_ID column)."""
    index = columns.index("BE_ID")
    return sum(1 for row in rows if str(row[index]) == str(backend_id))


def _count_tasks(fe_access: FeAccess, fe: tuple[str, int], creds: Credentials, backend_id: int) -> int:
    with fe_access.connect(fe[0], fe[1], creds, Timeouts(3, 5, 5)) as client:
        columns, rows = client.query("SELECT BE_ID, QUERY_ID FROM information_schema.backend_active_tasks")
    return running_tasks(columns, rows, backend_id)


def _disable(fe_access: FeAccess, fe: tuple[str, int], creds: Credentials, be: Backend) -> None:
    with fe_access.connect(fe[0], fe[1], creds, Timeouts(3, 5, 5)) as client:
        client.modify_backend(be.host, be.heartbeat_port, disable_query=True)


class EvictionGuard:
    """Decides evictions.  ``client`` needs get on pods and dorisclusters, patch on pods, get on the
    ConfigMaps and Secrets a DorisCluster names.  The fe-address annotation is honoured only with
    ``allow_fe_address_annotation`` (as the operator's ``--allow-fe-address-annotation``)."""

    def __init__(
        self,
        client: AsyncClient,
        allow_fe_address_annotation: bool = False,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.kube = Kube(client)
        self.allow_fe_address_annotation = allow_fe_address_annotation
        self.now = now or (lambda: dt.datetime.now(dt.UTC))

    async def review(self, body: Mapping[str, Any]) -> Obj:
        req = Request.from_review(body)
        pod = req.name or ""
        try:
            decision = await asyncio.wait_for(self.decide(req), DEADLINE_SECONDS)
        except TimeoutError:
            decision = Decision(
                True, warning=f"doris-operator could not check {pod} in time: eviction allowed"
            )
        except Exception:  # fail open, like failurePolicy Ignore
            log.exception("eviction of %s/%s: check failed; allowing it", req.namespace, pod)
            decision = Decision(True, warning=f"doris-operator could not check {pod}: eviction allowed")
        if not decision.allowed:
            log.info("eviction of %s/%s refused: %s", req.namespace, pod, decision.message)
        return _review(req.uid, decision, pod)

    async def decide(self, req: Request) -> Decision:
        if req.operation != "CREATE" or req.sub_resource != "eviction" or not req.name or not req.namespace:
            return Decision(True)
        try:
            pod = (await self.kube.client.get(Pod, req.name, namespace=req.namespace)).to_dict()
        except ApiError:
            return Decision(True)  # gone, or not ours to read
        labels = (pod.get("metadata") or {}).get("labels") or {}
        cluster, comp = labels.get(names.LABEL_CLUSTER), labels.get(names.LABEL_COMPONENT)
        if (
            not cluster
            or comp not in ("fe", "be", "cn")
            or labels.get(names.LABEL_OWNER) != f"{cluster}-{comp}"
        ):
            return Decision(True)
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            return Decision(True)
        dc = await self._cluster(cluster, req.namespace)
        if dc is None:
            return Decision(True)
        fe_access = await self._fe_access(dc)

        async def creds() -> Credentials:
            return await credentials(dc, lambda name: self.kube.secret_data(name, dc.namespace))

        refused = credentials_refused(dc, self.kube.secret_refused)
        view = await read_members(dc, fe_access, creds, refused=refused)
        trimmed = {"metadata": {"name": req.name}, "podIP": (pod.get("status") or {}).get("podIP")}
        hosts = pod_hosts(dc, comp, trimmed)
        if not view.known:
            return Decision(True, warning=f"no FE of {cluster} answered ({view.error}): eviction allowed")
        if comp == "fe":
            return quorum_decision(view, hosts, req.name)
        if dc.spec.drain is not None and dc.spec.drain.enabled is False:
            return Decision(True)
        be = next((b for b in view.backends or [] if host_matches(b.host, hosts)), None)
        if be is None or not be.alive:
            return Decision(True)  # not registered, or dead: nothing runs there
        return await self._drain(dc, comp, pod, be, fe_access, await creds(), req.dry_run)

    async def _drain(
        self,
        dc: DorisCluster,
        comp: Component,
        pod: Obj,
        be: Backend,
        fe_access: FeAccess,
        creds: Credentials,
        dry_run: bool,
    ) -> Decision:
        name = pod["metadata"]["name"]
        if dry_run:  # no side effects on a dry run (sideEffects: NoneOnDryRun)
            return Decision(True, warning=f"{name}: a real eviction waits for its running queries first")
        annotations = pod["metadata"].get("annotations") or {}
        started = _time(annotations.get(names.DRAIN_STARTED))
        now = self.now()
        timeout = drain_timeout(dc)
        if started is not None and (now - started).total_seconds() >= timeout:
            return Decision(True, warning=f"{name}: drain timeout ({timeout:.0f}s) passed: eviction allowed")
        fes = fe_candidates(dc, fe_access)
        if started is None:  # the drain starts now: the timeout counts from here, whatever happens next
            await patch_pod_annotations(
                self.kube,
                name,
                dc.namespace,
                {
                    names.DRAIN_STARTED: now.strftime(TIME_FORMAT),
                    names.DRAIN_BACKEND: f"{be.host}:{be.heartbeat_port}",
                },
            )
            started = now
            await self.kube.event(
                {"metadata": {"name": dc.name, "namespace": dc.namespace, "uid": dc.metadata.uid}},
                "Normal",
                "Draining",
                f"eviction of {name}: queries to its {comp.upper()} are disabled; it goes once its "
                f"running queries end (at the latest in {timeout:.0f}s)",
            )
        if not be.query_disabled:
            try:
                await self._first_that_answers(fes, lambda fe: _disable(fe_access, fe, creds, be))
            except (DorisError, OSError) as err:
                # an FE answered but could not take it (no master right now): retry, bounded by the timeout
                return Decision(
                    False,
                    f"{comp.upper()} {name}: can't disable its queries yet ({err}); retrying until the drain "
                    f"timeout ({timeout:.0f}s)",
                )
        try:
            tasks = await self._first_that_answers(
                fes, lambda fe: _count_tasks(fe_access, fe, creds, be.backend_id)
            )
        except (DorisError, OSError, ValueError) as err:
            return Decision(
                False,
                f"{comp.upper()} {name}: queries are disabled; can't read its running queries ({err}): "
                f"waiting for them until the drain timeout ({timeout:.0f}s)",
            )
        if tasks:
            return Decision(
                False,
                f"{comp.upper()} {name} is draining: queries are disabled and {tasks} tasks still run on it "
                f"(evicted at the latest {timeout:.0f}s after the first attempt)",
            )
        return Decision(True)

    @staticmethod
    async def _first_that_answers(fes: list[tuple[str, int]], call: Callable[[tuple[str, int]], Any]) -> Any:
        error: Exception = OSError("no FE address")
        for fe in fes:
            try:
                return await asyncio.to_thread(call, fe)
            except (DorisError, OSError) as err:
                error = err
        raise error

    async def _cluster(self, name: str, namespace: str) -> DorisCluster | None:
        try:
            obj = await self.kube.client.get(DorisClusterResource, name, namespace=namespace)
        except ApiError:
            return None
        body: Obj = obj.to_dict()  # type: ignore[no-untyped-call]
        try:
            return parse_stored_cluster(
                {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
            )
        except InvalidResource:
            return None

    async def _fe_access(self, dc: DorisCluster) -> FeAccess:
        config_maps: dict[str, dict[str, str]] = {}
        spec = dc.spec.fe_spec
        for cm in config_map_names(spec) if spec is not None else []:
            data = await self.kube.config_map(cm, dc.namespace)
            if data is not None:
                config_maps[cm] = data
        config = resolve_config("fe", spec, config_maps)
        return FeAccess(
            config.port("query_port"), self.allow_fe_address_annotation, config.flag("enable_ssl")
        )
