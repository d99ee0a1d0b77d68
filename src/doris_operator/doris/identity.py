"""Which registered Doris node is which pod ordinal's, from what Doris reports.  Pure.

The images register ``hostname -f`` (``<pod>.<headless service>.<namespace>.svc.<cluster domain>``,
whatever the cluster's DNS domain is) when FQDN mode is on, else the pod IP.  A node is matched to an
ordinal, in this order, by:

1. its Host being the pod's FQDN under any cluster domain (the domain is learnt from it);
2. its Host being the pod's current IP;
3. the BackendId (FE: Name) recorded for the ordinal at an earlier observation;
4. the Host, or the pod IP, recorded for the ordinal (an IP-registered node whose pod is down).

A node claimed by two ordinals, or an ordinal with two candidate nodes of one kind, is a problem:
nothing is decided on it."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar

from .client import Backend, Frontend

log = logging.getLogger(__name__)
N = TypeVar("N", Backend, Frontend)
How = Literal["fqdn", "ip", "id", "recorded-host", "recorded-ip"]


@dataclass(frozen=True)
class PodRef:
    """What Kubernetes says about one ordinal of a StatefulSet."""

    ordinal: int
    name: str
    service: str
    """The headless Service the pod's hostname lives under (the StatefulSet's serviceName)."""
    namespace: str
    ip: str | None = None
    exists: bool = True
    ready: bool = False
    unschedulable: bool = False
    """Never scheduled: its container never ran, so its image never registered it."""

    @property
    def fqdn_prefix(self) -> str:
        return f"{self.name}.{self.service}.{self.namespace}.svc"

    def describe(self) -> str:
        names = [f"{self.fqdn_prefix}.<domain>"]
        if self.ip:
            names.append(self.ip)
        return " or ".join(names)


@dataclass(frozen=True)
class Member:
    """What the operator recorded for an ordinal (an annotation on the StatefulSet)."""

    ip: str | None = None
    node_id: str | None = None
    """BackendId (BE, CN) or Name (FE)."""
    host: str | None = None
    port: int | None = None
    leaving: bool = False
    """This operator sent DECOMMISSION (BE) or DROP (FE) for this node."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (("ip", self.ip), ("id", self.node_id), ("host", self.host), ("port", self.port)):
            if value is not None:
                out[key] = value
        if self.leaving:
            out["leaving"] = True
        return out

    @classmethod
    def from_json(cls, data: Any) -> Member | None:
        if not isinstance(data, dict):
            return None
        port = data.get("port")
        return cls(
            ip=_str(data.get("ip")),
            node_id=_str(data.get("id")),
            host=_str(data.get("host")),
            port=port if isinstance(port, int) and not isinstance(port, bool) else None,
            leaving=data.get("leaving") is True,
        )


def _str(value: Any) -> str | None:
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


Members = dict[int, Member]


def parse_members(text: str | None) -> Members:
    """The recorded members from the annotation's JSON; a malformed value reads as none recorded."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        log.warning("ignoring a malformed members annotation: %r", text[:200])
        return {}
    out: Members = {}
    if isinstance(data, dict):
        for key, value in data.items():
            member = Member.from_json(value)
            if str(key).isdigit() and member is not None:
                out[int(key)] = member
    return out


def dump_members(members: Mapping[int, Member]) -> str:
    return json.dumps(
        {str(o): m.to_json() for o, m in sorted(members.items())}, sort_keys=True, separators=(",", ":")
    )


def fqdn_domain(host: str, pod: PodRef) -> str | None:
    """The cluster domain when ``host`` is the pod's FQDN (``""`` for none), else None."""
    h = host.lower().rstrip(".")
    prefix = pod.fqdn_prefix.lower()
    if h == prefix:
        return ""
    if h.startswith(prefix + "."):
        return h[len(prefix) + 1 :]
    return None


@dataclass(frozen=True)
class Match(Generic[N]):
    node: N | None = None
    how: How | None = None
    domain: str | None = None
    problem: str | None = None


def node_id(node: Backend | Frontend) -> str:
    return str(node.backend_id) if isinstance(node, Backend) else node.name


def node_port(node: Backend | Frontend) -> int:
    return node.heartbeat_port if isinstance(node, Backend) else node.edit_log_port


def _test(how: How, pod: PodRef, member: Member | None, node: Backend | Frontend) -> bool:
    if how == "fqdn":
        return fqdn_domain(node.host, pod) is not None
    if how == "ip":
        return bool(pod.ip) and node.host == pod.ip
    if member is None:
        return False
    if how == "id":
        return member.node_id is not None and node_id(node) == member.node_id
    if how == "recorded-host":
        return bool(member.host) and node.host == member.host
    return bool(member.ip) and node.host == member.ip


TIERS: tuple[How, ...] = ("fqdn", "ip", "id", "recorded-host", "recorded-ip")


def match_nodes(
    pods: Sequence[PodRef], nodes: Sequence[N], members: Mapping[int, Member]
) -> dict[int, Match[N]]:
    """Each pod's node (or the problem that keeps it unknown; no node and no problem: not found)."""
    out: dict[int, Match[N]] = {}
    for pod in pods:
        member = members.get(pod.ordinal)
        match: Match[N] = Match()
        for how in TIERS:
            found = [n for n in nodes if _test(how, pod, member, n)]
            if len(found) > 1:
                hosts = ", ".join(f"{n.host} ({node_id(n)})" for n in found)
                match = Match(problem=f"{pod.name} matches {len(found)} registered nodes by {how}: {hosts}")
                break
            if found:
                domain = fqdn_domain(found[0].host, pod) if how == "fqdn" else None
                match = Match(node=found[0], how=how, domain=domain)
                break
        out[pod.ordinal] = match
    claimed: dict[str, list[int]] = {}
    for ordinal, match in out.items():
        if match.node is not None:
            claimed.setdefault(node_id(match.node), []).append(ordinal)
    for key, ordinals in claimed.items():
        if len(ordinals) > 1:
            names = ", ".join(p.name for p in pods if p.ordinal in ordinals)
            first = out[ordinals[0]].node
            host = first.host if first is not None else key
            for ordinal in ordinals:
                out[ordinal] = Match(problem=f"the node {host} ({key}) matches several pods: {names}")
    return out


def remember(
    members: Mapping[int, Member], pods: Sequence[PodRef], matches: Mapping[int, Match[N]]
) -> Members:
    """The records updated with what was just seen: each ordinal's current pod IP and matched node.

    A record whose node is no longer matched is kept (it may be the proof that a node is gone); an
    ordinal that matched a different node than recorded starts a new record."""
    out = dict(members)
    for pod in pods:
        old = out.get(pod.ordinal, Member())
        new = old
        if pod.ip:
            new = replace(new, ip=pod.ip)
        match = matches.get(pod.ordinal)
        if match is not None and match.node is not None:
            nid = node_id(match.node)
            if old.node_id != nid:
                new = Member(ip=new.ip, node_id=nid, host=match.node.host, port=node_port(match.node))
            else:
                new = replace(new, host=match.node.host, port=node_port(match.node))
        if new != Member():
            out[pod.ordinal] = new
    return out


def registration(matches: Mapping[int, Match[Any]]) -> str | None:
    """How the nodes registered, as learnt from the matches: ``fqdn (domain x)`` or ``pod IP``."""
    domains = {m.domain for m in matches.values() if m.how == "fqdn" and m.domain is not None}
    if domains:
        return "FQDN, cluster domain " + ", ".join(sorted(d or "(none)" for d in domains))
    if any(m.how == "ip" for m in matches.values()):
        return "pod IP"
    return None
