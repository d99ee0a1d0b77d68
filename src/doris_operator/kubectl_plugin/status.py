"""``kubectl doris status``: the DorisCluster, its pods and what the FE says about its members."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from .common import (
    Kube,
    PluginError,
    credentials,
    fe_address,
    parse_resolve,
    resolve,
)
from .error_url import node_addresses


def _components(dc: dict[str, Any]) -> list[str]:
    spec = dc.get("spec") or {}
    return [c for c in ("fe", "be", "cn", "broker") if spec.get(f"{c}Spec") is not None]


def members(
    kube: Kube, dc: dict[str, Any], namespace: str, table: dict[tuple[str, int], tuple[str, int]]
) -> dict[str, Any]:
    from ..doris.client import Credentials, DorisClient, DorisError, Timeouts

    host, port, _ = fe_address(dc, namespace)
    addr, aport = resolve(host, port, table)
    user, password = credentials(kube, dc, namespace)
    try:
        with DorisClient.connect(addr, aport, Credentials(user, password), Timeouts(3, 10, 10)) as client:
            fes = client.show_frontends()
            bes = client.show_backends()
    except DorisError as err:
        return {"fe": None, "be": None, "error": f"FE {host}:{port} not reachable: {err.detail}"}
    return {
        "fe": [
            {"host": f.host, "role": f.role, "master": f.is_master, "alive": f.alive, "version": f.version}
            for f in fes
        ],
        "be": [
            {
                "host": b.host,
                "alive": b.alive,
                "tablets": b.tablet_num,
                "decommissioned": b.system_decommissioned,
                "queryDisabled": b.query_disabled,
                "computeNode": b.is_compute_node,
            }
            for b in bes
        ],
        "error": None,
    }


def cluster_status(
    kube: Kube, dc: dict[str, Any], table: dict[tuple[str, int], tuple[str, int]], with_members: bool
) -> dict[str, Any]:
    meta = dc["metadata"]
    namespace = meta.get("namespace") or kube.ns
    st = dc.get("status") or {}
    comps: dict[str, Any] = {}
    for comp in _components(dc):
        cs = st.get(f"{comp}Status") or {}
        comps[comp] = {
            "desired": cs.get("replicas", (dc["spec"][f"{comp}Spec"] or {}).get("replicas")),
            "ready": cs.get("readyReplicas"),
            "phase": (cs.get("componentCondition") or {}).get("phase"),
            "running": cs.get("runningInstances") or [],
            "creating": cs.get("creatingInstances") or [],
            "failed": cs.get("failedInstances") or [],
            "conditions": cs.get("conditions") or [],
            "decommissioning": cs.get("decommissioning") or {},
            "access": cs.get("access"),
        }
    out: dict[str, Any] = {
        "name": meta["name"],
        "namespace": namespace,
        "phase": st.get("phase"),
        "generation": meta.get("generation"),
        "observedGeneration": st.get("observedGeneration"),
        "paused": ((meta.get("annotations") or {}).get("doris.apache.org/paused") == "true"),
        "conditions": st.get("conditions") or [],
        "components": comps,
    }
    if any((c["access"] or {}).get("type") in ("NodePort", "LoadBalancer") for c in comps.values()):
        with contextlib.suppress(PluginError):  # listing nodes may be forbidden
            out["nodeAddresses"] = node_addresses(kube.list("node"))
    if with_members:
        out["members"] = members(kube, dc, namespace, table)
    out["initializers"] = initializers(kube, meta["name"], namespace)
    with contextlib.suppress(PluginError):  # no DorisMonitor CRD, or listing it is forbidden
        out["monitors"] = [
            monitor_status(m)
            for m in kube.list("dmon", namespace)
            if (m.get("spec") or {}).get("cluster") == meta["name"]
        ]
    return out


def monitor_status(dm: dict[str, Any]) -> dict[str, Any]:
    """A DorisMonitor of the cluster: mode, phase, parts and URLs (from its status)."""
    st = dm.get("status") or {}
    parts = st.get("parts") or {}
    return {
        "name": dm["metadata"]["name"],
        "mode": (dm.get("spec") or {}).get("mode") or "prometheusOperator",
        "phase": st.get("phase"),
        "parts": {k: bool(v.get("ready")) for k, v in parts.items()},
        "problems": [f"{k}: {v.get('message')}" for k, v in sorted(parts.items()) if not v.get("ready")],
        "prometheusURL": st.get("prometheusURL"),
        "grafanaURL": st.get("grafanaURL"),
    }


def initializers(kube: Kube, cluster: str, namespace: str) -> list[dict[str, Any]]:
    """The DorisInitializers of the cluster with their steps (none when the CRD is not installed or
    listing them is forbidden)."""
    try:
        found = kube.list("dinit", namespace)
    except PluginError:
        return []
    out = []
    for obj in found:
        if (obj.get("spec") or {}).get("cluster") != cluster:
            continue
        st = obj.get("status") or {}
        out.append(
            {
                "name": obj["metadata"]["name"],
                "phase": st.get("phase"),
                "applied": st.get("applied"),
                "conditions": st.get("conditions") or [],
                "steps": [
                    {k: s.get(k) for k in ("name", "result", "appliedAt", "attempts", "message")}
                    for s in st.get("steps") or []
                ],
            }
        )
    return out


def _table(rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def _yes(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _noteworthy(condition: dict[str, Any]) -> bool:
    """Not Ready, Progressing or Degraded: worth a line under the component table."""
    kind, status = condition.get("type"), condition.get("status")
    return (status != "True") if kind == "Ready" else (status == "True")


def short_host(host: str, namespace: str) -> str:
    """``{pod}.{cluster}-{comp}-internal.{ns}.svc...`` -> ``{pod}``; other hosts unchanged."""
    labels = host.split(".")
    if len(labels) >= 3 and labels[1].endswith("-internal") and labels[2] == namespace:
        return labels[0]
    return host


def render_status(s: dict[str, Any]) -> str:
    ns = s["namespace"]
    lines = [f"DorisCluster {ns}/{s['name']}: {s['phase'] or 'Unknown'}"]
    rows: list[list[Any]]
    if s["paused"]:
        lines[0] += " (paused)"
    if s["generation"] is not None and s["observedGeneration"] != s["generation"]:
        lines.append(
            f"  generation {s['generation']}, observed {s['observedGeneration']}: not yet reconciled"
        )
    if s["conditions"]:
        rows = [["CONDITION", "STATUS", "REASON", "MESSAGE"]]
        rows += [[c.get("type"), c.get("status"), c.get("reason"), c.get("message")] for c in s["conditions"]]
        lines += ["", _table(rows)]
    rows = [["COMPONENT", "READY", "PHASE", "RUNNING", "CREATING", "FAILED"]]
    for comp, c in s["components"].items():
        rows.append(
            [
                comp,
                f"{c['ready'] or 0}/{c['desired'] if c['desired'] is not None else '?'}",
                c["phase"] or "-",
                len(c["running"]),
                len(c["creating"]),
                ", ".join(c["failed"]) or 0,
            ]
        )
    lines += ["", _table(rows)]
    for comp, c in s["components"].items():
        bad = [x for x in c["conditions"] if _noteworthy(x)]
        for x in bad:
            lines.append(f"  {comp}: {x.get('type')}={x.get('status')} {x.get('reason')}: {x.get('message')}")
        for pod, tablets in sorted(c["decommissioning"].items()):
            lines.append(f"  {comp}: {pod} decommissioning, {tablets} tablets left")
    m = s.get("members")
    if m is not None:
        if m["error"]:
            lines += ["", f"Members: {m['error']} (showing Kubernetes state only)"]
        else:
            rows = [["FE", "ROLE", "MASTER", "ALIVE", "VERSION"]]
            rows += [
                [short_host(f["host"], ns), f["role"], _yes(f["master"]), _yes(f["alive"]), f["version"]]
                for f in sorted(m["fe"], key=lambda f: str(f["host"]))
            ]
            lines += ["", _table(rows)]
            rows = [["BE", "ALIVE", "TABLETS", "DECOMMISSION", "QUERY DISABLED"]]
            rows += [
                [
                    short_host(b["host"], ns) + (" (CN)" if b["computeNode"] else ""),
                    _yes(b["alive"]),
                    b["tablets"],
                    "decommissioning" if b["decommissioned"] else "no",
                    _yes(b["queryDisabled"]),
                ]
                for b in sorted(m["be"], key=lambda b: str(b["host"]))
            ]
            lines += ["", _table(rows)]
    rows = [["ACCESS", "SERVICE", "TYPE", "CLUSTER-IP", "PORTS", "EXTERNAL"]]
    for comp, c in s["components"].items():
        a = c["access"]
        if not a:
            continue
        ports = ",".join(
            f"{p['port']}" + (f":{p['nodePort']}" if p.get("nodePort") else "") for p in a.get("ports") or []
        )
        rows.append(
            [
                comp,
                a.get("service"),
                a.get("type"),
                a.get("clusterIP"),
                ports,
                ",".join(a.get("ingress") or []),
            ]
        )
    if len(rows) > 1:
        lines += ["", _table(rows)]
    if s.get("nodeAddresses"):
        lines.append(f"  node ports are open on every node: {', '.join(s['nodeAddresses'])}")
    for mon in s.get("monitors") or []:
        ready = sum(mon["parts"].values())
        lines += [
            "",
            f"DorisMonitor {mon['name']} ({mon['mode']}): {mon['phase'] or 'Unknown'}, "
            f"{ready}/{len(mon['parts'])} parts ready ({', '.join(sorted(mon['parts'])) or 'none'})",
        ]
        lines += [f"  {p}" for p in mon["problems"]]
        for what in ("prometheusURL", "grafanaURL"):
            if mon.get(what):
                lines.append(f"  {what[:-3].capitalize()}: {mon[what]}")
    for init in s.get("initializers") or []:
        lines += [
            "",
            f"DorisInitializer {init['name']}: {init['phase'] or 'Unknown'} ({init['applied'] or '-'} steps)",
        ]
        for c in init["conditions"]:
            if _noteworthy(c) and c.get("message"):
                lines.append(f"  {c.get('type')}={c.get('status')} {c.get('reason')}: {c.get('message')}")
        if init["steps"]:
            rows = [["STEP", "RESULT", "APPLIED", "ATTEMPTS", "MESSAGE"]]
            rows += [
                [st["name"], st["result"], st["appliedAt"], st["attempts"] or 0, st["message"] or ""]
                for st in init["steps"]
            ]
            lines.append(_table(rows))
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace, kube: Kube) -> int:
    table = parse_resolve(args.resolve)
    if args.name:
        clusters = [kube.get("dcr", args.name)]
    else:
        clusters = kube.list("dcr")
        if not clusters:
            raise PluginError(f"no DorisCluster in namespace {kube.ns}")
    statuses = [cluster_status(kube, dc, table, not args.no_members) for dc in clusters]
    if args.output == "json":
        print(json.dumps(statuses[0] if args.name else statuses, indent=2, default=str))
    else:
        print("\n\n".join(render_status(s) for s in statuses))
    return 0


# ---------------------------------------------------------------------------------------------
