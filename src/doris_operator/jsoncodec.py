"""JSON on the operator's hot paths: watch events, the apiserver's answers, request bodies and the digest
of each applied object.  orjson decodes them about twice as fast as the standard library and encodes
several times faster (docs/benchmarks.md, CPU); what it refuses (an integer past 64 bits, a key that is
not a string) goes to the standard library, which decides as it always did."""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    """Decode ``data``; malformed JSON raises ``ValueError`` (``json.JSONDecodeError``)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # an integer orjson can't hold decodes; anything else raises here


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj``."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":")).encode()


def dumps_sorted(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj`` with every object's keys sorted: the same bytes for equal values."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def copy(obj: Any) -> Any:
    """A deep copy of JSON data (what a watch or the apiserver delivers): several times faster than
    ``copy.deepcopy``, which it stands for."""
    return loads(dumps(obj))
