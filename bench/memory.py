#!/usr/bin/env python3
"""Memory of ``doris-operator run``: VmRSS/VmHWM with 0 and N DorisClusters, and where it goes.

Starts a local control plane (``hack/localcluster.py``) and the operator as its own process
(``tests/harness.py`` ``Operator``), reads ``/proc/<pid>/status`` with no DorisCluster, then after each
step of ``--clusters`` (cumulative: ``0,50,200`` applies 50, then 150 more) once every DorisCluster
reports ``status.phase: Ready`` and the operator's write counter stopped moving. Each DorisCluster is
``examples/doriscluster-sample.yaml`` (3 FE + 3 BE, ``requests``/``limits`` removed) in its own namespace.

``--tracemalloc N`` runs the operator under ``tracemalloc`` (N frames) and prints, at each step, the
top allocations by line and by file (the snapshot is taken inside the operator on SIGUSR1; tracing
itself costs memory, so RSS figures from such a run are not comparable).  ``--imports`` prints the
modules ``import doris_operator.operator`` loads, by top-level package, and the RSS after the import.

    python bench/memory.py [--clusters 0,50,200] [--nodes 12] [--tracemalloc 10] [--top 25]

Every process it starts is stopped before it exits; nothing listens on or connects to anything but
127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "tests")]

import localcluster  # noqa: E402
from harness import Operator, eventually  # noqa: E402

# Runs the operator in its own process with --tracemalloc or --probe-trim: tracing from the first
# import and a snapshot on SIGUSR1, glibc's malloc_trim(0) on SIGUSR2 (asyncio runs Python signal
# handlers in the main thread, between callbacks).
WRAPPER = """
import ctypes, gc, os, runpy, signal, sys, time, tracemalloc
if os.environ.get("BENCH_TRACEMALLOC"):
    tracemalloc.start(int(os.environ["BENCH_TRACEMALLOC"]))
def _dump(*_):
    gc.collect()
    with open(os.environ["BENCH_SNAPSHOT"]) as f:
        path = f.read()
    tracemalloc.take_snapshot().dump(path + ".tmp")
    os.rename(path + ".tmp", path)
def _trim(*_):
    t0 = time.perf_counter()
    gc.collect()
    t1 = time.perf_counter()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open(os.environ["BENCH_TRIMMED"] + ".tmp", "w") as f:
        f.write(f"{t1 - t0} {time.perf_counter() - t1}")
    os.rename(os.environ["BENCH_TRIMMED"] + ".tmp", os.environ["BENCH_TRIMMED"])
