"""Build promtool and prometheus, and fetch the Prometheus Operator CRDs, from the Go module proxy; cached.

Same pattern as hack/helm.py (and the control plane in hack/localcluster.py):

* ``ensure_prometheus()`` returns the paths of ``promtool`` and ``prometheus`` in
  ``${DORIS_OPERATOR_CACHE:-~/.cache/doris-operator}/prometheus/<PROMETHEUS_VERSION>/bin``; the first call
  builds them with ``GOTOOLCHAIN=local go install`` from ``github.com/prometheus/prometheus`` (module
  versions ``v0.X.Y`` are Prometheus ``3.X.Y``). The build tags keep only the service discoveries we use
  (kubernetes, plus file/http which are always in) and never embed the web UI assets: a cold build takes
  minutes, not tens of minutes.
* ``ensure_prometheus_operator_crds()`` returns a folder with the CRD YAMLs of the Prometheus Operator
  (``example/prometheus-operator-crd/`` of the ``github.com/prometheus-operator/prometheus-operator``
  module zip, downloaded with ``go mod download``).

Both run under a file lock, so concurrent callers (pytest workers, CI, other helpers) build once.

    python hack/prometheus.py          # build/fetch if needed, print the paths
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from localcluster import cache_root, file_lock, go_binary

PROMETHEUS_VERSION = "v0.316.0"
"""Prometheus 3.16.0 (the module's tags are v0.<minor+300>.<patch>)."""
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
PROMETHEUS_TAGS = "remove_all_sd,enable_kubernetes_sd"
"""Only the kubernetes service discovery (the bundled config uses it); file and http are always built in.
Without ``builtinassets`` the web UI is not embedded (we only use the HTTP API)."""

PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
CRD_DIR_IN_MODULE = "example/prometheus-operator-crd"

BUILD_FORMAT = 1
"""Bumped when the way the tools are built changes: a cached build of another format is rebuilt."""

BINARIES = ("promtool", "prometheus")


class PrometheusBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class PrometheusTools:
    promtool: Path
    prometheus: Path
    version: str


def install_dir(version: str = PROMETHEUS_VERSION) -> Path:
    return cache_root() / "prometheus" / version


def crds_dir(version: str = PROMETHEUS_OPERATOR_VERSION) -> Path:
    return cache_root() / "prometheus-operator-crds" / version


def _log(msg: str) -> None:
    print(f"[prometheus] {msg}", file=sys.stderr, flush=True)


def _go_env(gobin: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env.setdefault("CGO_ENABLED", "0")
    if gobin is not None:
        env["GOBIN"] = str(gobin)
    return env


def _stamp(version: str) -> dict[str, object]:
    return {"version": version, "tags": PROMETHEUS_TAGS, "format": BUILD_FORMAT}


def _installed(dest: Path, version: str) -> bool:
    try:
        info = json.loads((dest / "build-info.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(info.get("stamp") == _stamp(version)) and all((dest / "bin" / b).is_file() for b in BINARIES)


def _semver(version: str) -> str:
    """v0.316.0 -> 3.16.0 (what `prometheus --version` prints)."""
    _, minor, patch = version.lstrip("v").split(".", 2)
    m = int(minor)
    return f"{m // 100}.{m % 100}.{patch}"


def _build(version: str, dest: Path, timeout: float) -> None:
    work = dest.parent / f"{dest.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    (work / "bin").mkdir(parents=True)
    common = "github.com/prometheus/common/version"
    ldflags = " ".join(
        [
            "-s -w",
            f"-X {common}.Version={_semver(version)}",
            f"-X {common}.Revision={version}",
            f"-X {common}.Branch=module-proxy",
            f"-X {common}.BuildUser=doris-operator",
        ]
    )
    pkgs = [f"{PROMETHEUS_MODULE}/cmd/{b}@{version}" for b in BINARIES]
    _log(f"building promtool and prometheus {version} into {dest} (a cold build takes several minutes)")
    started = time.monotonic()
    proc = subprocess.run(
        [
            go_binary("promtool and prometheus"),
            "install",
            "-tags",
            PROMETHEUS_TAGS,
            "-ldflags",
            ldflags,
            *pkgs,
        ],
        env=_go_env(work / "bin"),
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise PrometheusBuildError(f"go install prometheus {version} failed:\n{proc.stderr[-4000:]}")
    seconds = round(time.monotonic() - started, 1)
    (work / "build-info.json").write_text(json.dumps({"stamp": _stamp(version), "build_seconds": seconds}))
    shutil.rmtree(dest, ignore_errors=True)
    work.rename(dest)
    _log(f"prometheus {version} built in {seconds}s: {dest / 'bin'}")


def ensure_prometheus(version: str = PROMETHEUS_VERSION, timeout: float = 3600) -> PrometheusTools:
    """Return the paths of promtool and prometheus, building them first unless cached."""
    dest = install_dir(version)
    if not _installed(dest, version):
        with file_lock(dest.parent / f"{dest.name}.lock"):
            if not _installed(dest, version):
                _build(version, dest, timeout)
    return PrometheusTools(dest / "bin" / "promtool", dest / "bin" / "prometheus", version)


def _crds_installed(dest: Path, version: str) -> bool:
    try:
        info = json.loads((dest / "fetch-info.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(info.get("version") == version) and any(dest.glob("*.yaml"))


def _fetch_crds(version: str, dest: Path, timeout: float) -> None:
    work = dest.parent / f"{dest.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _log(f"downloading {PROMETHEUS_OPERATOR_MODULE}@{version} for its CRDs")
    proc = subprocess.run(
        [
            go_binary("the Prometheus Operator CRDs"),
            "mod",
            "download",
            "-json",
            f"{PROMETHEUS_OPERATOR_MODULE}@{version}",
        ],
        env=_go_env(),
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise PrometheusBuildError(
            f"go mod download {PROMETHEUS_OPERATOR_MODULE}@{version} failed:\n{proc.stderr[-4000:]}"
        )
    src = Path(json.loads(proc.stdout)["Dir"]) / CRD_DIR_IN_MODULE
    files = sorted(src.glob("*.yaml"))
    if not files:
        raise PrometheusBuildError(f"no CRD YAMLs in {src}")
    for f in files:
        shutil.copyfile(f, work / f.name)
    (work / "fetch-info.json").write_text(json.dumps({"version": version, "files": [f.name for f in files]}))
    shutil.rmtree(dest, ignore_errors=True)
    work.rename(dest)
    _log(f"Prometheus Operator CRDs {version}: {dest}")


def ensure_prometheus_operator_crds(version: str = PROMETHEUS_OPERATOR_VERSION, timeout: float = 900) -> Path:
    """Return the folder holding the Prometheus Operator CRD YAMLs, fetching them first unless cached."""
    dest = crds_dir(version)
    if not _crds_installed(dest, version):
        with file_lock(dest.parent / f"{dest.name}.lock"):
            if not _crds_installed(dest, version):
                _fetch_crds(version, dest, timeout)
    return dest


def crd_files(version: str = PROMETHEUS_OPERATOR_VERSION) -> list[Path]:
    return sorted(ensure_prometheus_operator_crds(version).glob("*.yaml"))


if __name__ == "__main__":
    crds = ensure_prometheus_operator_crds()
    tools = ensure_prometheus()
    print(tools.promtool)
    print(tools.prometheus)
    print(crds)
