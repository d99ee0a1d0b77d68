"""A ServiceAccount identity on the local control plane: the account, a ClusterRoleBinding, a token from
``kubectl create token`` and a kubeconfig that uses it, so a test can act as the operator (or as any
other in-cluster client) with kubectl."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import yaml


def _admin_cluster_entry(cluster: Any) -> dict[str, Any]:
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    ctx_name = config.get("current-context")
    ctx = next((c["context"] for c in config.get("contexts", []) if c["name"] == ctx_name), None)
    name = ctx["cluster"] if ctx else config["clusters"][0]["name"]
    entry: dict[str, Any] = next(c["cluster"] for c in config["clusters"] if c["name"] == name)
    return entry


class ServiceAccountIdentity:
    """``system:serviceaccount:<namespace>:<name>`` bound to ``cluster_role`` cluster-wide."""

    def __init__(
        self, cluster: Any, namespace: str, name: str, directory: Path, cluster_role: str = "cluster-admin"
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.binding = f"{namespace}-{name}"
        self.kubeconfig = directory / f"{namespace}-{name}.kubeconfig"
        self.cluster_role = cluster_role

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    def create(self, duration: str = "1h") -> ServiceAccountIdentity:
        k = self.cluster.kubectl
        if k("get", "serviceaccount", self.name, "-n", self.namespace, check=False).returncode != 0:
            k("create", "serviceaccount", self.name, "-n", self.namespace)
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": self.binding},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": self.cluster_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": self.name, "namespace": self.namespace}],
        }
        k("apply", "-f", "-", input=yaml.safe_dump(binding))
        token = k("create", "token", self.name, "-n", self.namespace, f"--duration={duration}").stdout.strip()
        entry = _admin_cluster_entry(self.cluster)
        cluster_entry: dict[str, Any] = {"server": entry["server"]}
        if entry.get("certificate-authority-data"):
            cluster_entry["certificate-authority-data"] = entry["certificate-authority-data"]
        elif entry.get("certificate-authority"):
            ca = Path(entry["certificate-authority"]).read_bytes()
            cluster_entry["certificate-authority-data"] = base64.b64encode(ca).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster_entry}],
            "users": [{"name": self.name, "user": {"token": token}}],
            "contexts": [{"name": self.name, "context": {"cluster": "local", "user": self.name}}],
            "current-context": self.name,
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)
        return self

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """kubectl as this identity (never the admin kubeconfig)."""
        cmd = [str(self.cluster.kubectl_path()), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} as {self.username} failed:\n{proc.stderr}")
        return proc

    def whoami(self) -> str:
        return self.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()

    def delete(self) -> None:
        self.cluster.kubectl("delete", "clusterrolebinding", self.binding, "--ignore-not-found", check=False)
        self.cluster.kubectl(
            "delete", "serviceaccount", self.name, "-n", self.namespace, "--ignore-not-found", check=False
        )
