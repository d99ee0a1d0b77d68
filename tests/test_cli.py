"""The installed `doris-operator` command, as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from doris_operator.api import crdgen

ROOT = Path(__file__).resolve().parents[1]
COMMAND = shutil.which("doris-operator", path=str(Path(sys.executable).parent)) or "doris-operator"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


def test_render_json_lists_every_object() -> None:
    result = run("render", "-f", "examples/doriscluster-sample.yaml", "-o", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in doc["items"])
    assert kinds == [
        "PodDisruptionBudget/doriscluster-sample-be",
        "PodDisruptionBudget/doriscluster-sample-fe",
        "Service/doriscluster-sample-be-internal",
        "Service/doriscluster-sample-be-service",
        "Service/doriscluster-sample-fe-internal",
        "Service/doriscluster-sample-fe-service",
        "StatefulSet/doriscluster-sample-be",
        "StatefulSet/doriscluster-sample-fe",
    ]


def test_render_from_stdin_and_secrets_redacted() -> None:
    manifest = (ROOT / "tests/data/minimal.yaml").read_text()
    result = subprocess.run(
        [COMMAND, "render", "-f", "-"],
        input=manifest,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    secret = next(d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "Secret")
    assert set(secret["data"]) == {"username", "password"}
    assert "s3cret" not in result.stdout and "czNjcmV0" not in result.stdout  # plain nor base64
    shown = subprocess.run(
        [COMMAND, "render", "-f", "-", "--show-secrets"],
        input=manifest,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "czNjcmV0" in shown.stdout


def test_invalid_manifest_exit_code_and_message() -> None:
    result = subprocess.run(
        [COMMAND, "render", "-f", "-"],
        input="apiVersion: doris.selectdb.com/v1\nkind: DorisCluster\nmetadata: {name: x}\n"
        "spec: {feSpec: {replicas: 1}}\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "-: document 1 (DorisCluster x): spec.feSpec.image: is required"


def test_crds_command_prints_the_checked_in_crds() -> None:
    result = run("crds")
    assert result.returncode == 0
    crds = list(yaml.safe_load_all(result.stdout))
    assert len(crds) == len(list((ROOT / crdgen.CRD_DIR).glob("*.yaml"))) >= 2
    for crd in crds:
        assert crd == yaml.safe_load((ROOT / crdgen.CRD_DIR / crdgen.crd_filename(crd)).read_text())


def test_usage_error() -> None:
    result = run("render")
    assert result.returncode == 2 and "-f/--filename" in result.stderr
