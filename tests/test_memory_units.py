"""What the operator keeps in memory per DorisCluster (issue 17; figures in docs/benchmarks.md, Memory):
trimmed index entries and one parsed model per unchanged cluster."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from doris_operator.api import lenient
from doris_operator.api.validation import InvalidResource
from doris_operator.reconcile.observed import trim_resource
from harness import sample

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def stored(**meta: Any) -> dict[str, Any]:
    doc = sample()
    doc["metadata"].update(
        {"namespace": "ns", "uid": "uid-1", "generation": 1, "resourceVersion": "10", **meta}
    )
    return doc


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    lenient._parsed.clear()
    yield
    lenient._parsed.clear()


def test_trim_resource_drops_managed_fields_and_last_applied_only() -> None:
    body = stored(
        annotations={LAST_APPLIED: json.dumps(sample()), "doris.apache.org/x": "1", "team": "a"},
        managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        finalizers=["f"],
    )
    body["status"] = {"phase": "Ready"}
    before = copy.deepcopy(body)
    out = trim_resource(body)
    assert body == before  # the watch's body is left as it was
    assert "managedFields" not in out["metadata"]
    assert out["metadata"]["annotations"] == {"doris.apache.org/x": "1", "team": "a"}
    expected_meta = {k: v for k, v in before["metadata"].items() if k not in ("managedFields", "annotations")}
    assert {k: v for k, v in out["metadata"].items() if k != "annotations"} == expected_meta
    assert out["spec"] == before["spec"] and out["status"] == before["status"]
    assert list(out) == ["apiVersion", "kind", "metadata", "spec", "status"]
    out["spec"]["feSpec"]["replicas"] = 99  # a copy, not a view
    assert body["spec"]["feSpec"]["replicas"] == before["spec"]["feSpec"]["replicas"]


def test_trim_resource_without_annotations() -> None:
    out = trim_resource(stored())
    assert "annotations" not in out["metadata"] and out["metadata"]["uid"] == "uid-1"


def test_a_parsed_cluster_is_shared_while_what_it_is_parsed_from_is_unchanged() -> None:
    first = lenient.parse_stored_cluster(stored())
    # a status write: new resourceVersion, same spec and metadata the model has
    again = lenient.parse_stored_cluster(stored(resourceVersion="11", managedFields=[{"manager": "x"}]))
    assert again is first


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["spec"]["beSpec"].update(replicas=5),
        lambda d: d["metadata"].update(generation=2),
        lambda d: d["metadata"].update(annotations={"doris.apache.org/fe-address": "127.0.0.1:9030"}),
        lambda d: d["metadata"].update(labels={"a": "b"}),
        lambda d: d["metadata"].update(uid="uid-2"),  # deleted and made again under the same name
    ],
)
def test_any_change_the_model_would_see_parses_again(change: Any) -> None:
    first = lenient.parse_stored_cluster(stored())
    doc = stored()
    change(doc)
    again = lenient.parse_stored_cluster(doc)
    assert again is not first
    assert again == lenient._parse(doc)  # what an uncached parse gives


def test_forget_drops_the_model_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    first = lenient.parse_stored_cluster(stored())
    lenient.forget("ns", "doriscluster-sample")
    assert lenient._parsed == {}
    assert lenient.parse_stored_cluster(stored()) is not first
    monkeypatch.setattr(lenient, "CACHE_SIZE", 3)
    for i in range(5):
        lenient.parse_stored_cluster(stored(name=f"c{i}"))
    assert [name for _, name in lenient._parsed] == ["c2", "c3", "c4"]


def test_an_invalid_spec_is_never_cached() -> None:
    doc = stored()
    doc["spec"]["feSpec"]["replicas"] = "three"
    for _ in range(2):
        with pytest.raises(InvalidResource):
            lenient.parse_stored_cluster(doc)
    assert lenient._parsed == {}
