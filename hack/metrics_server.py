"""A real metrics-server (built from sigs.k8s.io/metrics-server, hack/gotool.py) for the local control plane.

It runs as a process on 127.0.0.1 and is registered as the ``v1beta1.metrics.k8s.io`` APIService, so
``kubectl top``, the HPA controller in kube-controller-manager and the operator read pod usage through
the apiserver as on a real cluster. The usage comes from kwok: every fake node serves the kubelet's
``/metrics/resource`` at its ``metrics.k8s.io/resource-metrics-path`` annotation (hack/localcluster.py),
and a pod's usage is its ``kwok.x-k8s.io/usage-cpu`` / ``kwok.x-k8s.io/usage-memory`` annotation.

Everything stays on loopback: the fake nodes' InternalIP is 127.0.0.1, and the APIService's Service is
an ExternalName for 127.0.0.1 (the aggregator dials ExternalName Services by name).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import localcluster
from gotool import METRICS_SERVER

USAGE_CPU_ANNOTATION = "kwok.x-k8s.io/usage-cpu"
USAGE_MEMORY_ANNOTATION = "kwok.x-k8s.io/usage-memory"
APISERVICE = "v1beta1.metrics.k8s.io"


class MetricsServer:
    """``with MetricsServer(cluster) as ms:`` starts metrics-server against ``cluster`` (a started
    :class:`localcluster.LocalCluster`) and waits until the metrics API answers."""

    def __init__(self, cluster: localcluster.LocalCluster, resolution: str = "10s") -> None:
        self.cluster = cluster
        self.resolution = resolution
        self.port = localcluster._free_ports(1)[0]
        self.log_path = cluster.state_dir / "logs" / "metrics-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> MetricsServer:
        binary = METRICS_SERVER.ensure() / "metrics-server"
        pki = self.cluster.state_dir / "pki"
        kubeconfig = str(self.cluster.kubeconfig)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={self.port}",
                    f"--tls-cert-file={pki / 'serving.crt'}",
                    f"--tls-private-key-file={pki / 'serving.key'}",
                    f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                    f"--kubelet-client-certificate={pki / 'admin.crt'}",
                    f"--kubelet-client-key={pki / 'admin.key'}",
                    "--kubelet-preferred-address-types=InternalIP",
                    "--kubelet-use-node-status-port",
                    f"--metric-resolution={self.resolution}",
                    "--kubelet-request-timeout=5s",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=localcluster._set_pdeathsig,
            )
        self.cluster.apply(self._registration())
        deadline = time.monotonic() + timeout
        while not self.serving():
            if self.proc.poll() is not None:
                raise RuntimeError(f"metrics-server exited {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the metrics API did not answer within {timeout}s: {self.log_tail()}")
            time.sleep(1)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.cluster.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.proc = None

    def serving(self) -> bool:
        """The APIService is Available: the aggregator reaches metrics-server (pod metrics follow once
        it has scraped twice)."""
        result = self.cluster.kubectl("get", "apiservice", APISERVICE, "-o", "json", check=False)
        if getattr(result, "returncode", 1) != 0:
            return False
        conditions = (json.loads(result.stdout).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)

    def scraped_node(self) -> str | None:
        """A node whose pods metrics-server gets usage for: kwok plays it and serves its resource
        metrics, it is Ready and schedulable, and it is one of the first made (the oldest).  Tests
        before may have deleted and re-created a node, or stopped kwok playing one, so a pod the
        scheduler puts anywhere may sit where nothing is scraped.  None: no such node."""
        result = self.cluster.kubectl("get", "nodes", "-o", "json", check=False)
        if getattr(result, "returncode", 1) != 0:
            return None
        fit = []
        for node in json.loads(result.stdout).get("items") or []:
            meta, status = node["metadata"], node.get("status") or {}
            notes = meta.get("annotations") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            )
            played = localcluster.FAKE_NODE_ANNOTATION in notes
            served = localcluster.RESOURCE_METRICS_PATH_ANNOTATION in notes
            if ready and played and served and not (node.get("spec") or {}).get("unschedulable"):
                fit.append((meta.get("creationTimestamp") or "", meta["name"]))
        return min(fit)[1] if fit else None

    def pod_usage(self, namespace: str, pod: str) -> dict[str, Any] | None:
        result = self.cluster.kubectl(
            "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{pod}", check=False
        )
        if getattr(result, "returncode", 1) != 0:
            return None
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def log_tail(self, lines: int = 30) -> str:
        return localcluster._tail(Path(self.log_path), lines)

    def _registration(self) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "metrics-server", "namespace": "kube-system"},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "127.0.0.1",
                    "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}],
                },
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": APISERVICE},
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                    # the serving certificate names 127.0.0.1, not metrics-server.kube-system.svc
                    "insecureSkipTLSVerify": True,
                    "service": {"name": "metrics-server", "namespace": "kube-system", "port": self.port},
                },
            },
        ]
