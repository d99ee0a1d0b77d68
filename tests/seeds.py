"""The DorisCluster samples and `kubectl get service` listings of the seed document, read from
../shared/seeds at test time so the tests follow the document itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
ACCESS_DOC = SEEDS / "access-the-doris-cluster.md"


@dataclass
class ServiceRow:
    name: str
    type: str
    cluster_ip: str
    ports: list[tuple[int, int | None, str]]
    """(port, nodePort or None, protocol) in listing order."""


@dataclass
class Sample:
    title: str
    manifest: dict[str, Any]
    services: dict[str, ServiceRow]


def _rows(listing: str) -> dict[str, ServiceRow]:
    rows: dict[str, ServiceRow] = {}
    for line in listing.strip().splitlines()[1:]:
        cols = line.split()
        if not cols[0].startswith("doriscluster"):
            continue  # the 'kubernetes' Service
        ports = []
        for spec in cols[4].split(","):
            numbers, proto = spec.split("/")
            port, _, node = numbers.partition(":")
            ports.append((int(port), int(node) if node else None, proto))
        rows[cols[0]] = ServiceRow(cols[0], cols[1], cols[2], ports)
    return rows


def samples() -> list[Sample]:
    """Each DorisCluster YAML block paired with the `kubectl get service` listing that follows it."""
    text = ACCESS_DOC.read_text()
    blocks = re.findall(r"```(yaml|shell)\n(.*?)```", text, flags=re.S)
    out: list[Sample] = []
    pending: dict[str, Any] | None = None
    for lang, body in blocks:
        if lang == "yaml":
            doc = yaml.safe_load(body)
            if isinstance(doc, dict) and doc.get("kind") == "DorisCluster":
                pending = doc
        elif pending is not None and "kubectl get service" in body and "PORT(S)" in body:
            listing = body.split("\n", 1)[1]
            fe_type = (pending["spec"]["feSpec"].get("service") or {}).get("type", "ClusterIP")
            pinned = "servicePorts" in (pending["spec"]["feSpec"].get("service") or {})
            out.append(Sample(f"{fe_type}{'-pinned' if pinned else ''}", pending, _rows(listing)))
            pending = None
    return out