signal.signal(signal.SIGUSR1, _dump)
signal.signal(signal.SIGUSR2, _trim)
sys.argv[0] = "doris-operator"
runpy.run_module("doris_operator", run_name="__main__", alter_sys=True)
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def memory(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def mappings(pid: int) -> dict[str, float]:
    """Resident MiB by kind of mapping (``/proc/<pid>/smaps``): ``heap`` = the main malloc arena (brk),
    ``anon`` = anonymous mmaps (Python's object arenas, other threads' malloc arenas, large blocks),
    ``files`` = shared libraries and other mapped files."""
    out = {"heap": 0.0, "anon": 0.0, "files": 0.0, "stack": 0.0}
    kind = "anon"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            name = head[5] if len(head) > 5 else ""
            kind = {"[heap]": "heap", "[stack]": "stack"}.get(
                name, "files" if name.startswith("/") else "anon"
            )
        elif head[0] == "Rss:":
            out[kind] += int(head[1]) / 1024
    return out


def manifest(namespace: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "doriscluster-sample.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    for comp in ("feSpec", "beSpec"):
        for key in ("requests", "limits"):
            doc["spec"][comp].pop(key, None)
    return doc


def phases(cluster: localcluster.LocalCluster) -> list[str]:
    out = cluster.kubectl("get", "dcr", "-A", "-o", "jsonpath={.items[*].status.phase}", timeout=120)
    return str(out.stdout).split()


def settle(op: Operator, quiet: float = 5.0, timeout: float = 120.0) -> None:
    """Until the operator's write counter has not moved for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = op.writes(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = op.writes()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def _caller(traceback: Any) -> str:
    """The innermost frame outside the standard library (``copy.deepcopy`` is charged to its caller)."""
    frames = list(reversed(traceback))  # innermost first
    for frame in frames:
        if (
            not re.search(r"/python3\.\d+/(?!site-packages)", frame.filename)
            and "<frozen" not in frame.filename
        ):
            return f"{re.sub(r'^.*?(site-packages|/src)/', '', frame.filename)}:{frame.lineno}"
    return f"{frames[0].filename}:{frames[0].lineno}"


def growth(snapshot_path: Path, previous: Path, limit: int) -> str:
    """What was allocated between two snapshots, by the caller outside the standard library."""
    import tracemalloc

    new = tracemalloc.Snapshot.load(str(snapshot_path))
    old = tracemalloc.Snapshot.load(str(previous))
    by: dict[str, list[int]] = {}
    for diff in new.compare_to(old, "traceback"):
        entry = by.setdefault(_caller(diff.traceback), [0, 0])
        entry[0] += diff.size_diff
        entry[1] += diff.count_diff
    total = sum(v[0] for v in by.values())
    lines = [f"growth since the previous step: {total / 2**20:.2f} MiB, by caller:"]
    for caller, (size, count) in sorted(by.items(), key=lambda kv: -kv[1][0])[:limit]:
        lines.append(f"  {size / 2**20:7.2f} MiB {count:8d}  {caller}")
    return "\n".join(lines)


def top(snapshot_path: Path, limit: int) -> str:
    import tracemalloc

    snap = tracemalloc.Snapshot.load(str(snapshot_path)).filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    stats = snap.statistics("filename")
    total = sum(s.size for s in stats)
    lines = [f"traced: {total / 2**20:.1f} MiB (<frozen importlib...>: code objects of imported modules)"]
    lines.append("by package:")
    by_pkg: dict[str, int] = {}
    for stat in stats:
        name = re.sub(r"^.*(site-packages|/src)/", "", stat.traceback[0].filename)
        name = re.sub(r"^.*/python3\.\d+/", "", name)
        pkg = name.split("/")[0].removesuffix(".py")
        by_pkg[pkg] = by_pkg.get(pkg, 0) + stat.size
    for pkg, size in sorted(by_pkg.items(), key=lambda kv: -kv[1])[:limit]:
        lines.append(f"  {size / 2**20:7.2f} MiB  {pkg}")
    lines.append("by line:")
    for stat in snap.statistics("lineno")[:limit]:
        frame = stat.traceback[0]
        lines.append(f"  {stat.size / 2**20:7.2f} MiB {stat.count:8d}  {frame.filename}:{frame.lineno}")
    return "\n".join(lines)


def imports() -> None:
    code = (
        "import sys, doris_operator.operator, collections\n"
        "c = collections.Counter(m.split('.')[0] for m in sys.modules)\n"
        "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n"
        "print(f'import doris_operator.operator: VmRSS {int(rss) / 1024:.1f} MiB, '\n"
        "      f'{len(sys.modules)} modules')\n"
        "print(', '.join(f'{k} {v}' for k, v in c.most_common(25)))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def default_service_accounts(cluster: localcluster.LocalCluster) -> set[str]:
    out = cluster.kubectl(
        "get",
        "sa",
        "-A",
        "--field-selector=metadata.name=default",
        "-o",
        "jsonpath={.items[*].metadata.namespace}",
    )
    return set(str(out.stdout).split())


def add_clusters(cluster: localcluster.LocalCluster, namespaces: list[str], timeout: float) -> None:
    """One DorisCluster per new namespace; returns when every DorisCluster is Ready."""
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in namespaces]
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": items})
    eventually(lambda: set(namespaces) <= default_service_accounts(cluster), 120, what="ServiceAccounts")
    t0 = time.monotonic()
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": [manifest(ns) for ns in namespaces]})
    total = len(str(cluster.kubectl("get", "dcr", "-A", "-o", "name", timeout=120).stdout).split())
    eventually(lambda: phases(cluster).count("Ready") >= total, timeout, interval=3, what=f"{total} Ready")
    log(f"{total} DorisClusters Ready {time.monotonic() - t0:.0f}s after the apply")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", default="0,50,200", help="cumulative DorisCluster counts")
    parser.add_argument("--nodes", type=int, default=12)
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--idle",
        type=float,
        default=40,
        help="seconds between settled and the reading (the operator trims every 30)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="for the operator (MALLOC_ARENA_MAX=2)",
    )
    parser.add_argument("--imports", action="store_true", help="only the import figures")
    parser.add_argument(
        "--probe-trim",
        action="store_true",
        help="after each step, call glibc malloc_trim(0) in the operator (gdb) and read VmRSS again: "
        "how much of the RSS is free memory the allocator holds",
    )
    parser.add_argument("operator_args", nargs="*", help="after --: extra `doris-operator run` flags")
    args = parser.parse_args(argv)
    imports()
    if args.imports:
        return 0
    counts = [int(c) for c in args.clusters.split(",")]
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
        cluster = stack.enter_context(localcluster.LocalCluster(nodes=args.nodes))
        for crd in sorted((ROOT / "config" / "crd").glob("*.yaml")):
            cluster.kubectl("apply", "--server-side", "-f", str(crd))
        op = Operator(cluster, tmp, *args.operator_args)
        env_extra: dict[str, str] = dict(e.split("=", 1) for e in args.env)
        if args.tracemalloc or args.probe_trim:
            op.command = [sys.executable, "-c", WRAPPER]
            env_extra["BENCH_TRIMMED"] = str(tmp / "trimmed")
        if args.tracemalloc:
            env_extra["BENCH_TRACEMALLOC"] = str(args.tracemalloc)
            env_extra["BENCH_SNAPSHOT"] = str(tmp / "snapshot-path")
        env = cluster.env
        cluster.env = lambda: {**env(), **env_extra}
        stack.callback(op.stop)
        try:
            op.start()
        except AssertionError:  # tracing slows the start beyond the harness's 30 s
            if op.proc is None or op.proc.poll() is not None:
                raise
            eventually(op.healthy, 600, what="operator /healthz")
        eventually(op.ready, 60, what="operator /readyz")
        assert op.proc is not None
        pid = op.proc.pid
        applied = 0
        previous: Path | None = None
        for n in counts:
            if n > applied:
                add_clusters(cluster, [f"mem-{i:04d}" for i in range(applied, n)], args.timeout)
                applied = n
            settle(op)
            time.sleep(args.idle)
            mem = memory(pid)
            mem.update({f"rss_{k}": v for k, v in mappings(pid).items()})
            if args.probe_trim:
                trimmed = tmp / "trimmed"
                trimmed.unlink(missing_ok=True)
                os.kill(pid, signal.SIGUSR2)
                eventually(trimmed.exists, 60, what="malloc_trim")  # written whole, then renamed
                time.sleep(1)
                mem["VmRSS_trimmed"] = memory(pid)["VmRSS"]
                gc_s, trim_s = (float(x) for x in trimmed.read_text().split())
                mem["gc_collect_ms"], mem["malloc_trim_ms"] = gc_s * 1000, trim_s * 1000
            row: dict[str, Any] = {"clusters": n, **mem}
            log(f"{n} DorisClusters: " + ", ".join(f"{k} {v:.1f}" for k, v in mem.items()) + " (MiB)")
            if args.tracemalloc:
                snapshot = tmp / f"snapshot-{n}"
                (tmp / "snapshot-path").write_text(str(snapshot))
                os.kill(pid, signal.SIGUSR1)
                eventually(snapshot.exists, 120, what="snapshot")  # written whole, then renamed
                time.sleep(5)
                row["top"] = top(snapshot, args.top)
                if previous is not None:
                    row["top"] += "\n" + growth(snapshot, previous, args.top)
                previous = snapshot
                print(f"--- {n} DorisClusters (tracemalloc)\n{row['top']}", flush=True)
            results.append(row)
    print(
        "\n| DorisClusters | VmRSS MiB | VmHWM MiB | RssAnon MiB | MiB per cluster since 0 | since 1 "
        "| [heap] | anon mmaps | files |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    bases = {row["clusters"]: row for row in results if row["clusters"] in (0, 1)}

    def per(row: dict[str, Any], since: int) -> str:
        base = bases.get(since)
        if base is None or row["clusters"] <= since:
            return ""
        return f"{(row['VmRSS'] - base['VmRSS']) / (row['clusters'] - since):.3f}"

    for row in results:
        print(
            f"| {row['clusters']} | {row['VmRSS']:.1f} | {row['VmHWM']:.1f} | {row['RssAnon']:.1f} | "
            f"{per(row, 0)} | {per(row, 1)} | {row['rss_heap']:.1f} | {row['rss_anon']:.1f} | "
            f"{row['rss_files']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
