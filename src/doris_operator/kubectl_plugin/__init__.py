"""``kubectl doris``: a kubectl plugin for the clusters this operator runs.

Commands: ``status``, ``error-url``, ``connect`` and ``debug on|off``; see docs/kubectl-doris.md.
Exit codes: 0 success, 1 a failure at run time (not found, unreachable), 2 a usage error (bad URL,
bad option).

Modules: ``common`` (errors, the Kubernetes client, transport overrides, the FE endpoint and credentials
through :mod:`doris_operator.access`), ``error_url``, ``status``, ``connect``, ``debug``; this module is
the command line (the ``kubectl-doris`` entry point).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .common import (
    DEBUG_ANNOTATION,
    VIAS,
    Kube,
    PluginError,
    UsageError,
    credentials,
    fe_address,
    fetch,
    parse_resolve,
    resolve,
)
from .connect import cmd_connect
from .debug import cmd_debug
from .error_url import (
    ErrorUrl,
    Rewrite,
    cmd_error_url,
    debug_service,
    node_address,
    parse_error_url,
    plan_error_url,
    via_pod_ip,
)
from .status import cluster_status, cmd_status, monitor_status, render_status

__all__ = [
    "DEBUG_ANNOTATION",
    "ErrorUrl",
    "Kube",
    "PluginError",
    "Rewrite",
    "UsageError",
    "cluster_status",
    "cmd_connect",
    "cmd_debug",
    "cmd_error_url",
    "cmd_status",
    "credentials",
    "debug_service",
    "fe_address",
    "fetch",
    "main",
    "monitor_status",
    "node_address",
    "parse_error_url",
    "parse_resolve",
    "parser",
    "plan_error_url",
    "render_status",
    "resolve",
    "run",
    "via_pod_ip",
]

# CLI


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config)")
    common.add_argument("--context", help="kubeconfig context")
    common.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    p = argparse.ArgumentParser(
        prog="kubectl doris",
        description="Inspect and reach the Doris clusters of doris-operator (docs/kubectl-doris.md).",
        epilog="Exit status: 0 done, 1 failed (not found, unreachable), 2 usage error.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("status", parents=[common], help="components, members and access endpoints")
    s.add_argument("name", nargs="?", help="DorisCluster (default: every one in the namespace)")
    s.add_argument("-o", "--output", choices=("table", "json"), default="table")
    s.add_argument("--no-members", action="store_true", help="don't ask the FE for its members")
    s.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT=ADDR:PORT",
        help="reach the FE at ADDR:PORT instead of HOST:PORT (repeatable)",
    )

    e = sub.add_parser("error-url", parents=[common], help="rewrite a BE ErrorURL to one you can open")
    e.add_argument("url", help="the ErrorURL / tracking_url Doris returned")
    e.add_argument(
        "--via",
        choices=VIAS,
        default="auto",
        help="how to reach the pod (auto: pod-ip in a pod, else by the BE Service type, else port-forward)",
    )
    e.add_argument("--fetch", action="store_true", help="GET it and print the error log")
    e.add_argument("--local-port", type=int, help="port-forward: local port (default: the URL's port)")
    e.add_argument("--node", help="nodeport: use this node's address")
    e.add_argument(
        "--expose",
        action="store_true",
        help="create a NodePort/LoadBalancer Service for this pod only (the access Service spans all BEs)",
    )
    e.add_argument("-o", "--output", choices=("text", "json"), default="text")
    e.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT=ADDR:PORT",
        help="--fetch: connect to ADDR:PORT for HOST:PORT (repeatable)",
    )

    c = sub.add_parser("connect", parents=[common], help="a mysql session to the FE query port")
    c.add_argument("name", nargs="?", help="DorisCluster (default: the namespace's only one)")
    c.add_argument("--local-port", type=int, help="local port of the port-forward (default 9030)")
    c.add_argument("--dry-run", action="store_true", help="print the commands only")

    d = sub.add_parser("debug", parents=[common], help="debug mode of a Doris pod")
    d.add_argument("mode", choices=("on", "off"))
    d.add_argument("pod", help="a Doris pod, e.g. doriscluster-sample-be-0")
    d.add_argument("-y", "--yes", action="store_true", help="off: don't ask before deleting the pod")
    return p


def _fail(message: str, code: int) -> NoReturn:
    print(f"kubectl-doris: {message}", file=sys.stderr)
    raise SystemExit(code)


def run(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    kube = Kube(args.kubeconfig, args.context, args.namespace)
    if args.kubeconfig and not Path(args.kubeconfig).exists():
        raise UsageError(f"--kubeconfig {args.kubeconfig}: no such file")
    commands = {"status": cmd_status, "error-url": cmd_error_url, "connect": cmd_connect, "debug": cmd_debug}
    return commands[args.command](args, kube)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except PluginError as err:
        _fail(str(err), err.code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
