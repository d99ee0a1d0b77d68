"""The product as the image installs it: a clean venv gets only the hash-locked runtime dependencies
(``pip install --require-hashes -r requirements.lock``) and the wheel of this checkout (``pip wheel
--no-deps .``), nothing else (no dev extra, no simulator, no checkout on the path). Its console script
then runs the operator, ``run`` and ``run --webhook``, against the local control plane and reconciles a
DorisCluster to Ready.  Wheels come from a cache that PyPI fills on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.images import ImageDriver
from harness import ROOT, Kubectl, Operator, eventually, free_port, sample, wait_ready

LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
WHEEL_CACHE = (
    Path(os.environ.get("DORIS_OPERATOR_CACHE") or Path.home() / ".cache" / "doris-operator") / "wheels"
)


def _run(*cmd: str | Path, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _clean_env(venv: Path, home: Path) -> dict[str, str]:
    """No PYTHONPATH (the checkout's src/ and sim/ must not leak in), the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env.update(PATH=f"{venv / 'bin'}:/usr/bin:/bin", HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    return env


def _pip(venv: Path, *args: str | Path, env: dict[str, str]) -> str:
    return _run(venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", *args, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv, built like the Dockerfile's builder stage."""
    tmp = tmp_path_factory.mktemp("install")
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    venv, dist = tmp / "venv", tmp / "dist"
    _run(sys.executable, "-m", "venv", venv)
    env = _clean_env(venv, tmp)
    offline = ("--no-index", "--find-links", str(WHEEL_CACHE))
    for lock in (BUILD_LOCK, LOCK):  # fill the cache from PyPI, hash-checked (a no-op once filled)
        missing = subprocess.run(
            [venv / "bin" / "python", "-m", "pip", "download", "--quiet", "--require-hashes", "--no-deps",
             *offline, "--dest", tmp / "probe", "-r", lock],
            capture_output=True, text=True, env=env, timeout=300, check=False,
        ).returncode  # fmt: skip
        if missing:
            fill = ("download", "--quiet", "--require-hashes", "--no-deps", "--dest", WHEEL_CACHE)
            _pip(venv, *fill, "-r", lock, env=env)
    # the build backend from its lock, then the wheel without build isolation (as the Dockerfile)
    builder = tmp / "builder"
    _run(sys.executable, "-m", "venv", builder)
    _pip(builder, "install", "--quiet", "--require-hashes", "--no-deps", *offline, "-r", BUILD_LOCK, env=env)
    _pip(builder, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", dist, ROOT, env=env)
    (wheel,) = dist.glob("doris_operator-*.whl")
    _pip(venv, "install", "--quiet", "--require-hashes", "--no-deps", *offline, "-r", LOCK, env=env)
    _pip(venv, "install", "--quiet", "--no-deps", wheel, env=env)
    _pip(venv, "check", env=env)
    return venv


def test_the_wheel_holds_only_the_runtime(installed: Path) -> None:
    env = _clean_env(installed, installed.parent)
    python = installed / "bin" / "python"
    where = _run(python, "-c", "import doris_operator; print(doris_operator.__file__)", env=env).strip()
    assert Path(where).is_relative_to(installed), f"imported from {where}, not the venv"
    files = _run(python, "-c", "import importlib.metadata as m; print('\\n'.join(str(f) for f in "
                 "m.files('doris-operator')))", env=env).split()  # fmt: skip
    tops = {f.split("/")[0] for f in files if not f.startswith("..")}
    assert tops == {"doris_operator", "doris_operator-0.1.0.dist-info"}, tops
    for absent in ("doris_sim", "mysql_mimic", "pytest", "harness"):
        probe = subprocess.run([python, "-c", f"import {absent}"], env=env, capture_output=True, check=False)
        assert probe.returncode != 0, f"{absent} is importable in the runtime venv"
    # every module of the package imports with the runtime dependencies alone (the webhook too)
    _run(python, "-c", "import pkgutil, importlib, doris_operator as d\n"
         "for m in pkgutil.walk_packages(d.__path__, 'doris_operator.'):\n"
         "    m.name.endswith('__main__') or importlib.import_module(m.name)",
         env=env)  # fmt: skip
    help_text = _run(installed / "bin" / "doris-operator", "run", "--help", env=env)
    assert "--allow-fe-address-annotation" in help_text


class _CleanRunner:
    """What harness.Operator needs of a cluster (``env()``): the control plane's KUBECONFIG, the clean
    venv's environment."""

    def __init__(self, cluster: Any, venv: Path) -> None:
        self.cluster, self.venv = cluster, venv

    def env(self) -> dict[str, str]:
        env = _clean_env(self.venv, self.venv.parent)
        env["KUBECONFIG"] = str(self.cluster.kubeconfig)
        return env


def _doc(driver: ImageDriver) -> dict[str, Any]:
    doc = sample()
    doc["metadata"].setdefault("annotations", {})[FE_ADDRESS_ANNOTATION] = f"{driver.host}:{driver.port}"
    for comp in ("feSpec", "beSpec"):
        for key in ("requests", "limits"):
            doc["spec"][comp].pop(key, None)
    return doc


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    ns = kubectl.new_namespace("inst")
    yield ns
    kubectl.delete_created_namespaces()


@pytest.mark.cluster
@pytest.mark.parametrize("webhook", [False, True], ids=["run", "run-webhook"])
def test_clean_install_reconciles_to_ready(
    kube_cluster: Any, kubectl: Kubectl, installed: Path, namespace: str, tmp_path: Path, webhook: bool
) -> None:
    ns = namespace
    driver = ImageDriver(kube_cluster.kubeconfig, ns, "doriscluster-sample").start()
    args = ["--resync", "3", "-n", ns, "--allow-fe-address-annotation"]
    name = f"inst-{ns}"
    if webhook:
        port = free_port()
        args += [
            "--webhook", "--webhook-host", "127.0.0.1", "--webhook-port", str(port),
            "--webhook-url", f"https://127.0.0.1:{port}", "--webhook-namespace", ns,
            "--webhook-config-name", name, "--webhook-policy-name", f"{name}-statefulsets",
        ]  # fmt: skip
    op = Operator(_CleanRunner(kube_cluster, installed), tmp_path, *args, name="clean-install")
    op.command = [str(installed / "bin" / "doris-operator")]
    try:
        op.start()
        if webhook:
            eventually(op.ready, 60, what="operator ready with its webhook listening")
            bad = _doc(driver)
            bad["spec"]["beSpec"]["service"] = {  # the same targetPort pinned twice: refused
                "type": "NodePort",
                "servicePorts": [
                    {"nodePort": 31005, "targetPort": 8040},
                    {"nodePort": 31006, "targetPort": 8040},
                ],
            }

            def refused() -> bool:
                result = kube_cluster.kubectl(
                    "apply", "-n", ns, "--dry-run=server", "-f", "-", input=yaml.safe_dump(bad), check=False
                )
                return result.returncode != 0 and "servicePorts[1].targetPort" in result.stderr

            eventually(refused, 30, what="the installed webhook refusing a bad DorisCluster")
        kubectl.apply(_doc(driver), ns)
        st = wait_ready(kubectl, ns, timeout=180)
        assert st["feStatus"]["ready"] == "3/3" and st["beStatus"]["ready"] == "3/3"
        assert op.proc is not None and op.proc.poll() is None
    except AssertionError as err:
        raise AssertionError(f"{err}\n--- operator log ---\n{op.log_tail(60)}") from None
    finally:
        op.stop()
        driver.stop()
        if webhook:
            for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration",
                         "validatingadmissionpolicybinding", "validatingadmissionpolicy"):  # fmt: skip
                obj = name if "webhook" in kind else f"{name}-statefulsets"
                kubectl("delete", kind, obj, "--ignore-not-found", check=False)
    log = op.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "ModuleNotFoundError" not in log, op.log_tail(60)
