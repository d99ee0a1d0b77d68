#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, built from Go modules, for tests and local runs.

Components (all bound to 127.0.0.1 on free ports chosen at start):

* etcd (hack/etcd: a wrapper around ``go.etcd.io/etcd/server/v3/etcdmain``)
* kube-apiserver, kube-controller-manager, kube-scheduler and kubectl (hack/kube: one multi-call
  binary built from ``k8s.io/kubernetes`` with every staging module replaced by its v0.X.Y release)
* kwok (hack/kwok: ``sigs.k8s.io/kwok/cmd/kwok``), which makes fake nodes Ready and the pods bound
  to them Running and Ready.

Pinned versions live in ``hack/versions.env``; ``pin`` rewrites the go.mod files from it.
Binaries are cached outside the repo in ``${DORIS_OPERATOR_CACHE:-~/.cache/doris-operator}/kube/``.

CLI::

    python hack/localcluster.py build|pin|up|down|status|env [--state-dir DIR] [--nodes N]
                                                              [--pod-ready-delay S]

Only the standard library, ``cryptography`` and PyYAML are used.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import http.client
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

HACK_DIR = Path(__file__).resolve().parent
REPO_ROOT = HACK_DIR.parent
VERSIONS_FILE = HACK_DIR / "versions.env"
DEFAULT_STATE_DIR = REPO_ROOT / ".tmp" / "cluster"

KUBE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
BINARIES = ("kube", *KUBE_COMPONENTS, "etcd", "kwok")
# kwok Stage files copied from the kwok module at build time (path inside the module).
KWOK_STAGES = {
    "node-initialize": "kustomize/stage/node/fast/node-initialize.yaml",
    "node-heartbeat-with-lease": "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod-ready": "kustomize/stage/pod/fast/pod-ready.yaml",
    "pod-complete": "kustomize/stage/pod/fast/pod-complete.yaml",
    "pod-delete": "kustomize/stage/pod/fast/pod-delete.yaml",
}
# kwok's emulation of the kubelet's /metrics/resource per node, and pod usage read from pod annotations
# (kwok.x-k8s.io/usage-cpu, kwok.x-k8s.io/usage-memory): what metrics-server scrapes (hack/metrics_server.py)
KWOK_METRICS = {
    "metrics-resource": "kustomize/metrics/resource/metrics-resource.yaml",
    "usage-from-annotation": "kustomize/metrics/usage/usage-from-annotation.yaml",
}
RESOURCE_METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
POD_READY_DELAY_ANNOTATION = "pod-ready.stage.kwok.x-k8s.io/delay"
READINESS_GATES_ANNOTATION = "doris.test/kwok-readiness-gates"
"""On a pod: ``leave`` makes kwok leave its readiness gates unset (a real kubelet never sets them; kwok's
stock stage sets them True at start, which keeps tests without anyone setting gates working)."""

# The kubelet's rule kwok does not model: Ready is ContainersReady and every readiness gate True.
_GATES_STATE = (
    "[(.spec.readinessGates // [])[].conditionType as $t | ((.status.conditions // []) | "
    'map(select(.type == $t and .status == "True")) | length) > 0] | '
    'if length == 0 then "none" else (all | tostring) end'
)
_CONTAINERS_READY = (
    '[(.status.conditions // [])[] | select(.type == "ContainersReady") | .status] | (.[0] // "")'
)
_READY_STATUS = '[(.status.conditions // [])[] | select(.type == "Ready") | .status] | (.[0] // "Unknown")'


def _gate_stage(name: str, gates: str, ready_in: list[str], ready: str) -> dict[str, Any]:
    reason = "" if ready == "True" else "\n  reason: ReadinessGatesNotReady"
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                    {"key": _GATES_STATE, "operator": "In", "values": [gates]},
                    {"key": _READY_STATUS, "operator": "In", "values": ready_in},
                    *(
                        [{"key": _CONTAINERS_READY, "operator": "In", "values": ["True"]}]
                        if ready == "True"
                        else []
                    ),
                ]
            },
            "next": {
                "statusTemplate": (
                    'conditions:\n- type: Ready\n  status: "'
                    + ready
                    + '"'
                    + reason
                    + "\n  lastTransitionTime: {{ Now | Quote }}\n"
                )
            },
        },
    }


def _honest_gates(template: str) -> str:
    """kwok's pod-ready template, leaving readiness gates (and so Ready) alone on annotated pods."""
    leave = (
        "{{ $leave := false }}{{ with .metadata.annotations }}{{ if eq (print (index . "
        f'"{READINESS_GATES_ANNOTATION}")) "leave" }}}}{{{{ $leave = true }}}}{{{{ end }}}}{{{{ end }}}}\n'
    )
    ready_old = 'status: "True"\n  type: Ready\n'
    ready_new = (
        'status: {{ if and $leave .spec.readinessGates }}"False"{{ else }}"True"{{ end }}\n  type: Ready\n'
    )
    gates_old = "{{ range .spec.readinessGates }}"
    gates_new = "{{ if not $leave }}{{ range .spec.readinessGates }}"
    gates_end_old = "type: {{ .conditionType | Quote }}\n{{ end }}"
    gates_end_new = "type: {{ .conditionType | Quote }}\n{{ end }}{{ end }}"
    for old in (ready_old, gates_old, gates_end_old):
        if old not in template:
            raise ClusterError(f"kwok's pod-ready stage changed: {old!r} not found")
    template = template.replace(ready_old, ready_new, 1).replace(gates_old, gates_new, 1)
    return leave + template.replace(gates_end_old, gates_end_new, 1)


FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"

# Virtual address ranges: only ever stored in objects (Service cluster IPs, fake pod IPs); nothing
# here listens on or connects to them. Every real socket is on 127.0.0.1.
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
NODE_IP = "127.0.0.1"

