"""bench/scale.py: its pure parts (audit log counting, the least-squares fit, the report's targets), and
one small real run (1 DorisCluster, 2 single-cluster applies, 1 BE scale-in, 10 s idle) whose report
must carry every field with plausible values."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import scale

OP = scale.OPERATOR_USER


def _event(user: str, verb: str, stage: str, t: str, resource: str = "pods", sub: str = "") -> str:
    ref = {"resource": resource, **({"subresource": sub} if sub else {})}
    return json.dumps(
        {
            "kind": "Event",
            "stage": stage,
            "verb": verb,
            "user": {"username": user},
            "objectRef": ref,
            "requestReceivedTimestamp": t,
        }
    )


def test_audit_counts_requests_writes_and_watches_per_user_and_window(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    base = 1_780_000_000.0  # 2026-05-28T...
    stamp = dt.datetime.fromtimestamp
    at = {s: stamp(base + s, dt.UTC).isoformat().replace("+00:00", "Z") for s in (1, 2, 3, 11)}
    log.write_text(
        "\n".join(
            [
                _event(OP, "get", "ResponseComplete", at[1]),
                _event(OP, "patch", "ResponseComplete", at[1], "dorisclusters", "status"),
                _event(OP, "create", "ResponseComplete", at[2], "events"),
                _event(OP, "watch", "ResponseStarted", at[2]),
                _event(OP, "watch", "ResponseComplete", at[3]),  # a watch ending: not a request
                _event("system:kube-scheduler", "create", "ResponseComplete", at[3], "bindings"),
                _event(OP, "update", "ResponseComplete", at[11], "statefulsets"),  # outside "a"
                "not json",
            ]
        )
        + "\n"
    )
    out = scale.read_audit(log, {"a": (base, base + 10), "b": (base + 10, base + 20)})
    a, b = out["a"], out["b"]
    assert a.by_user[OP] == {"requests": 3, "writes": 2, "watches": 1}
    assert a.by_verb[OP] == {
        "get pods": 1,
        "patch dorisclusters/status": 1,
        "create events": 1,
        "watch pods": 1,
    }
    assert a.of("system:kube-scheduler", "writes") == 1
    assert b.by_user == {OP: {"requests": 1, "writes": 1, "watches": 0}}
    assert a.seconds == 10


def test_fit_is_least_squares() -> None:
    assert scale.fit([(1, 50.0)]) is None
    a, b = scale.fit([(1, 50.5), (50, 75.0), (200, 150.0)]) or (0.0, 0.0)
    # by hand: mean x 83.667, mean y 91.833, slope = sum dx dy / sum dx^2
    assert b == pytest.approx(0.5000, abs=2e-3) and a == pytest.approx(50.0, abs=0.3)
    assert scale.fit([(1, 10.0), (3, 10.0)]) == (10.0, 0.0)


@pytest.mark.cluster
def test_a_small_run_reports_every_figure(tmp_path: Path) -> None:
    out_md = tmp_path / "benchmarks.md"
    out_md.write_text("# Benchmarks\n\nhand-written text that must survive\n")
    out_json = tmp_path / "scale.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "sim"), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "scale.py"),
        "--clusters", "1",
        "--runs", "2",
        "--scale-in-runs", "1",
        "--idle-seconds", "10",
        "--latency-samples", "2",
        "--settle", "3",
        "--nodes", "3",
        "--pods-per-node", "110",
        "--timeout", "240",
        "--out", str(out_md),
        "--json", str(out_json),
        "--log-dir", str(tmp_path / "logs"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out_json.read_text())
    assert result["failed"] is False
    assert result["go_reference"]["writes_50"] == 721

    (s,) = result["scales"]
    assert s["clusters"] == 1 and s["all_kinds"] is False and s["errors"] == []
    assert 0 < s["ready_s"] < 240
    assert 20 * 1024 < s["rss_idle_kib"] < 1024 * 1024 and s["hwm_kib"] >= s["rss_idle_kib"]
    assert s["rss_base_kib"] > 0 and s["cpu_start_s"] > 0 and s["cpu_converge_s"] > 0
    conv = s["audit"]["converge"]["by_user"][OP]
    # at least its 2 StatefulSets, 4 Services, 2 PDBs and the status: every one a write
    assert conv["writes"] >= 9 and conv["requests"] >= conv["writes"]
    verbs = s["audit"]["converge"]["by_verb"][OP]
    assert any(k.startswith("patch dorisclusters/status") for k in verbs), verbs
    # the control plane's own users are counted apart from the operator
    assert any(u.startswith("system:") and u != OP for u in s["audit"]["converge"]["by_user"])
    assert s["audit"]["idle"]["seconds"] == pytest.approx(10, abs=2)
    assert s["reconciles_converge"] >= 1
    assert len(s["latency_idle"]) == 2 and all(0 < v < 120 for v in s["latency_idle"])
    assert len(s["latency_burst"]) == 1 and 0 < s["latency_burst"][0] < 300
    assert s["hist_idle"]["count"] >= 2

    single = result["single"]
    assert len(single["runs"]) == 2 and all(0 < v < 240 for v in single["runs"]), single
    (run,) = single["scale_in"]
    assert run["drain_s"] > 0 and 0 <= run["shrink_after_drop_s"] < 120
    targets = {t["target"]: t for t in result["targets"]}
    assert any("scale-in" in k for k in targets)
    assert any(t["verdict"] == "not measured" for t in targets.values())  # no 50-cluster point

    md = out_md.read_text()
    assert "hand-written text that must survive" in md
    assert md.count(scale.BEGIN_MARK) == 1 and md.count(scale.END_MARK) == 1
    assert "not re-measured" in md and "| base RSS" in md
