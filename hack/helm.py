"""Build helm from the Go module proxy (like hack/localcluster.py builds the control plane), cached.

``ensure_helm()`` returns the path of a helm binary at
``${DORIS_OPERATOR_CACHE:-~/.cache/doris-operator}/helm/<HELM_VERSION>/bin/helm``; the first call builds
it with ``GOTOOLCHAIN=local go install helm.sh/helm/v3/cmd/helm@<HELM_VERSION>`` (a few minutes), under a
file lock so that concurrent callers build it once.

    python hack/helm.py          # build if needed, print the path
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from localcluster import cache_root, file_lock, go_binary

HELM_VERSION = "v3.22.0"
HELM_MODULE = "helm.sh/helm/v3"


class HelmError(RuntimeError):
    pass


def install_dir(version: str = HELM_VERSION) -> Path:
    return cache_root() / "helm" / version


def _log(msg: str) -> None:
    print(f"[helm] {msg}", file=sys.stderr, flush=True)


BUILD_FORMAT = 2
"""Bumped when the way helm is built changes: a cached binary of another format is rebuilt."""


def _go_env(gobin: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env.setdefault("CGO_ENABLED", "0")
    if gobin is not None:
        env["GOBIN"] = str(gobin)
    return env


def _kube_minor(version: str, cwd: Path, timeout: float) -> tuple[str, str]:
    """The Kubernetes version helm's client-go stands for (helm's Makefile passes it as ldflags; without
    it `helm template` assumes Kubernetes v1.20)."""
    proc = subprocess.run(
        [go_binary("helm"), "mod", "download", "-json", f"{HELM_MODULE}@{version}"],
        env=_go_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise HelmError(f"go mod download {HELM_MODULE}@{version} failed:\n{proc.stderr[-4000:]}")
    gomod = Path(json.loads(proc.stdout)["GoMod"]).read_text()
    m = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.", gomod, re.M)
    if not m:
        raise HelmError(f"no k8s.io/client-go in the go.mod of {HELM_MODULE}@{version}")
    return "1", m.group(1)


def _stamp(version: str) -> dict[str, object]:
    return {"version": version, "format": BUILD_FORMAT}


def _installed(dest: Path, version: str) -> bool:
    try:
        info = json.loads((dest / "build-info.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(info == _stamp(version)) and (dest / "bin" / "helm").is_file()


def _build(version: str, dest: Path, timeout: float) -> None:
    work = dest.parent / f"{dest.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    (work / "bin").mkdir(parents=True)
    env = _go_env(work / "bin")
    major, minor = _kube_minor(version, work, timeout)
    ldflags = " ".join(
        [f"-s -w -X helm.sh/helm/v3/internal/version.version={version}"]
        + [
            f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
            for pkg in ("lint/rules", "chartutil")
            for part, value in (("Major", major), ("Minor", minor))
        ]
    )
    _log(f"building helm {version} into {dest} (takes a few minutes)")
    proc = subprocess.run(
        [go_binary("helm"), "install", "-ldflags", ldflags, f"{HELM_MODULE}/cmd/helm@{version}"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise HelmError(f"go install helm {version} failed:\n{proc.stderr[-4000:]}")
    (work / "build-info.json").write_text(json.dumps(_stamp(version)))
    shutil.rmtree(dest, ignore_errors=True)
    work.rename(dest)
    _log(f"helm {version} built: {dest / 'bin' / 'helm'}")


def ensure_helm(version: str = HELM_VERSION, timeout: float = 1800) -> Path:
    """Return the path of the helm binary, building it first unless cached."""
    dest = install_dir(version)
    helm = dest / "bin" / "helm"
    if _installed(dest, version):
        return helm
    with file_lock(dest.parent / f"{dest.name}.lock"):
        if not _installed(dest, version):
            _build(version, dest, timeout)
    return helm


if __name__ == "__main__":
    print(ensure_helm())
