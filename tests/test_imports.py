"""What ``doris-operator run`` loads: only what a run uses (issue 17; figures in docs/benchmarks.md, Memory).

Each check imports in a fresh interpreter, so nothing an earlier test imported counts."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Loaded only where used: the webhook server and its certificates, dashboards (a DorisMonitor with
# dashboards), SQL splitting (a DorisInitializer with SQL), the kubectl plugin, CRD/doc generation,
# and never the simulator.
NOT_AT_START = (
    "cryptography",
    "aiohttp",
    "kopf",
    "doris_operator.webhook",
    "grafana_foundation_sdk",
    "doris_operator.builders.dashboards",
    "sqlparse",
    "doris_operator.kubectl_plugin",
    "doris_operator.api.crdgen",
    "doris_operator.api.docgen",
    "doris_sim",
)


def loaded(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "sim")])}
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in NOT_AT_START))


def test_the_operator_loads_none_of_the_heavy_modules() -> None:
    modules = loaded("import doris_operator.operator, doris_operator.cli")
    assert "doris_operator.informers" in modules and "doris_operator.reconcile.controller" in modules
    assert heavy(modules) == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("from doris_operator.reconcile.initializer import split_sql; split_sql('select 1;')", "sqlparse"),
        ("from doris_operator.webhook.server import serve", "cryptography"),
        ("from doris_operator.webhook.server import serve", "aiohttp"),
        ("import doris_operator.builders.dashboards", "grafana_foundation_sdk"),
    ],
)
def test_heavy_modules_load_where_they_are_used(code: str, expected: str) -> None:
    """The same check can fail: each of them does load where it is used."""
    assert expected in heavy(loaded(code))


def test_pymysql_still_gets_cryptography_when_the_process_has_it() -> None:
    """The webhook (certificates) loaded first: pymysql then sees cryptography as it always did."""
    modules = loaded(
        "import cryptography.hazmat.primitives.serialization\n"
        "import doris_operator.doris.client\n"
        "from pymysql import _auth\n"
        "assert _auth._have_cryptography"
    )
    assert "pymysql" in modules


def test_pymysql_without_cryptography_still_authenticates_the_doris_way() -> None:
    """mysql_native_password (Doris's) and the caching_sha2 fast path need no cryptography."""
    loaded(
        "import doris_operator.doris.client, sys\n"
        "from pymysql import _auth\n"
        "assert 'cryptography' not in sys.modules and not _auth._have_cryptography\n"
        "assert len(_auth.scramble_native_password(b'secret', b'x' * 20)) == 20\n"
        "assert len(_auth.scramble_caching_sha2(b'secret', b'x' * 20)) == 32\n"
        "import cryptography  # still importable afterwards\n"
    )


def test_api_models_are_built_on_first_use() -> None:
    """``defer_build``: a model's validator is built when it first validates, so a run with no
    DorisMonitor, DorisInitializer or DorisClusterAutoscaler never builds theirs (about 2 MiB for all)."""
    loaded(
        "import doris_operator.operator, doris_operator.cli, yaml\n"
        "from doris_operator.api import doriscluster, dorisinitializer, dorismonitor\n"
        "from doris_operator.api import dorisclusterautoscaler\n"
        "kinds = (dorisclusterautoscaler.DorisClusterAutoscaler, dorisinitializer.DorisInitializer,\n"
        "         dorismonitor.DorisMonitor, doriscluster.DorisCluster)\n"
        "assert not any(k.__pydantic_complete__ for k in kinds)\n"
        f"sample = yaml.safe_load(open({str(ROOT / 'examples' / 'doriscluster-sample.yaml')!r}))\n"
        "assert doriscluster.DorisCluster.model_validate(sample).metadata.name\n"
        "assert doriscluster.DorisCluster.__pydantic_complete__\n"
        "assert not any(k.__pydantic_complete__ for k in kinds[:3])\n"
    )


def test_the_operators_client_leaves_http2_unloaded(tmp_path: Path) -> None:
    """The operator speaks HTTP/1.1 to the apiserver; httpcore2 would import h2 and hpack for HTTP/2."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    code = (
        "import sys\n"
        "from lightkube.config.kubeconfig import KubeConfig\n"
        "from doris_operator.operator import kube_client\n"
        f"client = kube_client(KubeConfig.from_file({str(kubeconfig)!r}))\n"
        "assert client._client._client is not None\n"
    )
    modules = loaded(code)
    assert "doris_operator.transport" in modules
    assert not {m for m in modules if m.split(".")[0] in ("h2", "hpack")}
    assert "h2" in loaded(code.replace("from doris_operator", "import h2\nfrom doris_operator"))


def test_with_a_ca_in_the_kubeconfig_httpx2s_own_transport_stack_stays_unloaded(tmp_path: Path) -> None:
    """The operator's transport (transport.py) replaces httpcore2, h11 and anyio: with the CA a real
    kubeconfig names (or the ServiceAccount's), none of them is imported."""
    from doris_operator.webhook.certs import issue

    _, ca = issue(["127.0.0.1"], dt.timedelta(days=1))
    (tmp_path / "ca.pem").write_bytes(ca)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', "
        f"certificate-authority: {tmp_path / 'ca.pem'}}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    code = (
        "from lightkube.config.kubeconfig import KubeConfig\n"
        "from doris_operator.operator import kube_client\n"
        f"client = kube_client(KubeConfig.from_file({str(kubeconfig)!r}))\n"
        "assert client._client._client is not None\n"
    )
    modules = {m.split(".")[0] for m in loaded(code)}
    assert "httpx2" in modules and not modules & {"httpcore2", "h11", "anyio", "h2"}
