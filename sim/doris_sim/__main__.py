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
    parser.add_argument("--tablets-per-be", type=int, default=100, help="tablets a new BE holds")
    parser.add_argument("--decommission-rate", type=float, default=10.0, help="tablets moved per second")
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
        tablets_per_be=args.tablets_per_be,
        decommission_rate=args.decommission_rate,
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
