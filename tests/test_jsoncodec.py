"""The hot-path JSON codec: orjson where it can, the standard library where orjson refuses."""

from __future__ import annotations

import hashlib
import json

import pytest

from doris_operator import jsoncodec
from doris_operator.reconcile.act import digest


def test_it_decodes_what_the_standard_library_decodes() -> None:
    text = '{"kind":"Pod","metadata":{"name":"fe-0","labels":{"a":"ä"}},"spec":{"n":1.5,"on":true,"x":null}}'
    assert jsoncodec.loads(text.encode()) == json.loads(text)
    assert jsoncodec.loads(text) == json.loads(text)


def test_an_integer_past_64_bits_still_decodes() -> None:
    big = 2**70
    assert jsoncodec.loads(f'{{"n": {big}}}'.encode()) == {"n": big}


def test_malformed_json_raises_a_value_error() -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(b'{"kind": "Pod"')
    with pytest.raises(ValueError):
        jsoncodec.loads(b"")


def test_the_encoding_is_compact_json_the_apiserver_reads_back() -> None:
    obj = {"metadata": {"name": "be-0", "annotations": {"note": "größe"}}, "spec": {"replicas": 3}}
    out = jsoncodec.dumps(obj)
    assert isinstance(out, bytes)
    assert b" " not in out.replace(b"\xc3\xb6", b"")  # no padding
    assert json.loads(out) == obj


def test_what_orjson_refuses_goes_to_the_standard_library() -> None:
    assert json.loads(jsoncodec.dumps({1: "a", "n": 2**70})) == {"1": "a", "n": 2**70}
    assert json.loads(jsoncodec.dumps_sorted({"b": 2**70, "a": 1})) == {"a": 1, "b": 2**70}


def test_sorted_bytes_do_not_depend_on_the_order_of_the_keys() -> None:
    one = {"spec": {"b": 1, "a": [{"y": 1, "x": 2}]}, "kind": "StatefulSet"}
    two = {"kind": "StatefulSet", "spec": {"a": [{"x": 2, "y": 1}], "b": 1}}
    assert jsoncodec.dumps_sorted(one) == jsoncodec.dumps_sorted(two)
    assert jsoncodec.dumps_sorted(one) == b'{"kind":"StatefulSet","spec":{"a":[{"x":2,"y":1}],"b":1}}'
    assert digest(one) == digest(two) == hashlib.sha256(jsoncodec.dumps_sorted(one)).hexdigest()[:16]
    assert digest(one) != digest({**one, "kind": "Service"})
