#!/usr/bin/env python3
"""`make demo`: the operator on the local control plane (or the cluster of $KUBECONFIG) deploying the
Doris docs' sample, shown as `kubectl get dcr,sts,svc,pods` would show it.

    python hack/demo.py [--manifest examples/doriscluster-sample.yaml] [--namespace doris] [--keep]

Without --keep, everything it started is stopped at the end (the operator, the local control plane);
with --keep they stay up: `make cluster-down` stops the control plane later.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

import localcluster

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".tmp" / "demo"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_established(cluster: localcluster.LocalCluster, crd: str, timeout: float = 60) -> None:
    # (`kubectl wait` fails at once on a CRD whose status has no conditions yet)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conditions = (cluster.kubectl_json("get", "crd", crd).get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.5)
    raise SystemExit(f"CRD {crd} not established after {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", default=str(ROOT / "examples" / "doriscluster-sample.yaml"))
    parser.add_argument("--namespace", default="doris")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--keep", action="store_true", help="leave the operator and control plane running")
    parser.add_argument(
        "--no-sim", action="store_true", help="real Doris images: don't start the simulated FE"
    )
    args = parser.parse_args()

    own_cluster = not os.environ.get("KUBECONFIG")
    if own_cluster:
        print("No KUBECONFIG: starting the local control plane (built from Go modules on first use) ...")
        cluster = localcluster.LocalCluster(state_dir=STATE / "cluster", detached=args.keep).start()
    else:
        print(f"Using the cluster of KUBECONFIG={os.environ['KUBECONFIG']}")
        cluster = localcluster.LocalCluster.attach(os.environ["KUBECONFIG"])
    operator: subprocess.Popen[bytes] | None = None
    sim: subprocess.Popen[str] | None = None
    try:
        cluster.kubectl("apply", "-f", str(ROOT / "config" / "crd"))
        _wait_established(cluster, "dorisclusters.doris.selectdb.com")
        STATE.mkdir(parents=True, exist_ok=True)
        log = (STATE / "operator.log").open("wb")
        port = _free_port()
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "doris_operator",
                "run",
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(port),
                # the simulated FE listens on 127.0.0.1, named by the fe-address annotation: local runs only
                "--allow-fe-address-annotation",
            ],
            env=cluster.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        print(f"Operator started (pid {operator.pid}, log {STATE / 'operator.log'}, metrics :{port})")
        cluster.kubectl("create", "namespace", args.namespace, check=False)
        manifest = yaml.safe_load(Path(args.manifest).read_text())
        name = manifest["metadata"]["name"]
        if not args.no_sim:
            # Doris itself can't run here: a simulated FE answers the operator's SQL, and plays the images'
            # part (each pod registers itself when it turns Ready)
            sim = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "doris_sim",
                    "--namespace",
                    args.namespace,
                    "--cluster",
                    name,
                ],
                env=cluster.env(),
                stdout=subprocess.PIPE,
                stderr=(STATE / "simulated-fe.log").open("wb"),
                text=True,
                start_new_session=True,
            )
            assert sim.stdout is not None
            fe_address = sim.stdout.readline().strip()
            if not fe_address:
                print(f"the simulated FE did not start; see {STATE / 'simulated-fe.log'}")
                return 1
            print(f"Simulated Doris FE on {fe_address} (log {STATE / 'simulated-fe.log'})")
            manifest["metadata"].setdefault("annotations", {})["doris.apache.org/fe-address"] = fe_address
        print(f"\n$ kubectl apply -n {args.namespace} -f {os.path.relpath(args.manifest)}")
        print(cluster.apply(manifest, "-n", args.namespace).strip())
        deadline = time.monotonic() + args.timeout
        phase = ""
        while time.monotonic() < deadline:
            if operator.poll() is not None:
                print(f"the operator exited ({operator.returncode}); see {STATE / 'operator.log'}")
                return 1
            status = cluster.kubectl_json("get", "dcr", name, "-n", args.namespace).get("status") or {}
            if status.get("phase") != phase:
                phase = status.get("phase", "")
                print(f"  {time.strftime('%H:%M:%S')} phase={phase or '-'}")
            if phase == "Ready":
                break
            time.sleep(1)
        listing = cluster.kubectl("get", "dcr,sts,svc,pods", "-n", args.namespace).stdout
        print(f"\n$ kubectl get dcr,sts,svc,pods -n {args.namespace}\n{listing}")
        if phase != "Ready":
            print(f"The DorisCluster did not become Ready within {args.timeout:.0f}s")
            return 1
        members = subprocess.run(
            [sys.executable, "-m", "doris_operator.kubectl_plugin", "status", name, "-n", args.namespace],
            env=cluster.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        print(f"$ kubectl doris status {name} -n {args.namespace}\n{members.stdout}{members.stderr}")
        print(f"DorisCluster {args.namespace}/{name} is Ready.")
        if args.keep:
            print(
                f"\nLeft running: export KUBECONFIG={cluster.kubeconfig}\n"
                f"Stop with: kill {' '.join(str(p.pid) for p in (operator, sim) if p)}; "
                "python hack/localcluster.py down "
                f"--state-dir {STATE / 'cluster'}"
            )
        return 0
    finally:
        if not args.keep:
            for proc in (operator, sim):
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=20)
            if own_cluster:
                cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
