"""k8s.Direct: the operator's hot calls written straight onto Http11Transport, against a scripted
apiserver on 127.0.0.1: the request on the wire (target, headers, body), the answer decoded, errors as
lightkube's ApiError, a token that was rotated (401, renewed by httpx2's auth flow), and no direct path
through a proxy.  (Every test on the local control plane runs the operator's calls this way too;
test_k8s_calls runs the same calls both ways against the real apiserver.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.config.kubeconfig import KubeConfig

from doris_operator.k8s import Direct, Kube, api_error
from doris_operator.operator import environment_proxy, kube_client
from test_transport import answer, ok, served


def _config(url: str, user: dict[str, Any]) -> KubeConfig:
    return KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": url}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


def _status(code: int, reason: str, message: str) -> bytes:
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        }
    )
    return b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        code,
        len(body),
        body.encode(),
    )


async def test_an_apply_and_a_status_patch_are_sent_as_the_apiserver_expects() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        body = request.split(b"\r\n\r\n", 1)[1]
        sent = json.loads(body)
        stored = sent if isinstance(sent, dict) else {"metadata": {"name": "dc"}, "status": sent[0]["value"]}
        stored.setdefault("metadata", {})["resourceVersion"] = "7"
        return await answer(writer, ok(json.dumps(stored).encode()))

    async with served(handler) as (url, seen, _):
        client = kube_client(_config(url, {"token": "secret-token"}))
        kube = Kube(client)
        assert kube.direct is not None
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s", "namespace": "ns"},
            "spec": {},
        }
        stored = await kube.apply(svc)
        assert stored["metadata"]["resourceVersion"] == "7" and stored["kind"] == "Service"
        await kube.patch_status("dc", "ns", {"phase": "Ready"})
        await client.close()
    head, body = seen[0].split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert (
        lines[0] == b"PATCH /api/v1/namespaces/ns/services/s?fieldManager=doris-operator&force=true HTTP/1.1"
    )
    assert b"Content-Type: application/apply-patch+yaml" in lines
    assert b"Authorization: Bearer secret-token" in lines
    assert b"Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json" in lines
    assert b"Content-Length: %d" % len(body) in lines and json.loads(body) == svc
    head, body = seen[1].split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"PATCH /apis/doris.selectdb.com/v1/namespaces/ns/dorisclusters/dc/status HTTP/1.1"
    assert b"Content-Type: application/json-patch+json" in lines
    assert json.loads(body) == [{"op": "add", "path": "/status", "value": {"phase": "Ready"}}]


async def test_not_found_is_none_and_other_errors_are_lightkubes_api_error() -> None:
    answers = [
        _status(404, "NotFound", 'services "gone" not found'),
        _status(422, "Invalid", 'Service "s" is invalid: spec.ports: Required value'),
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\n\r\nbad gateway",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        return await answer(writer, answers.pop(0))

    async with served(handler) as (url, seen, conns):
        client = kube_client(_config(url, {"token": "t"}))
        kube = Kube(client)
        assert await kube.get("Service", "gone", "ns") is None
        with pytest.raises(ApiError) as invalid:
            await kube.apply({"kind": "Service", "metadata": {"name": "s", "namespace": "ns"}})
        assert invalid.value.status.code == 422 and invalid.value.status.reason == "Invalid"
        assert "spec.ports: Required value" in str(invalid.value)
        with pytest.raises(ApiError) as gateway:
            await kube.annotate("StatefulSet", "sts", "ns", {"a": None})
        assert gateway.value.status.code == 502 and gateway.value.status.message == "bad gateway"
        await client.close()
    assert seen[0].startswith(b"GET /api/v1/namespaces/ns/services/gone HTTP/1.1\r\n")
    assert b"\r\nAccept: application/json\r\n" in seen[0]  # a read gets the whole object
    assert seen[2].startswith(b"PATCH /apis/apps/v1/namespaces/ns/statefulsets/sts HTTP/1.1\r\n")
    assert b"Content-Type: application/merge-patch+json" in seen[2]
    assert seen[2].endswith(b'{"metadata":{"annotations":{"a":null}}}')
    assert conns == [1, 1, 1]  # one kept connection for all three


async def test_a_rotated_token_is_renewed_through_httpx2s_auth_flow(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("old\n")
    valid = [b"old"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        if b"\r\nAuthorization: Bearer %s\r\n" % valid[0] not in request:
            return await answer(writer, _status(401, "Unauthorized", "Unauthorized"))
        return await answer(
            writer, ok(b'{"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}')
        )

    async with served(handler) as (url, seen, _):
        client = kube_client(_config(url, {"tokenFile": str(token)}))
        kube = Kube(client)
        assert kube.direct is not None
        assert await kube.config_map("cm", "ns") == {"k": "v"}
        token.write_text("new\n")  # the kubelet rotates it; the apiserver takes only the new one
        valid[0] = b"new"
        assert await kube.config_map("cm", "ns") == {"k": "v"}
        assert await kube.config_map("cm", "ns") == {"k": "v"}
        await client.close()
    bearers = [next(x for x in r.split(b"\r\n") if x.startswith(b"Authorization:"))[22:] for r in seen]
    # direct; direct refused, then httpx2's flow with what it had and with the file read again;
    # direct with the renewed token
    assert bearers == [b"old", b"old", b"old", b"new", b"new"], bearers
    assert all(r.startswith(b"GET /api/v1/namespaces/ns/configmaps/cm HTTP/1.1\r\n") for r in seen)


def test_no_direct_path_through_a_proxy_or_on_httpx2s_own_transport() -> None:
    from lightkube import AsyncClient

    from doris_operator.transport import Http11Transport

    config = _config("http://apiserver.invalid:6443", {"token": "t"})  # never dialled
    assert Direct.of(AsyncClient(config)) is None  # lightkube's default transport
    proxied = AsyncClient(config, transport=Http11Transport(), proxy="http://127.0.0.1:2")
    assert Direct.of(proxied) is None  # httpx2 mounts its proxy's transport for the server
    assert Direct.of(AsyncClient(config, transport=Http11Transport())) is not None
    assert Direct.of(kube_client(config)) is not None
    assert Direct.of(object()) is None


def test_a_proxy_from_the_environment_is_used_as_lightkube_would(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    server = "https://apiserver.invalid:6443"  # never dialled
    assert environment_proxy(server) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert environment_proxy(server) == "http://127.0.0.1:3128"
    assert environment_proxy("http://apiserver.invalid:8080") is None  # no HTTP_PROXY
    config = _config("http://apiserver.invalid:8080", {"token": "t"})
    assert Direct.of(kube_client(config)) is not None
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert Direct.of(kube_client(config)) is None  # the proxy's transport, httpx2's
    monkeypatch.setenv("NO_PROXY", "apiserver.invalid")
    assert environment_proxy(server) is None and Direct.of(kube_client(config)) is not None


def test_an_answer_that_is_not_a_status_still_names_its_code() -> None:
    err = api_error(503, b"")
    assert err.status.code == 503 and err.status.message == "HTTP 503"
