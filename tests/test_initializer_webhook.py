"""The admission webhook serves DorisInitializer on the local control plane: what the CRD's schema and
CEL can't check is denied naming the field, and the defaults are written into the stored object."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import ROOT, Kubectl, eventually
from test_webhook import WebhookProcess, apply

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

INIT_CRD = ROOT / "config" / "crd" / "doris.selectdb.com_dorisinitializers.yaml"


def initializer(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisInitializer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"cluster": "dc", **spec},
    }


@pytest.fixture(scope="module")
def webhook(
    kube_cluster: Any, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WebhookProcess, str]]:
    kubectl("apply", "-f", str(INIT_CRD))
    eventually(lambda: "dorisinitializers" in kubectl("api-resources", "--api-group=doris.selectdb.com"), 30)
    ns = kubectl.new_namespace("whi")
    proc = WebhookProcess(
        kube_cluster, Path(tmp_path_factory.mktemp("webhook")), "doris-wh-init", ns,
        "--operator-user", "system:serviceaccount:nobody:nobody",
    )  # fmt: skip
    try:
        proc.start()
        probe = initializer("probe", ns, users=[_user(name="root")])

        def wired() -> bool:
            result = apply(kubectl, probe, "--dry-run=server")
            return result.returncode != 0 and "spec.users[0].name" in result.stderr

        eventually(wired, 30, 0.2, what="the apiserver calling the webhook for DorisInitializers")
        yield proc, ns
    finally:
        proc.stop()
        proc.uninstall(kubectl)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _user(**changes: Any) -> dict[str, Any]:
    return {"name": "jack", "passwordSecretKeyRef": {"name": "jack-pw", "key": "password"}, **changes}


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        (
            {"users": [_user(grants=[{"privileges": ["SELECT_PRIV", "FLY_PRIV"], "target": "db.*"}])]},
            "spec.users[0].grants[0].privileges[1]",
            "'FLY_PRIV' is not a Doris privilege",
        ),
        (
            {"users": [_user(name="admin")]},
            "spec.users[0].name",
            "admin exists already: set spec.adminPassword",
        ),
        ({"sql": [{"name": "a", "statements": "  "}]}, "spec.sql[0].statements", "must not be empty"),
    ],
)
def test_the_webhook_denies_naming_the_field(
    kubectl: Kubectl, webhook: tuple[WebhookProcess, str], spec: dict[str, Any], path: str, words: str
) -> None:
    proc, ns = webhook
    name = f"bad-{uuid.uuid4().hex[:6]}"
    result = apply(kubectl, initializer(name, ns, **spec))
    assert result.returncode != 0 and f"{path}: {words}" in result.stderr, result.stderr
    assert proc.log().count(f"denied DorisInitializer {ns}/{name}:") == 1


def test_defaults_are_written(kubectl: Kubectl, webhook: tuple[WebhookProcess, str]) -> None:
    _, ns = webhook
    body = initializer("defaults", ns, users=[_user()], sql=[{"name": "a", "statements": "SELECT 1"}])
    result = apply(kubectl, body)
    assert result.returncode == 0, result.stderr
    spec = kubectl.json("dinit", "defaults", "-n", ns)["spec"]
    assert spec["users"][0]["host"] == "%"
    assert spec["sql"][0]["runOnChange"] is False
    assert spec["maxRetries"] == 10 and spec["backoff"] == {"initialSeconds": 5, "maxSeconds": 300}
    generation = kubectl.json("dinit", "defaults", "-n", ns)["metadata"]["generation"]
    assert apply(kubectl, body).returncode == 0  # applying it again changes nothing
    assert kubectl.json("dinit", "defaults", "-n", ns)["metadata"]["generation"] == generation
