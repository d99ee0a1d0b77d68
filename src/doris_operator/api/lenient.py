"""The controller's parse of a stored DorisCluster: tolerant of fields this version doesn't know.

The models reject unknown fields (``extra="forbid"``), which is right for ``render`` and the webhook: a
typo is reported at once.  A stored object is different: the apiserver already accepted it under the CRD
it has, and a newer CRD (installed before this operator is upgraded, or by another release) may add
fields.  Parking such a cluster as InvalidSpec would stop it from being reconciled at all, so the
controller drops what it doesn't know, logs it once, and reconciles the rest.  Every other problem is
still an error."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from .doriscluster import DorisCluster
from .validation import parse_cluster

log = logging.getLogger(__name__)
_logged: set[tuple[str, str, tuple[str, ...]]] = set()
_MAX_PASSES = 20
CACHE_SIZE = 4096
"""Parsed DorisClusters kept (least recently used dropped first): one per cluster the operator runs."""
_parsed: OrderedDict[tuple[str, str], tuple[bytes, DorisCluster]] = OrderedDict()
_META = ("name", "namespace", "labels", "annotations", "uid", "generation")
"""What the model reads of ``metadata`` (``ObjectMeta``): a status write changes none of it."""


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _drop(doc: Any, loc: Sequence[int | str]) -> bool:
    """Delete the field at ``loc``; keys that aren't in the document (pydantic's union tags) are
    skipped.  False when nothing was there."""
    node = doc
    for key in loc[:-1]:
        found = isinstance(node, dict) and key in node
        found = found or (isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node))
        if found:
            node = node[key]
    if isinstance(node, dict) and loc and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def unknown_fields(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``obj`` without the fields the models don't know, and their paths."""
    doc = copy.deepcopy(obj)
    ignored: list[str] = []
    for _ in range(_MAX_PASSES):
        try:
            DorisCluster.model_validate(doc)
            break
        except ValidationError as err:
            extra = [e["loc"] for e in err.errors() if e["type"] == "extra_forbidden"]
            dropped = [loc for loc in extra if _drop(doc, loc)]
            if not dropped:
                break
            ignored += [_path(loc) for loc in dropped]
    return doc, ignored


def _digest(obj: dict[str, Any]) -> bytes:
    meta = obj.get("metadata") or {}
    parsed = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: meta.get(k) for k in _META},
        "spec": obj.get("spec"),
    }
    return hashlib.sha256(
        json.dumps(parsed, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).digest()


def parse_stored_cluster(obj: dict[str, Any]) -> DorisCluster:
    """:func:`~.validation.parse_cluster` of ``obj`` without its unknown fields (logged once per
    cluster and set of fields); raises :class:`~.validation.InvalidResource` for anything else.

    The model is shared across reconciles while what it is parsed from (spec, and the metadata the model
    has) is unchanged: callers read it, never change it.  :func:`forget` drops a deleted cluster's."""
    meta = obj.get("metadata") or {}
    key = (str(meta.get("namespace")), str(meta.get("name")))
    digest = _digest(obj)
    hit = _parsed.get(key)
    if hit is not None and hit[0] == digest:
        _parsed.move_to_end(key)
        return hit[1]
    parsed = _parse(obj)
    _parsed[key] = (digest, parsed)
    _parsed.move_to_end(key)
    while len(_parsed) > CACHE_SIZE:
        _parsed.popitem(last=False)
    return parsed


def forget(namespace: str, name: str) -> None:
    """The DorisCluster was deleted: its parsed model goes."""
    _parsed.pop((namespace, name), None)


def _parse(obj: dict[str, Any]) -> DorisCluster:
    doc, ignored = unknown_fields(obj)
    if ignored:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")), tuple(ignored))
        if key not in _logged:
            _logged.add(key)
            log.warning(
                "DorisCluster %s/%s has fields this operator version doesn't know; ignoring %s",
                key[0],
                key[1],
                ", ".join(ignored),
            )
    return parse_cluster(doc)
