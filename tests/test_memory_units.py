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
    out["metadata"]["finalizers"].append("g")
    out["metadata"]["annotations"]["team"] = "b"
    assert body == before


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


def test_allocator_limits_arenas_unless_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from doris_operator import allocator

    if allocator._LIBC is None:
        pytest.skip("not glibc")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert allocator.limit_arenas() is False  # the operator's environment wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert allocator.limit_arenas() is True


def test_trim_gives_freed_memory_back() -> None:
    """Memory freed by a worker thread (as the FE client's calls in asyncio.to_thread) stays with glibc
    until trimmed."""
    code = (
        "import threading\n"
        "from doris_operator import allocator\n"
        "def rss():\n"
        "    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])\n"
        "def work():\n"
        "    blocks = [bytes(2000) + bytes([i % 256]) for i in range(40000)]\n"
        "    keep = blocks[::50]\n"
        "    del blocks\n"
        "    held.append(keep)\n"
        "held = []\n"
        "t = threading.Thread(target=work)\n"
        "t.start(); t.join()\n"
        "before = rss()\n"
        "assert allocator.trim()\n"
        "print(before - rss())\n"
    )
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert int(out.stdout.strip()) > 40_000  # KiB: most of the ~80 MB freed went back


async def test_trim_every_trims_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from doris_operator import allocator

    if allocator._LIBC is None:
        pytest.skip("not glibc")
    calls: list[int] = []
    monkeypatch.setattr(allocator, "trim", lambda: calls.append(1) or True)
    task = asyncio.create_task(allocator.trim_every(0.01))
    while len(calls) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_freeze_startup_moves_what_exists_out_of_the_collector() -> None:
    import gc

    from doris_operator import allocator

    try:
        allocator.freeze_startup()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