# Order matters: started in this order, stopped in reverse.
PROCESS_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ClusterError(RuntimeError):
    """The local cluster could not be built, started, reached or stopped."""


def _log(msg: str) -> None:
    print(f"[localcluster] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# versions, cache and build
# --------------------------------------------------------------------------------------------


def load_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KUBE_VERSION, ETCD_VERSION, KWOK_VERSION from hack/versions.env."""
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        versions[key.strip()] = value.strip().strip("'\"")
    for key in ("KUBE_VERSION", "ETCD_VERSION", "KWOK_VERSION"):
        if not re.fullmatch(r"v\d+\.\d+\.\d+", versions.get(key, "")):
            raise ClusterError(f"{path}: {key} missing or not a vX.Y.Z version")
    return versions


def staging_version(kube_version: str) -> str:
    """k8s.io/kubernetes v1.35.8 -> the staging modules' v0.35.8."""
    return "v0" + kube_version[len("v1") :]


def cache_root() -> Path:
    return Path(os.environ.get("DORIS_OPERATOR_CACHE") or Path.home() / ".cache" / "doris-operator")


def build_key(versions: dict[str, str] | None = None) -> str:
    v = versions or load_versions()
    return f"{v['KUBE_VERSION']}-{v['ETCD_VERSION']}-{v['KWOK_VERSION']}"


def install_dir(versions: dict[str, str] | None = None) -> Path:
    return cache_root() / "kube" / build_key(versions)


def bin_dir(versions: dict[str, str] | None = None) -> Path:
    return install_dir(versions) / "bin"


def _source_digest() -> str:
    """Hash of the wrapper modules: a change rebuilds even when the versions did not change."""
    h = hashlib.sha256()
    for sub in ("kube", "etcd", "kwok"):
        for f in sorted((HACK_DIR / sub).glob("*")):
            if f.suffix in (".go", ".mod", ".sum"):
                h.update(f"{sub}/{f.name}\0".encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def go_binary(purpose: str = "the local control plane") -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not go:
        raise ClusterError(f"the Go toolchain ('go') is needed to build {purpose}")
    return go


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly").strip()
    env.setdefault("CGO_ENABLED", "0")
    return env


def _run_go(args: Sequence[str], cwd: Path, timeout: float = 600) -> str:
    proc = subprocess.run(
        [go_binary(), *args], cwd=cwd, env=_go_env(), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise ClusterError(f"go {' '.join(args)} (in {cwd}) failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


def check_pins(versions: dict[str, str] | None = None) -> None:
    """Fail if hack/{kube,etcd,kwok}/go.mod disagree with hack/versions.env."""
    v = versions or load_versions()
    kube_mod = (HACK_DIR / "kube" / "go.mod").read_text()
    problems = []
    if not re.search(
        rf"^\s*(require\s+)?k8s\.io/kubernetes {re.escape(v['KUBE_VERSION'])}\s*$", kube_mod, re.M
    ):
        problems.append(f"hack/kube/go.mod does not require k8s.io/kubernetes {v['KUBE_VERSION']}")
    sv = staging_version(v["KUBE_VERSION"])
    replaced = re.findall(r"^\s*(?:replace\s+)?(k8s\.io/\S+) => (\S+) (\S+)\s*$", kube_mod, re.M)
    if not replaced:
        problems.append("hack/kube/go.mod has no k8s.io staging replace directives")
    for mod, target, ver in replaced:
        if target != mod or ver != sv:
            problems.append(f"hack/kube/go.mod replaces {mod} with {target} {ver}, want {mod} {sv}")
    etcd_mod = (HACK_DIR / "etcd" / "go.mod").read_text()
    if not re.search(rf"go\.etcd\.io/etcd/server/v3 {re.escape(v['ETCD_VERSION'])}\b", etcd_mod):
        problems.append(f"hack/etcd/go.mod does not require go.etcd.io/etcd/server/v3 {v['ETCD_VERSION']}")
    kwok_mod = (HACK_DIR / "kwok" / "go.mod").read_text()
    if not re.search(rf"sigs\.k8s\.io/kwok {re.escape(v['KWOK_VERSION'])}\b", kwok_mod):
        problems.append(f"hack/kwok/go.mod does not require sigs.k8s.io/kwok {v['KWOK_VERSION']}")
    if problems:
        raise ClusterError(
            "hack/versions.env and the go.mod files disagree (run `python hack/localcluster.py pin`):\n  "
            + "\n  ".join(problems)
        )


def pin() -> None:
    """Rewrite hack/{kube,etcd,kwok}/go.mod (+ go.sum) from hack/versions.env via the Go proxy."""
    v = load_versions()
    kube_dir = HACK_DIR / "kube"
    info = json.loads(
        _run_go(["mod", "download", "-json", f"k8s.io/kubernetes@{v['KUBE_VERSION']}"], kube_dir)
    )
    upstream_mod = (Path(info["Dir"]) / "go.mod").read_text()
    block = re.search(r"^replace \((.*?)^\)", upstream_mod, re.S | re.M)
    if not block:
        raise ClusterError(f"no replace block in k8s.io/kubernetes@{v['KUBE_VERSION']} go.mod")
    staging = re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", block.group(1), re.M)
    sv = staging_version(v["KUBE_VERSION"])
    _run_go(["mod", "edit", f"-require=k8s.io/kubernetes@{v['KUBE_VERSION']}"], kube_dir)
    # Replace our old replace directives wholesale (a staging module may have come or gone upstream).
    text = (kube_dir / "go.mod").read_text()
    text = re.sub(r"^replace \(.*?^\)\n?", "", text, flags=re.S | re.M)
    text = re.sub(r"^replace [^(\n].*\n?", "", text, flags=re.M)
    text = re.sub(r"\n{3,}", "\n\n", text).rstrip("\n")
    text += "\n\nreplace (\n" + "".join(f"\t{m} => {m} {sv}\n" for m in staging) + ")\n"
    (kube_dir / "go.mod").write_text(text)
    _log(f"hack/kube: k8s.io/kubernetes {v['KUBE_VERSION']}, {len(staging)} staging modules -> {sv}")
    for sub, mod in (
        ("etcd", f"go.etcd.io/etcd/server/v3@{v['ETCD_VERSION']}"),
        ("kwok", f"sigs.k8s.io/kwok@{v['KWOK_VERSION']}"),
        ("kube", None),
    ):
        env = _go_env()
        env["GOFLAGS"] = env["GOFLAGS"].replace("-mod=readonly", "")
        cmds = ([["get", mod]] if mod else []) + [["mod", "tidy"]]
        for args in cmds:
            proc = subprocess.run(
                [go_binary(), *args], cwd=HACK_DIR / sub, env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise ClusterError(f"go {' '.join(args)} in hack/{sub} failed:\n{proc.stderr[-4000:]}")
        _log(f"hack/{sub}: go.mod/go.sum updated")
    check_pins(v)


def _kube_ldflags(kube_version: str, build_date: str) -> str:
    major, minor = kube_version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={kube_version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={build_date}",
        ]
    return " ".join(flags)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (one build at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another process holding {path} (building?)")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _copy_kwok_metrics(share: Path, kwok_dir: str | None = None) -> Path:
    """kwok's metrics and usage configurations, from the kwok module (a cache built before they were
    copied at build time gets them on first use)."""
    out = share / "kwok-metrics"
    if all((out / f"{name}.yaml").is_file() for name in KWOK_METRICS):
        return out
    if kwok_dir is None:
        kwok_dir = json.loads(_run_go(["list", "-m", "-json", "sigs.k8s.io/kwok"], HACK_DIR / "kwok"))["Dir"]
    partial = share / "kwok-metrics.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, rel in KWOK_METRICS.items():
        shutil.copyfile(Path(kwok_dir) / rel, partial / f"{name}.yaml")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


def _installed(dest: Path, digest: str) -> bool:
    stamp = dest / "build-info.json"
    if not stamp.is_file():
        return False
    try:
        info = json.loads(stamp.read_text())
    except ValueError:
        return False
    return info.get("source_digest") == digest and all((dest / "bin" / b).exists() for b in BINARIES)


def ensure_binaries(force: bool = False) -> Path:
    """Build etcd, the kube multi-call binary (+ symlinks) and kwok unless cached; return the bin dir.

    Cached at ``${DORIS_OPERATOR_CACHE:-~/.cache/doris-operator}/kube/<k8s>-<etcd>-<kwok>/bin``.
    A file lock keeps two processes from building at once.
    """
    versions = load_versions()
    dest = install_dir(versions)
    digest = _source_digest()
    if not force and _installed(dest, digest):
        return dest / "bin"
    with file_lock(dest.parent / f"{dest.name}.lock"):
        if not force and _installed(dest, digest):
            return dest / "bin"
        check_pins(versions)
        _build(versions, dest, digest)
    return dest / "bin"


def _build(versions: dict[str, str], dest: Path, digest: str) -> None:
    work = dest.parent / f"{dest.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    (work / "bin").mkdir(parents=True)
    (work / "logs").mkdir()
    (work / "share" / "kwok-stages").mkdir(parents=True)
    _log(f"building the local control plane {build_key(versions)} into {dest} (this takes a while)")
    start = time.monotonic()
    kube_info = json.loads(_run_go(["list", "-m", "-json", "k8s.io/kubernetes"], HACK_DIR / "kube"))
    build_date = kube_info.get("Time", "1970-01-01T00:00:00Z")
    out = work / "bin"
    jobs: dict[str, tuple[Path, list[str]]] = {
        "kube": (
            HACK_DIR / "kube",
            [
                "build",
                "-trimpath",
                f"-ldflags={_kube_ldflags(versions['KUBE_VERSION'], build_date)}",
                "-o",
                str(out / "kube"),
                ".",
            ],
        ),
        "etcd": (
            HACK_DIR / "etcd",
            [
                "build",
                "-trimpath",
                f"-ldflags=-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={versions['ETCD_VERSION']}",
                "-o",
                str(out / "etcd"),
                ".",
            ],
        ),
        "kwok": (
            HACK_DIR / "kwok",
            ["build", "-trimpath", "-ldflags=-s -w", "-o", str(out / "kwok"), "sigs.k8s.io/kwok/cmd/kwok"],
        ),
    }
    # The three builds share the 2 cores; running them together overlaps the single-threaded links.
    procs: dict[str, tuple[subprocess.Popen[bytes], Any, float]] = {}
    for name, (cwd, args) in jobs.items():
        logf = open(work / "logs" / f"build-{name}.log", "wb")  # noqa: SIM115 - closed below
        _log(f"  go {' '.join(args[:1] + args[-1:])}  (in {cwd.relative_to(REPO_ROOT)}, log {logf.name})")
        procs[name] = (
            subprocess.Popen(
                [go_binary(), *args], cwd=cwd, env=_go_env(), stdout=logf, stderr=subprocess.STDOUT
            ),
            logf,
            time.monotonic(),
        )
    failed = []
    durations = {}
    pending = dict(procs)
    last_report = time.monotonic()
    while pending:
        for name, (proc, logf, t0) in list(pending.items()):
            rc = proc.poll()
            if rc is None:
                continue
            logf.close()
            durations[name] = round(time.monotonic() - t0, 1)
            del pending[name]
            if rc == 0:
                _log(f"  built {name} in {durations[name]:.0f}s")
            else:
                failed.append(name)
                _log(f"  building {name} FAILED (exit {rc}):\n{_tail(Path(logf.name), 40)}")
        if pending and time.monotonic() - last_report > 60:
            last_report = time.monotonic()
            _log(f"  still building {', '.join(pending)} ({time.monotonic() - start:.0f}s elapsed)")
        time.sleep(0.5)
    if failed:
        raise ClusterError(f"building {', '.join(failed)} failed; logs in {work / 'logs'}")
    for comp in KUBE_COMPONENTS:
        (out / comp).symlink_to("kube")
    kwok_info = json.loads(_run_go(["list", "-m", "-json", "sigs.k8s.io/kwok"], HACK_DIR / "kwok"))
    for name, rel in KWOK_STAGES.items():
        shutil.copyfile(Path(kwok_info["Dir"]) / rel, work / "share" / "kwok-stages" / f"{name}.yaml")
    _copy_kwok_metrics(work / "share", kwok_info["Dir"])
    total = round(time.monotonic() - start, 1)
    (work / "build-info.json").write_text(
        json.dumps(
            {
                "versions": versions,
                "source_digest": digest,
                "go": subprocess.run([go_binary(), "version"], capture_output=True, text=True).stdout.strip(),
                "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "seconds": {"total": total, **durations},
            },
            indent=2,
        )
        + "\n"
    )
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(work, dest)
    _log(f"built the local control plane in {total:.0f}s -> {dest / 'bin'}")


# --------------------------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------------------------


def _write_pki(pki: Path) -> dict[str, Path]:
    """CA, apiserver/component serving cert, client certs and the service-account key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=365)
    paths: dict[str, Path] = {}

    def save_key(name: str, key: Any) -> None:
        p = pki / f"{name}.key"
        p.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        p.chmod(0o600)
        paths[f"{name}.key"] = p

    def save_cert(name: str, cert: Any) -> None:
        p = pki / f"{name}.crt"
        p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}.crt"] = p

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doris-operator-local-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    save_key("ca", ca_key)
    save_cert("ca", ca_cert)

    def issue(name: str, cn: str, orgs: Sequence[str] = (), server: bool = False) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                    if server
                    else [ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.DNSName("kubernetes.default.svc.cluster.local"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address(KUBERNETES_SERVICE_IP)),
                    ]
                ),
                critical=False,
            )
        save_key(name, key)
        save_cert(name, builder.sign(ca_key, hashes.SHA256()))

    issue("serving", "kube-apiserver", server=True)
    issue("admin", "kubernetes-admin", orgs=["system:masters"])
    issue("kube-controller-manager", "system:kube-controller-manager")
    issue("kube-scheduler", "system:kube-scheduler")
    issue("kwok", "kwok-controller", orgs=["system:masters"])
    issue("front-proxy-client", "front-proxy-client")

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    save_key("sa", sa_key)
    sa_pub = pki / "sa.pub"
    sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    paths["sa.pub"] = sa_pub
    return paths


def _kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [
            {"name": user, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}
        ],
        "contexts": [
            {"name": "local", "context": {"cluster": "local", "user": user, "namespace": "default"}}
        ],
        "current-context": "local",
    }


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(data.splitlines()[-lines:])


def _proc_start_time(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot), to recognise a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # zombie: as good as gone
        return None
    return fields[19]


def _alive(pid: int, start_time: str | None) -> bool:
    current = _proc_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def _signal(pid: int, sig: int) -> None:
    """Signal the process group the process leads (it started its own session), else the process."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the Python process that started us
    except Exception:
        pass


class LocalCluster:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on 127.0.0.1.

    Attributes once started: ``server`` (https URL), ``kubeconfig`` (admin kubeconfig path),
    ``ca_file``, ``token`` (admin bearer token), ``node_names``, ``state_dir``, ``bin_dir``.
    """

    def __init__(
        self,
        state_dir: str | Path | None = None,
        nodes: int = 3,
        pod_ready_delay: float = 0.0,
        *,
        detached: bool = False,
        start_timeout: float = 180.0,
        stop_timeout: float = 15.0,
        verbosity: int = 0,
        controller_manager_args: Sequence[str] = (),
        audit_log: str | Path | None = None,
        pods_per_node: int = 110,
    ) -> None:
        if not 1 <= nodes <= 20:
            raise ValueError("nodes must be between 1 and 20")
        if not 1 <= pods_per_node <= 1000:
            raise ValueError("pods_per_node must be between 1 and 1000")
        self._own_state_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="localcluster-"))
        self.nodes = nodes
        self.pod_ready_delay = float(pod_ready_delay)
        self.detached = detached
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.verbosity = verbosity
        self.controller_manager_args = list(controller_manager_args)  # extra flags, after ours
        self.audit_log = Path(audit_log).resolve() if audit_log else None
        """Opt-in apiserver audit log (JSON lines, level Metadata, no RequestReceived stage): who sent
        which request, for benchmarks (bench/scale.py). Off by default."""
        self.pods_per_node = pods_per_node  # each fake node's allocatable pods
        self.bin_dir: Path | None = None
        self.server = ""
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.ca_file = self.state_dir / "pki" / "ca.crt"
        self.token = ""
        self.node_names = [f"kwok-node-{i}" for i in range(nodes)]
        self.ports: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pids: dict[str, dict[str, Any]] = {}
        self._args: dict[str, list[str]] = {}
        self._attached = False
        self._ssl: ssl.SSLContext | None = None

    # ---- construction from an existing cluster / state dir ----

    @classmethod
    def attach(cls, kubeconfig: str | Path) -> LocalCluster:
        """A handle on a cluster we did not start (``start``/``stop`` do nothing)."""
        self = cls(state_dir=Path(kubeconfig).resolve().parent)
        self._own_state_dir = False
        self._attached = True
        self.kubeconfig = Path(kubeconfig).resolve()
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        ctx_name = cfg.get("current-context")
        ctx = next((c["context"] for c in cfg.get("contexts", []) if c["name"] == ctx_name), None)
        cluster_name = ctx["cluster"] if ctx else cfg["clusters"][0]["name"]
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == cluster_name)
        self.server = cluster["server"]
        state = self.kubeconfig.parent / "cluster.json"
        if state.is_file():
            info = json.loads(state.read_text())
            self.node_names = info.get("nodes", self.node_names)
            self.token = info.get("token", "")
        return self

    # ---- lifecycle ----

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        if self._attached:
            return self
        t0 = time.monotonic()
        self.bin_dir = ensure_binaries()
        try:
            self._start(t0)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, t0: float) -> None:
        sd = self.state_dir
        if (sd / "cluster.json").exists() and self._running_from_state():
            raise ClusterError(f"a cluster is already running from {sd} (stop it with `down` first)")
        for sub in ("etcd", "pki", "logs", "kwok", "config"):
            shutil.rmtree(sd / sub, ignore_errors=True)
        for sub in ("logs", "kwok", "config"):
            (sd / sub).mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (sd / "cluster.json").unlink()
        pki = _write_pki(sd / "pki")
        names = ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        self.server = f"https://127.0.0.1:{self.ports['apiserver']}"
        self.token = secrets.token_hex(24)
        (sd / "config" / "tokens.csv").write_text(
            f'{self.token},kubernetes-admin,uid-admin,"system:masters"\n'
        )
        (sd / "config" / "tokens.csv").chmod(0o600)
        for user, name in (
            ("admin", "kubeconfig"),
            ("kube-controller-manager", "config/kube-controller-manager.kubeconfig"),
            ("kube-scheduler", "config/kube-scheduler.kubeconfig"),
            ("kwok", "config/kwok.kubeconfig"),
        ):
            cfg = _kubeconfig(self.server, pki["ca.crt"], pki[f"{user}.crt"], pki[f"{user}.key"], user)
            (sd / name).write_text(yaml.safe_dump(cfg, sort_keys=False))
            (sd / name).chmod(0o600)
        self._write_kwok_config()
        self._write_scheduler_config()
        self._write_state()

        etcd_url = f"http://127.0.0.1:{self.ports['etcd']}"
        self._spawn("etcd", self._etcd_args())
        self._wait("etcd health", lambda: self._http_ok(f"{etcd_url}/health"), "etcd", 60)
        self._spawn("kube-apiserver", self._apiserver_args(pki))
        self._wait("kube-apiserver /readyz", lambda: self._api_ok("/readyz"), "kube-apiserver", 120)
        self._spawn("kube-controller-manager", self._kcm_args(pki))
        self._spawn("kube-scheduler", self._scheduler_args(pki))
        self._spawn("kwok", self._kwok_args(pki))
        self._wait(
            "kube-controller-manager /healthz",
            lambda: self._https_ok(self.ports["kcm"], "/healthz"),
            "kube-controller-manager",
        )
        self._wait(
            "kube-scheduler /healthz",
            lambda: self._https_ok(self.ports["scheduler"], "/healthz"),
            "kube-scheduler",
        )
        self._create_storage_class()
        self._create_nodes()
        self._wait("fake nodes Ready (kwok)", self._nodes_ready, "kwok")
        self._wait(
            "ServiceAccount default/default",
            lambda: self._api("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            "kube-controller-manager",
        )
        self._write_state(ready_seconds=round(time.monotonic() - t0, 2))
        _log(
            f"cluster up in {time.monotonic() - t0:.1f}s: {self.server}, {self.nodes} nodes, "
            f"KUBECONFIG={self.kubeconfig}"
        )

    def stop(self) -> None:
        """SIGTERM every component (reverse start order), SIGKILL after ``stop_timeout``; idempotent."""
        if self._attached:
            return
        pids = dict(self._pids)
        if not pids and (self.state_dir / "cluster.json").is_file():
            with contextlib.suppress(ValueError, OSError):
                state = json.loads((self.state_dir / "cluster.json").read_text())
                pids = state.get("pids", {})
                self.ports = self.ports or state.get("ports", {})
        if "kube-apiserver" in pids:
            self._remove_hostpath_volumes()
        groups = [
            [n for n in ("kwok", "kube-scheduler", "kube-controller-manager") if n in pids],
            [n for n in ("kube-apiserver",) if n in pids],
            [n for n in ("etcd",) if n in pids],
        ]
        for group in groups:
            for name in group:
                if _alive(pids[name]["pid"], pids[name].get("start_time")):
                    _signal(pids[name]["pid"], signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            for name in group:
                pid, st = pids[name]["pid"], pids[name].get("start_time")
                while _alive(pid, st) and time.monotonic() < deadline:
                    self._reap(name)
                    time.sleep(0.05)
                if _alive(pid, st):
                    _log(f"{name} (pid {pid}) did not exit within {self.stop_timeout}s of SIGTERM: SIGKILL")
                    _signal(pid, signal.SIGKILL)
                    kill_deadline = time.monotonic() + 5
                    while _alive(pid, st) and time.monotonic() < kill_deadline:
                        self._reap(name)
                        time.sleep(0.05)
                self._reap(name)
        self._procs.clear()
        self._pids.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "cluster.json").unlink()
        if self._own_state_dir and not os.environ.get("DORIS_OPERATOR_KEEP_STATE"):
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def restart(self, name: str, down: float = 0.0, timeout: float = 120.0) -> None:
        """Stop one component (SIGTERM, SIGKILL after ``stop_timeout``), wait ``down`` seconds and start
        it again with the same arguments; return once it answers /readyz (kube-apiserver) or /healthz."""
        if name not in self._args:
            raise ClusterError(f"{name} was not started by this LocalCluster")
        pid, st = self._pids[name]["pid"], self._pids[name].get("start_time")
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while _alive(pid, st) and time.monotonic() < deadline:
            self._reap(name)
            time.sleep(0.05)
        if _alive(pid, st):
            _signal(pid, signal.SIGKILL)
        while _alive(pid, st):
            self._reap(name)
            time.sleep(0.05)
        self._reap(name)
        time.sleep(down)
        self._spawn(name, self._args[name])
        if name == "kube-apiserver":
            self._wait("kube-apiserver /readyz", lambda: self._api_ok("/readyz"), name, timeout)
        elif name in ("kube-controller-manager", "kube-scheduler"):
            port = self.ports["kcm" if name == "kube-controller-manager" else "scheduler"]
            self._wait(f"{name} /healthz", lambda: self._https_ok(port, "/healthz"), name, timeout)

    def _remove_hostpath_volumes(self) -> None:
        """Best effort: remove the (empty) /tmp/hostpath_pv/<uid> dirs of the provisioned volumes."""
        try:
            status, body = self._api("GET", "/api/v1/persistentvolumes", timeout=3)
        except (OSError, http.client.HTTPException, KeyError):
            return
        if status != 200:
            return
        for pv in body.get("items", []):
            path = ((pv.get("spec") or {}).get("hostPath") or {}).get("path", "")
            if re.fullmatch(r"/tmp/hostpath_pv/[0-9a-f-]+", path):
                with contextlib.suppress(OSError):
                    os.rmdir(path)

    def _reap(self, name: str) -> None:
        proc = self._procs.get(name)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0)

    def _spawn(self, name: str, args: list[str]) -> None:
        assert self.bin_dir is not None
        binary = self.bin_dir / ("kwok" if name == "kwok" else name)
        log_path = self.state_dir / "logs" / f"{name}.log"
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        if name == "kwok":  # keep kwok away from ~/.kwok/kwok.yaml
            env["KWOK_WORKDIR"] = str(self.state_dir / "kwok")
            env["HOME"] = str(self.state_dir / "kwok")
        # no proxies: every connection is to 127.0.0.1
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            env.pop(var, None)
        with open(log_path, "ab") as logf:
            proc = subprocess.Popen(
                [str(binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                env=env,
                start_new_session=True,
                preexec_fn=None if self.detached else _set_pdeathsig,
            )
        self._procs[name] = proc
        self._args[name] = args
        self._pids[name] = {"pid": proc.pid, "start_time": _proc_start_time(proc.pid)}
        self._write_state()

    # ---- component arguments ----

    def _etcd_args(self) -> list[str]:
        c, p = self.ports["etcd"], self.ports["etcd-peer"]
        return [
            "--name=etcd0",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{c}",
            f"--advertise-client-urls=http://127.0.0.1:{c}",
            f"--listen-peer-urls=http://127.0.0.1:{p}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{p}",
            f"--initial-cluster=etcd0=http://127.0.0.1:{p}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",  # test data: durability is not needed, speed is
            "--auto-compaction-retention=1",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ]

    def _apiserver_args(self, pki: dict[str, Path]) -> list[str]:
        sd = self.state_dir
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # no Endpoints for default/kubernetes: nothing runs in-cluster, and 127.0.0.1 is not a
            # valid endpoint address
            "--endpoint-reconciler-type=none",
            f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={pki['serving.crt']}",
            f"--tls-private-key-file={pki['serving.key']}",
            f"--client-ca-file={pki['ca.crt']}",
            f"--token-auth-file={sd / 'config' / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--anonymous-auth=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki['sa.pub']}",
            f"--service-account-signing-key-file={pki['sa.key']}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # on top of the default set (which already has the webhooks and ValidatingAdmissionPolicy);
            # OwnerReferencesPermissionEnforcement as on OpenShift: setting blockOwnerDeletion needs
            # update on the owner's finalizers subresource, so a missing grant shows up here
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,"
            "DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,"
            "ValidatingAdmissionWebhook,ResourceQuota,OwnerReferencesPermissionEnforcement",
            # kubectl logs/exec go to the fake node's kubelet endpoint: kwok on 127.0.0.1
            f"--kubelet-client-certificate={pki['admin.crt']}",
            f"--kubelet-client-key={pki['admin.key']}",
            f"--kubelet-certificate-authority={pki['ca.crt']}",
            "--kubelet-preferred-address-types=InternalIP",
            # aggregation layer / delegated authn of kcm and the scheduler
            f"--requestheader-client-ca-file={pki['ca.crt']}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki['front-proxy-client.crt']}",
            f"--proxy-client-key-file={pki['front-proxy-client.key']}",
            "--profiling=false",
            "--enable-priority-and-fairness=false",
            f"--v={self.verbosity}",
            *self._audit_args(),
        ]

    def _audit_args(self) -> list[str]:
        if self.audit_log is None:
            return []
        policy = self.state_dir / "config" / "audit-policy.yaml"
        doc = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata"}],
        }
        policy.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",  # each event written before the response: nothing left unflushed
        ]

    def _kcm_args(self, pki: dict[str, Path]) -> list[str]:
        kc = self.state_dir / "config" / "kube-controller-manager.kubeconfig"
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['kcm']}",
            f"--tls-cert-file={pki['serving.crt']}",
            f"--tls-private-key-file={pki['serving.key']}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki['sa.key']}",
            f"--root-ca-file={pki['ca.crt']}",
            f"--cluster-signing-cert-file={pki['ca.crt']}",
            f"--cluster-signing-key-file={pki['ca.key']}",
            "--controllers=*",
            "--horizontal-pod-autoscaler-sync-period=5s",
            "--allocate-node-cidrs=false",
            # dynamic PVs for PVCs (StorageClass "standard"): empty dirs under /tmp/hostpath_pv
            "--enable-hostpath-provisioner=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--cluster-name=doris-local",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-gc-syncs=20",
            "--profiling=false",
            f"--v={self.verbosity}",
            *self.controller_manager_args,
        ]

    def _write_scheduler_config(self) -> None:
        kc = self.state_dir / "config" / "kube-scheduler.kubeconfig"
        cfg = {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(kc), "qps": 200, "burst": 400},
            "leaderElection": {"leaderElect": False},
            "enableProfiling": False,
        }
        (self.state_dir / "config" / "kube-scheduler.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    def _scheduler_args(self, pki: dict[str, Path]) -> list[str]:
        kc = self.state_dir / "config" / "kube-scheduler.kubeconfig"
        return [
            f"--config={self.state_dir / 'config' / 'kube-scheduler.yaml'}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['scheduler']}",
            f"--tls-cert-file={pki['serving.crt']}",
            f"--tls-private-key-file={pki['serving.key']}",
            f"--v={self.verbosity}",
        ]

    def _write_kwok_config(self) -> None:
        assert self.bin_dir is not None
        stages_dir = self.bin_dir.parent / "share" / "kwok-stages"
        docs = []
        for name in KWOK_STAGES:
            stage = yaml.safe_load((stages_dir / f"{name}.yaml").read_text())
            if name == "pod-ready":
                # a fixed delay (configurable per cluster) that a pod annotation can override,
                # e.g. pod-ready.stage.kwok.x-k8s.io/delay: "20s"
                stage["spec"]["delay"] = {
                    "durationMilliseconds": int(self.pod_ready_delay * 1000),
                    "durationFrom": {
                        "expressionFrom": f'.metadata.annotations["{POD_READY_DELAY_ANNOTATION}"]'
                    },
                }
                stage["spec"]["next"]["statusTemplate"] = _honest_gates(
                    stage["spec"]["next"]["statusTemplate"]
                )
            docs.append(stage)
        metrics_dir = _copy_kwok_metrics(self.bin_dir.parent / "share")
        for name in KWOK_METRICS:
            docs.extend(d for d in yaml.safe_load_all((metrics_dir / f"{name}.yaml").read_text()) if d)
        docs.append(_gate_stage("pod-readiness-gates-pass", "true", ["False", "Unknown"], "True"))
        docs.append(_gate_stage("pod-readiness-gates-fail", "false", ["True"], "False"))
        (self.state_dir / "config" / "kwok.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def _kwok_args(self, pki: dict[str, Path]) -> list[str]:
        port = self.ports["kwok"]
        return [
            f"--kubeconfig={self.state_dir / 'config' / 'kwok.kubeconfig'}",
            f"--config={self.state_dir / 'config' / 'kwok.yaml'}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            "--manage-nodes-with-label-selector=",
            "--manage-single-node=",
            f"--cidr={POD_CIDR}",
            f"--node-ip={NODE_IP}",
            f"--node-port={port}",
            # always explicit: with only --node-port kwok would listen on 0.0.0.0
            f"--server-address=127.0.0.1:{port}",
            f"--tls-cert-file={pki['serving.crt']}",
            f"--tls-private-key-file={pki['serving.key']}",
            "--node-lease-duration-seconds=40",
        ]

    # ---- nodes ----

    def _create_nodes(self) -> None:
        for i, name in enumerate(self.node_names):
            resources = {
                "cpu": "64",
                "memory": "256Gi",
                "pods": str(self.pods_per_node),
                "ephemeral-storage": "1Ti",
            }
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        FAKE_NODE_ANNOTATION: "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                        RESOURCE_METRICS_PATH_ANNOTATION: f"/metrics/nodes/{name}/metrics/resource",
                    },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "node-role.kubernetes.io/worker": "",
                        "topology.kubernetes.io/zone": f"zone-{i % 3}",
                        "type": "kwok",
                    },
                },
                "spec": {},
                "status": {"allocatable": resources, "capacity": resources},
            }
            status, body = self._api("POST", "/api/v1/nodes", node)
            if status not in (201, 409):
                raise ClusterError(f"creating node {name}: HTTP {status}: {body}")

    def _create_storage_class(self) -> None:
        sc = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": "standard",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/host-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
        status, body = self._api("POST", "/apis/storage.k8s.io/v1/storageclasses", sc)
        if status not in (201, 409):
            raise ClusterError(f"creating StorageClass standard: HTTP {status}: {body}")

    def _nodes_ready(self) -> bool:
        status, body = self._api("GET", "/api/v1/nodes")
        if status != 200:
            return False
        ready = {
            n["metadata"]["name"]
            for n in body.get("items", [])
            for c in (n.get("status") or {}).get("conditions") or []
            if c.get("type") == "Ready" and c.get("status") == "True"
        }
        return set(self.node_names) <= ready

    # ---- HTTP helpers ----

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            pki = self.state_dir / "pki"
            ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
            self._ssl = ctx
        return self._ssl

    def _api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        """A request to the apiserver as the admin user; returns (status, decoded JSON or text)."""
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.ports["apiserver"], context=self._ssl_context(), timeout=timeout
        )
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw

    def _api_ok(self, path: str) -> bool:
        return self._api("GET", path, timeout=5)[0] == 200

    def _https_ok(self, port: int, path: str) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.state_dir / "pki" / "ca.crt"))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().status == 200
        finally:
            conn.close()

    @staticmethod
    def _http_ok(url: str) -> bool:
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/.*)", url)
        assert m
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=5)
        try:
            conn.request("GET", m.group(2))
            return conn.getresponse().status == 200
        finally:
            conn.close()

    # ---- waiting ----

    def _check_processes(self) -> None:
        for name, info in self._pids.items():
            proc = self._procs.get(name)
            dead = (
                proc.poll() is not None if proc is not None else not _alive(info["pid"], info["start_time"])
            )
            if dead:
                rc = f" with exit code {proc.returncode}" if proc is not None else ""
                raise ClusterError(
                    f"{name} exited{rc} during start-up; last lines of "
                    f"{self.state_dir / 'logs' / (name + '.log')}:\n{self.log_tail(name)}"
                )

    def _wait(
        self, what: str, check: Callable[[], bool], component: str, timeout: float | None = None
    ) -> None:
        timeout = min(timeout or self.start_timeout, self.start_timeout)
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            self._check_processes()
            try:
                if check():
                    return
                last = None
            except (OSError, http.client.HTTPException, ValueError) as e:
                last = e
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {timeout:.0f}s waiting for {what}"
                    + (f" (last error: {last!r})" if last else "")
                    + f"; last lines of {self.state_dir / 'logs' / (component + '.log')}:\n"
                    + self.log_tail(component)
                )
            time.sleep(0.2)

    def log_tail(self, component: str, lines: int = 40) -> str:
        return _tail(self.state_dir / "logs" / f"{component}.log", lines)

    # ---- state file ----

    def _write_state(self, **extra: Any) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "token": self.token,
            "ports": self.ports,
            "nodes": self.node_names,
            "pod_ready_delay": self.pod_ready_delay,
            "bin_dir": str(self.bin_dir) if self.bin_dir else None,
            "pids": self._pids,
            **extra,
        }
        tmp = self.state_dir / "cluster.json.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.chmod(0o600)
        os.replace(tmp, self.state_dir / "cluster.json")

    def _running_from_state(self) -> bool:
        try:
            pids = json.loads((self.state_dir / "cluster.json").read_text()).get("pids", {})
        except (OSError, ValueError):
            return False
        return any(_alive(p["pid"], p.get("start_time")) for p in pids.values())

    # ---- using the cluster ----

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG (and the built binaries first on PATH)."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        if self.bin_dir:
            env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl_path(self) -> Path:
        if self.bin_dir is None:
            built = bin_dir() / "kubectl"
            if built.exists():
                self.bin_dir = built.parent
            elif shutil.which("kubectl"):
                return Path(shutil.which("kubectl") or "kubectl")
            else:
                self.bin_dir = ensure_binaries()
        return self.bin_dir / "kubectl"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raises ClusterError on a non-zero exit when ``check``."""
        cmd = [str(self.kubectl_path()), f"--kubeconfig={self.kubeconfig}", *args]
        try:
            proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"kubectl {' '.join(args)} timed out after {timeout}s") from e
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr}")
        return proc

    def kubectl_json(self, *args: str, timeout: float = 60) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json", timeout=timeout).stdout)

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]], *args: str) -> str:
        """kubectl apply -f - with a YAML string, one object or a list of objects."""
        if isinstance(manifest, dict):
            manifest = yaml.safe_dump(manifest, sort_keys=False)
        elif isinstance(manifest, list):
            manifest = yaml.safe_dump_all(manifest, sort_keys=False)
        return self.kubectl("apply", "-f", "-", *args, input=manifest).stdout


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _status(state_dir: Path) -> int:
    state_file = state_dir / "cluster.json"
    if not state_file.is_file():
        print(f"no cluster in {state_dir}")
        return 1
    state = json.loads(state_file.read_text())
    ok = True
    for name in PROCESS_ORDER:
        info = state.get("pids", {}).get(name)
        alive = bool(info) and _alive(info["pid"], info.get("start_time"))
        ok = ok and alive
        print(f"{name:24} {'running' if alive else 'NOT running'}" + (f"  pid {info['pid']}" if info else ""))
    if ok:
        cluster = LocalCluster.attach(state_dir / "kubeconfig")
        cluster.ports = state["ports"]
        try:
            ready = cluster._api_ok("/readyz") and cluster._nodes_ready()
        except (OSError, http.client.HTTPException) as e:
            print(f"apiserver not reachable: {e}")
            ready = False
        ok = ready
        print(f"server {state['server']}  {'healthy, nodes Ready' if ready else 'NOT healthy'}")
        print(f"export KUBECONFIG={state_dir / 'kubeconfig'}")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "pin", "up", "down", "status", "env"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--pod-ready-delay", type=float, default=0.0, help="seconds before a pod turns Ready")
    parser.add_argument("--force", action="store_true", help="build: rebuild even if cached")
    parser.add_argument("--timeout", type=float, default=180.0, help="up: start-up bound in seconds")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    try:
        if args.command == "build":
            print(ensure_binaries(force=args.force))
        elif args.command == "pin":
            pin()
        elif args.command == "up":
            if (state_dir / "cluster.json").is_file():
                if _status(state_dir) == 0:
                    print(f"already running from {state_dir}")
                    return 0
                LocalCluster(state_dir=state_dir).stop()  # leftovers of a dead cluster
            state_dir.mkdir(parents=True, exist_ok=True)
            cluster = LocalCluster(
                state_dir=state_dir,
                nodes=args.nodes,
                pod_ready_delay=args.pod_ready_delay,
                detached=True,
                start_timeout=args.timeout,
            )
            cluster.start()
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "down":
            LocalCluster(state_dir=state_dir).stop()
            print(f"stopped the cluster in {state_dir}")
        elif args.command == "status":
            return _status(state_dir)
        elif args.command == "env":
            print(f"export KUBECONFIG={state_dir / 'kubeconfig'}")
            print(f'export PATH="{bin_dir()}:$PATH"')
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
