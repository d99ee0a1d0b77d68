"""``python -m doris_sim``: a simulated Doris FE for one DorisCluster whose pods register as the
official images would (:mod:`doris_sim.images`). Prints the FE's ``host:port`` on one line
once serving, then runs until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence

from .images import ImageDriver


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m doris_sim", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, then the in-cluster service account")
    parser.add_argument("--namespace", required=True, help="namespace of the DorisCluster")
    parser.add_argument("--cluster", required=True, help="name of the DorisCluster")
    parser.add_argument("--port", type=int, default=0, help="MySQL port on 127.0.0.1, 0 picks a free one")
    parser.add_argument("--version", default="2.1.8", help="Doris version to imitate: 2.0.x, 2.1.x or 3.x")
    parser.add_argument(
        "--cluster-domain", default="cluster.local", help="the cluster's DNS domain in `hostname -f`"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--fqdn-mode", dest="fqdn_mode", action="store_const", const=True, help="every node registers by FQDN"
    )
    mode.add_argument(
        "--ip-mode",
        dest="fqdn_mode",
        action="store_const",
        const=False,
        help="every node registers by pod IP",
    )
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument(
        "--ephemeral-storage",
        dest="ephemeral_storage",
        action="store_const",
        const=True,
        help="every BE comes back empty in a new pod (default: BEs without a PVC for their storage)",
    )
    storage.add_argument("--persistent-storage", dest="ephemeral_storage", action="store_const", const=False)
    parser.add_argument("--replication-num", type=int, default=3, help="replicas per tablet")
    parser.add_argument(
        "--tablets-per-be", type=int, default=100, help="replicas each of the first BEs holds"
    )
    parser.add_argument("--decommission-rate", type=float, default=10.0, help="replicas moved per second")
    parser.add_argument("--clone-rate", type=float, default=10.0, help="missing replicas cloned per second")
    parser.add_argument("--balance-rate", type=float, default=2.0, help="replicas balanced per second")
    parser.add_argument(
        "--repair-delay", type=float, default=60.0, help="seconds before a dead BE's replicas are cloned"
    )
    parser.add_argument(
        "--replay-lag", type=float, default=0.0, help="seconds non-master FEs lag behind the master"
    )
    parser.add_argument(
        "--master-failover", action="store_true", help="alive followers elect a new master when it is down"
    )
    parser.add_argument(
        "--decommission-precheck",
        action="store_true",
        help="refuse a DECOMMISSION that leaves fewer BEs than the replication number (newer Doris)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    driver = ImageDriver(
        args.kubeconfig,
        args.namespace,
        args.cluster,
        port=args.port,
        version=args.version,
        cluster_domain=args.cluster_domain,
        fqdn_mode=args.fqdn_mode,
        ephemeral_storage=args.ephemeral_storage,
        replication_num=args.replication_num,
        tablets_per_be=args.tablets_per_be,
        decommission_rate=args.decommission_rate,
        clone_rate=args.clone_rate,
        balance_rate=args.balance_rate,
        repair_delay=args.repair_delay,
        replay_lag=args.replay_lag,
        master_failover=args.master_failover,
        decommission_precheck=args.decommission_precheck,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        driver.start()
    except RuntimeError as err:
        parser.exit(1, f"{err}: {err.__cause__ or 'timed out'}\n")
    print(f"{driver.host}:{driver.port}", flush=True)
    try:
        stop.wait()
    finally:
        driver.stop()


if __name__ == "__main__":
    main()
