"""Helpers for the tests on the local control plane: the operator as a real process, polling."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD = Path(
    os.environ.get("DORIS_OPERATOR_TEST_CRD")
    or ROOT / "config" / "crd" / "doris.selectdb.com_dorisclusters.yaml"
)
T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 60, interval: float = 0.5, what: str = "") -> T:
    """Poll ``check`` until it returns a truthy value (and return it) or raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except AssertionError as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last {last!r}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Kubectl:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.created: list[str] = []

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = self.cluster.kubectl(*args, input=input, check=check)
        return str(getattr(result, "stdout", result))

    def json(self, *args: str) -> Any:
        return json.loads(self("get", "-o", "json", *args))

    def apply(self, manifest: dict[str, Any] | str, namespace: str) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        self("apply", "-n", namespace, "-f", "-", input=text)

    def patch(
        self, namespace: str, body: str, patch_type: str = "merge", target: str = "dcr/doriscluster-sample"
    ) -> None:
        self("patch", target, "-n", namespace, f"--type={patch_type}", "-p", body)

    def items(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = [kind, "-n", namespace] + (["-l", selector] if selector else [])
        return list(self.json(*args)["items"])

    def new_namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self("create", "namespace", name)
        self.created.append(name)
        return name

    def delete_created_namespaces(self) -> None:
        """Free the fake nodes' capacity for the next test (the samples ask for 42 CPUs)."""
        for name in self.created:
            self("delete", "namespace", name, "--wait=false", check=False)
        self.created.clear()


class Operator:
    """``doris-operator run`` in its own process, as it runs in a pod.  With ``allow_fe_address`` (the
    default) it runs with ``--allow-fe-address-annotation``: the tests point it at the simulated FE on
    127.0.0.1 with the annotation (cluster DNS doesn't resolve here)."""

    def __init__(
        self, cluster: Any, log_dir: Path, *extra: str, name: str = "operator", allow_fe_address: bool = True
    ) -> None:
        self.cluster = cluster
        self.extra = list(extra)
        if allow_fe_address and "--allow-fe-address-annotation" not in self.extra:
            self.extra.append("--allow-fe-address-annotation")
        self.log_path = log_dir / f"{name}.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.command: list[str] = [sys.executable, "-m", "doris_operator"]
        """What runs the operator (a clean install's console script, say)."""

    def start(self) -> Operator:
        env = dict(self.cluster.env())
        env["LOG_LEVEL"] = env.get("LOG_LEVEL", "INFO")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *self.command,
                "run",
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(self.port),
                *self.extra,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        eventually(self.healthy, 30, what="operator /healthz")
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"operator exited {self.proc.returncode}: {self.log_tail()}") from None
            return False

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def writes(self) -> float:
        return sum(
            v
            for k, v in self.metrics().items()
            if k.startswith("doris_operator_api_requests_total")
            and not any(f'verb="{verb}"' in k for verb in ("get", "list"))
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def sample(name: str = "doriscluster-sample.yaml") -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    return doc


def status(kubectl: Kubectl, namespace: str, name: str = "doriscluster-sample") -> dict[str, Any]:
    return dict(kubectl.json("dcr", name, "-n", namespace).get("status") or {})


def wait_ready(
    kubectl: Kubectl, namespace: str, name: str = "doriscluster-sample", timeout: float = 120
) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        """Ready for the spec as it is now: a status written before the last change (the operator has
        applied the change but not yet written its status) does not count."""
        obj = kubectl.json("dcr", name, "-n", namespace)
        st = dict(obj.get("status") or {})
        fresh = st.get("observedGeneration") == obj["metadata"].get("generation")
        return st if st.get("phase") == "Ready" and fresh else None

    return eventually(ready, timeout, what=f"{namespace}/{name} Ready")


def names_of(kubectl: Kubectl, kind: str, namespace: str) -> set[str]:
    return {o["metadata"]["name"] for o in kubectl.items(kind, namespace)}
