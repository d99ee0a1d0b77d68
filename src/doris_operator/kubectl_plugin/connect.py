"""``kubectl doris connect``: a mysql client on the FE, through a port-forward when needed."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any

from ..builders import names
from .common import (
    Kube,
    UsageError,
    credentials,
    fe_address,
    port_forward,
)


def _one_cluster(kube: Kube, name: str | None) -> dict[str, Any]:
    if name:
        return kube.get("dcr", name)
    clusters = kube.list("dcr")
    if len(clusters) != 1:
        found = ", ".join(c["metadata"]["name"] for c in clusters) or "none"
        raise UsageError(f"name the DorisCluster (found in namespace {kube.ns}: {found})")
    return dict(clusters[0])


def cmd_connect(args: argparse.Namespace, kube: Kube) -> int:
    dc = _one_cluster(kube, args.name)
    namespace = dc["metadata"].get("namespace") or kube.ns
    host, port, direct = fe_address(dc, namespace)
    user, password = credentials(kube, dc, namespace)
    forward: list[str] | None = None
    if not direct:
        local = args.local_port if args.local_port is not None else port
        service = names.access_service(dc["metadata"]["name"], "fe")
        forward = ["kubectl", *kube.kubectl_args(), "port-forward", "-n", namespace, f"svc/{service}"]
        forward.append(f"{local}:{port}")
        host, port = "127.0.0.1", local
    mysql = ["mysql", "-h", host, "-P", str(port), "-u", user] + (["-p"] if password else [])
    if args.dry_run:
        if forward:
            print(shlex.join(forward) + " &")
        print(shlex.join(mysql))
        return 0
    if forward:
        with port_forward(forward, port):
            return _run_mysql(mysql, host, port, user, password)
    return _run_mysql(mysql, host, port, user, password)


def _run_mysql(mysql: list[str], host: str, port: int, user: str, password: str) -> int:
    if shutil.which("mysql") is None:
        print(f"mysql client not installed; connect with: host={host} port={port} user={user}")
        if password:
            print("password: from the cluster's authSecret / adminUser")
        if sys.stdin.isatty():
            print("(keeping the connection open; Ctrl-C to stop)")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        return 0
    env = dict(os.environ)
    if password:
        env["MYSQL_PWD"] = password
        mysql = [a for a in mysql if a != "-p"]
    return subprocess.call(mysql, env=env)


# ---------------------------------------------------------------------------------------------
