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


def _scale(
    n: int,
    rss_mib: float,
    *,
    all_kinds: bool = False,
    writes: int = 0,
    idle_writes: int = 0,
    cpu: float = 1.0,
    idle: list[float] | None = None,
    burst: list[float] | None = None,
) -> scale.Scale:
    def window(w: int, seconds: float) -> dict[str, object]:
        return {
            "seconds": seconds,
            "by_user": {OP: {"requests": w, "writes": w, "watches": 0}},
            "by_verb": {},
        }

    hist: dict[str, float | None] = {"count": 0.0, "p50": None, "p99": None, "mean": None}
    return scale.Scale(
        clusters=n, all_kinds=all_kinds, objects=n, apply_s=1.0, ready_s=10.0, ready_by_kind={},
        settle_s=1.0, converge_s=11.0, rss_base_kib=0, rss_ready_kib=0, rss_idle_kib=int(rss_mib * 1024),
        hwm_kib=int(rss_mib * 1024), cpu_start_s=1.0, cpu_converge_s=cpu, cpu_idle_s=0.0, cpu_burst_s=0.0,
        reconciles_converge=n, reconciles_idle=0, reconciles_burst=0,
        audit={"converge": window(writes, 11), "idle": window(idle_writes, 120), "burst": window(0, 5),
               "latency": window(0, 5)},
        latency_idle=idle or [0.1, 0.2], latency_burst=burst or [0.3], hist_idle=hist, hist_burst=hist,
        load=[1.0, 1.0, 1.0],
    )  # fmt: skip


def test_targets_pass_and_fail_on_the_numbers() -> None:
    # DorisClusters only: 50 MiB + 0.3 MiB per cluster; all kinds: 59.3 + 0.704 per cluster
    good = [_scale(1, 50.3), _scale(50, 65.0, writes=700, cpu=2.0), _scale(200, 110.0)]
    good += [_scale(200, 200.0, all_kinds=True), _scale(1, 60.0, all_kinds=True)]
    rows = {
        r["target"].split(" (")[0]: r for r in scale.evaluate(good, None) if "all kinds" not in r["target"]
    }
    for r in scale.evaluate(good, None):
        if "with all kinds" in r["target"]:
            assert r["verdict"] == "**FAIL**", r  # 59.3 MiB base, 0.704 MiB per cluster
    assert rows["base RSS <= 55 MiB"]["ours"] == "50.0 MiB"
    assert rows["RSS growth <= 0.39 MiB per DorisCluster"]["ours"] == "0.300 MiB"
    assert rows["base RSS <= 55 MiB"]["verdict"] == "**PASS**"
    assert rows["RSS growth <= 0.39 MiB per DorisCluster"]["verdict"] == "**PASS**"
    assert rows["CPU to converge 50 clusters <= 1.5 x 1.5 s"]["verdict"] == "**PASS**"
    assert rows["writes to converge 50 clusters <= 1.0 x 721"]["verdict"] == "**PASS**"
    idle = next(r for r in scale.evaluate(good, None) if r["target"].startswith("0 writes per idle"))
    assert idle["verdict"] == "**PASS**"
    assert rows["500 clusters converge"]["verdict"] == "not measured"

    bad = [_scale(1, 80.0), _scale(50, 110.0, writes=953, cpu=4.0, burst=[0.5])]
    bad += [_scale(200, 200.0, all_kinds=True, idle_writes=2), _scale(1, 90.0, all_kinds=True)]
    verdicts = [(r["target"], r["verdict"]) for r in scale.evaluate(bad, None)]
    failed = {t.split(" (")[0] for t, v in verdicts if v == "**FAIL**"}
    assert failed >= {
        "base RSS <= 55 MiB",
        "RSS growth <= 0.39 MiB per DorisCluster",
        "CPU to converge 50 clusters <= 1.5 x 1.5 s",
        "writes to converge 50 clusters <= 1.0 x 721",
        "0 writes per idle minute, all four kinds, 200 clusters",
        "burst p99 <= 2 x idle p99",
    }, verdicts

    # a scale point that did not converge in time is not idle: no verdict on its idle writes or burst
    stuck = _scale(200, 300.0, all_kinds=True, idle_writes=50)
    stuck.ready_s = None
    rows = {r["target"]: r for r in scale.evaluate([stuck], None)}
    assert rows["0 writes per idle minute, all four kinds, 200 clusters"]["verdict"] == "not measured"
    assert rows["burst p99 <= 2 x idle p99 (200 clusters, all kinds)"]["verdict"] == "not measured"


def test_render_only_combines_runs_from_their_json(tmp_path: Path) -> None:
    def run(path: Path, scales: list[scale.Scale], command: str) -> None:
        doc = {"command": command, "code": "`abc1234`", "load_start": 3.5, "single": None}
        path.write_text(json.dumps({**doc, "scales": [scale.asdict(s) for s in scales]}))

    run(tmp_path / "a.json", [_scale(1, 60.0, all_kinds=True)], "python bench/scale.py --with-all-kinds")
    run(tmp_path / "b.json", [_scale(1, 50.3), _scale(50, 65.0, writes=800)], "python bench/scale.py")
    md = tmp_path / "benchmarks.md"
    md.write_text("# Benchmarks\n\nkept\n")
    argv = ["--render-only", "--include", str(tmp_path / "a.json"), "--include", str(tmp_path / "b.json")]
    assert scale.main([*argv, "--out", str(md), "--json", str(tmp_path / "all.json")]) == 0
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n")
    assert "python bench/scale.py --with-all-kinds\npython bench/scale.py\n```" in text
    assert "writes to converge 50 clusters <= 1.0 x 721 | 721 | 800 | **FAIL**" in text
    combined = json.loads((tmp_path / "all.json").read_text())
    assert [(s["clusters"], s["all_kinds"]) for s in combined["scales"]] == [
        (1, True),
        (1, False),
        (50, False),
    ]
    assert combined["commands"] == ["python bench/scale.py --with-all-kinds", "python bench/scale.py"]
    # a second rendering replaces the section instead of adding one
    assert scale.main([*argv, "--out", str(md)]) == 0
    assert md.read_text().count(scale.BEGIN_MARK) == 1
