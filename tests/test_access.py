"""One FE endpoint and one set of credentials for a DorisCluster, whoever asks: the operator's
reconcile and ``kubectl doris`` call the same functions (doris_operator.access)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from doris_operator import access, kubectl_plugin
from doris_operator.api.validation import parse_cluster
from doris_operator.builders.config import ComponentConfig
from doris_operator.doris.client import Credentials
from doris_operator.reconcile import membership


def manifest(**spec: Any) -> dict[str, Any]:
    body = {"feSpec": {"image": "apache/doris:fe-2.1.7"}, "beSpec": {"image": "apache/doris:be-2.1.7"}}
    body.update(spec)
    return {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisCluster",
        "metadata": {"name": "dc", "namespace": "doris"},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_reconcile_uses_the_shared_functions() -> None:
    assert membership.fe_endpoint is access.fe_endpoint
    assert membership.credentials is access.credentials
    assert membership.FE_ADDRESS_ANNOTATION == access.FE_ADDRESS_ANNOTATION


def test_fe_endpoint_in_order_annotation_external_fe_service() -> None:
    service = access.fe_endpoint_at(parse_cluster(manifest()), 19030)
    assert service == access.FeEndpoint("dc-fe-service.doris.svc", 19030, False)
    external = manifest(
        feSpec=None,
        beSpec={
            "image": "apache/doris:be-2.1.7",
            "feAddress": {"endpoints": {":address": ["fe.example"], "port": 9031}},
        },
    )
    assert access.fe_endpoint_at(parse_cluster(external)) == access.FeEndpoint("fe.example", 9031, True)
    annotated = manifest()
    annotated["metadata"]["annotations"] = {access.FE_ADDRESS_ANNOTATION: "127.0.0.1:40001"}
    honoured = access.fe_endpoint_at(parse_cluster(annotated), allow_annotation=True)
    assert honoured == access.FeEndpoint("127.0.0.1", 40001, True)
    # the operator honours it only with --allow-fe-address-annotation
    assert not access.fe_endpoint_at(parse_cluster(annotated)).direct
    config = ComponentConfig("fe", {"query_port": "19030"})
    assert access.fe_endpoint(parse_cluster(manifest()), config) == (
        "dc-fe-service.doris.svc",
        19030,
    )


def test_the_plugin_and_the_operator_agree() -> None:
    external = manifest(
        feSpec=None,
        beSpec={"image": "apache/doris:be-2.1.7", "feAddress": {"endpoints": {"address": ["fe.example"]}}},
    )
    assert kubectl_plugin.fe_address(external, "doris") == ("fe.example", 9030, True)
    assert access.fe_endpoint(parse_cluster(external), ComponentConfig("fe")) == ("fe.example", 9030)


def test_credentials_secret_then_admin_user_then_root() -> None:
    with_secret = parse_cluster(manifest(authSecret="creds", adminUser={"name": "ops", "password": "x"}))
    data = {"username": b64("admin"), "password": b64("s3cr3t")}
    assert access.credentials_from(with_secret, data) == Credentials("admin", "s3cr3t")
    assert access.credentials_from(with_secret, None) == Credentials("ops", "x")  # the Secret unreadable
    assert access.credentials_from(parse_cluster(manifest()), None) == Credentials("root", "")

    async def read(name: str) -> dict[str, str] | None:
        return data if name == "creds" else None

    assert asyncio.run(access.credentials(with_secret, read)) == Credentials("admin", "s3cr3t")
