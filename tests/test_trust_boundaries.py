"""Trust boundaries without an apiserver: the FE client never hands its password to a server asking for
it in clear text over plain TCP; the fe-address annotation is ignored (with a Warning Event) unless the
operator allows it; podTemplate overlays may not add privileged settings; a stored DorisCluster with a
field this version doesn't know still reconciles, while the webhook stays strict."""

from __future__ import annotations

import copy
import socket
import struct
import threading
from typing import Any

import pymysql
import pytest

from doris_operator.api import podsecurity
from doris_operator.api.lenient import parse_stored_cluster, unknown_fields
from doris_operator.api.validation import InvalidResource, parse_cluster
from doris_operator.builders.config import resolve as resolve_config
from doris_operator.doris.client import CLEAR_TEXT_REFUSED, Credentials, DorisClient, DorisError, Timeouts
from doris_operator.k8s import Fence
from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION, fe_endpoint
from doris_operator.reconcile.pipeline import AppliedMemory, Context, EventRecorder, reconcile
from doris_operator.webhook import admission

PASSWORD = "s3cret-Pa55word-never-on-the-wire"

# ---- a MySQL server that asks for the password in clear text ---------------------------------------------

CAPABILITIES = 0x0001 | 0x0200 | 0x8000 | 0x80000 | 0x200000  # long pw, 4.1, secure conn, plugin auth, lenenc
SSL_CAPABILITY = 0x0800


def _packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def _greeting(capabilities: int, plugin: bytes) -> bytes:
    salt = b"abcdefgh" + b"ijklmnopqrst"
    return (
        b"\x0a5.7.99-fake\x00"
        + struct.pack("<I", 7)
        + salt[:8]
        + b"\x00"
        + struct.pack("<H", capabilities & 0xFFFF)
        + b"\x21"
        + struct.pack("<H", 2)
        + struct.pack("<H", capabilities >> 16)
        + bytes([21])
        + b"\x00" * 10
        + salt[8:]
        + b"\x00"
        + plugin
        + b"\x00"
    )


class ClearTextServer:
    """Greets as mysql_native_password, then answers the login with an auth switch to
    ``mysql_clear_password``; records every byte the client sends."""

    def __init__(self, capabilities: int = CAPABILITIES, switch_to: bytes = b"mysql_clear_password") -> None:
        self.capabilities = capabilities
        self.switch_to = switch_to
        self.received = b""
        self.switched = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.settimeout(5)
        with conn:
            conn.sendall(_packet(0, _greeting(self.capabilities, b"mysql_native_password")))
            self._read(conn, once=True)  # the handshake response (user, scramble)
            conn.sendall(_packet(2, b"\xfe" + self.switch_to + b"\x00" + b"0123456789abcdefghij\x00"))
            self.switched.set()
            self._read(conn, once=False)

    def _read(self, conn: socket.socket, once: bool) -> None:
        while True:
            try:
                chunk = conn.recv(65536)
            except (TimeoutError, OSError):
                return
            if not chunk:
                return
            self.received += chunk
            if once:
                return

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.sock.close()


def _refused_login(server: ClearTextServer) -> DorisError:
    """Log in to ``server`` as the operator does; the DorisError it must end with."""
    try:
        with pytest.raises(DorisError) as err:
            DorisClient.connect("127.0.0.1", server.port, Credentials("root", PASSWORD), Timeouts(5, 5, 5))
    finally:
        server.close()
    return err.value


def test_clear_text_auth_over_plain_tcp_is_refused_and_the_password_never_sent() -> None:
    server = ClearTextServer()
    error = _refused_login(server)
    assert server.switched.is_set(), "the server never got to ask for clear text"
    assert error.code == CLEAR_TEXT_REFUSED
    assert "mysql_clear_password" in error.detail and "unencrypted" in error.detail
    assert server.received, "the client sent its handshake response"
    assert PASSWORD.encode() not in server.received


def test_the_clear_text_server_does_get_the_password_from_an_unguarded_client() -> None:
    """The control: plain PyMySQL answers the same server with the password, so the test above can fail."""
    server = ClearTextServer()
    try:
        with pytest.raises(pymysql.MySQLError):
            pymysql.connect(
                host="127.0.0.1", port=server.port, user="root", password=PASSWORD, connect_timeout=5
            )
    finally:
        server.close()
    assert PASSWORD.encode() in server.received


def test_a_server_offering_tls_gets_no_tls_and_no_password_without_enable_ssl() -> None:
    """A server (or whoever answers in its place) that offers TLS does not get a TLS session without
    enable_ssl: over one, with no certificate to check, the clear-text guard would let the password go."""
    server = ClearTextServer(capabilities=CAPABILITIES | SSL_CAPABILITY)
    error = _refused_login(server)
    assert server.switched.is_set(), "the first answer was a full login, not a request to start TLS"
    flags = struct.unpack("<I", server.received[4:8])[0]
    assert not flags & SSL_CAPABILITY and b"root\x00" in server.received
    assert error.code == CLEAR_TEXT_REFUSED
    assert PASSWORD.encode() not in server.received


@pytest.mark.parametrize("plugin", [b"sha256_password", b"dialog"])
def test_other_plugins_revealing_the_password_are_refused_over_plain_tcp(plugin: bytes) -> None:
    server = ClearTextServer(switch_to=plugin)
    error = _refused_login(server)
    assert error.code == CLEAR_TEXT_REFUSED
    assert PASSWORD.encode() not in server.received


def test_tls_required_when_fe_conf_enables_ssl() -> None:
    """With tls (fe.conf enable_ssl = true) a server that can't do TLS gets no login at all."""
    server = ClearTextServer()
    try:
        with pytest.raises(DorisError) as err:
            DorisClient.connect(
                "127.0.0.1", server.port, Credentials("root", PASSWORD), Timeouts(5, 5, 5), tls=True
            )
    finally:
        server.close()
    assert "SSL" in str(err.value)
    assert server.received == b"", "no handshake response (no user name, no scramble) without TLS"
    assert resolve_config("fe", None, {}).flag("enable_ssl") is False
    spec = {"configMapInfo": {"configMapName": "fe"}}
    cluster = parse_cluster(
        {**_doc(), "spec": {**_doc()["spec"], "feSpec": {**_doc()["spec"]["feSpec"], **spec}}}
    )
    conf = resolve_config("fe", cluster.spec.fe_spec, {"fe": {"fe.conf": "enable_ssl = true\n"}})
    assert conf.flag("enable_ssl") is True


# ---- a DorisCluster reconciled against a fake apiserver -------------------------------------------------


def _doc(**annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisCluster",
        "metadata": {
            "name": "dc",
            "namespace": "doris",
            "uid": "u-1",
            "generation": 1,
            "annotations": annotations,
        },
        "spec": {
            "feSpec": {"replicas": 1, "image": "selectdb/doris.fe-ubuntu:2.1.8"},
            "beSpec": {"replicas": 1, "image": "selectdb/doris.be-ubuntu:2.1.8"},
        },
    }


class FakeKube:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.status: dict[str, Any] | None = None
        self.gets: list[tuple[str, str]] = []
        self.fence = Fence()

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(obj)
        stored = copy.deepcopy(obj)
        stored["metadata"].update(uid=f"uid-{obj['metadata']['name']}", generation=1, resourceVersion="1")
        return stored

    async def delete(self, kind: str, name: str, namespace: str, uid: str | None = None) -> bool:
        raise AssertionError(f"nothing to delete, yet {kind} {name}")

    async def config_map(self, name: str, namespace: str) -> dict[str, str] | None:
        return None

    async def secret_exists(self, name: str, namespace: str, ttl: float | None = None) -> bool:
        return True

    async def secret_data(self, name: str, namespace: str) -> dict[str, str] | None:
        return None

    def secret_refused(self, name: str, namespace: str) -> None:
        pass

    async def get_object(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        self.gets.append((kind, name))
        return None

    async def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        return await self.get_object(kind, name, namespace)

    async def patch_status(
        self, name: str, namespace: str, status: dict[str, Any], resource: Any = None
    ) -> None:
        self.status = status

    async def event(self, involved: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason, message))


async def _reconcile(body: dict[str, Any], allow: bool = False) -> FakeKube:
    kube = FakeKube()
    ctx = Context(kube, AppliedMemory(), EventRecorder(kube))  # type: ignore[arg-type]
    ctx.allow_fe_address_annotation = allow
    await reconcile(body, [], [], ctx)
    return kube


def test_fe_address_annotation_needs_the_flag() -> None:
    cluster = parse_cluster(_doc(**{FE_ADDRESS_ANNOTATION: "10.1.2.3:9030"}))
    cfg = resolve_config("fe", cluster.spec.fe_spec, {})
    assert fe_endpoint(cluster, cfg) == ("dc-fe-service.doris.svc", 9030)
    assert fe_endpoint(cluster, cfg, allow_annotation=True) == ("10.1.2.3", 9030)


async def test_fe_address_annotation_ignored_with_a_warning_event() -> None:
    kube = await _reconcile(_doc(**{FE_ADDRESS_ANNOTATION: "attacker.example:3306"}))
    warnings = [e for e in kube.events if e[1] == "FEAddressIgnored"]
    assert len(warnings) == 1 and warnings[0][0] == "Warning"
    assert "dc-fe-service.doris.svc:9030" in warnings[0][2]
    assert "attacker.example" not in warnings[0][2]
    allowed = await _reconcile(_doc(**{FE_ADDRESS_ANNOTATION: "127.0.0.1:9030"}), allow=True)
    assert not [e for e in allowed.events if e[1] == "FEAddressIgnored"]
    plain = await _reconcile(_doc())
    assert not [e for e in plain.events if e[1] == "FEAddressIgnored"]


def _with_unknown_fields() -> dict[str, Any]:
    doc = _doc()
    doc["spec"]["futureTopLevel"] = {"a": 1}
    doc["spec"]["beSpec"]["futureKnob"] = True
    doc["spec"]["feSpec"]["service"] = {"type": "ClusterIP", "futureServiceField": "x"}
    return doc


async def test_stored_cluster_with_unknown_fields_reconciles_and_the_webhook_stays_strict() -> None:
    doc = _with_unknown_fields()
    with pytest.raises(InvalidResource):
        parse_cluster(doc)
    _, ignored = unknown_fields(doc)
    assert sorted(ignored) == [
        "spec.beSpec.futureKnob",
        "spec.feSpec.service.futureServiceField",
        "spec.futureTopLevel",
    ]
    assert parse_stored_cluster(doc).spec.be_spec is not None
    kube = await _reconcile(doc)
    assert kube.status is not None
    assert "InvalidSpec" not in str(kube.status), kube.status
    assert {o["kind"] for o in kube.applied} >= {"StatefulSet", "Service"}
    verdict = admission.validate_doris_cluster(admission.Request.from_review(_review(doc)))
    assert not verdict.allowed and "futureKnob" in verdict.message


def test_unknown_fields_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    doc = _with_unknown_fields()
    doc["metadata"]["name"] = "logged-once"
    for _ in range(3):
        parse_stored_cluster(doc)
    lines = [r for r in caplog.records if "doesn't know" in r.getMessage()]
    assert len(lines) == 1 and "spec.beSpec.futureKnob" in lines[0].getMessage()


def test_real_problems_still_fail_the_lenient_parse() -> None:
    doc = _with_unknown_fields()
    doc["spec"]["beSpec"]["replicas"] = -1
    with pytest.raises(InvalidResource) as err:
        parse_stored_cluster(doc)
    assert "spec.beSpec.replicas" in str(err.value)


# ---- pod security ---------------------------------------------------------------------------------------


def _review(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "request": {
            "uid": "1",
            "kind": {"group": "doris.selectdb.com", "version": "v1", "kind": "DorisCluster"},
            "operation": "CREATE",
            "name": obj["metadata"]["name"],
            "namespace": "doris",
            "userInfo": {"username": "alice"},
            "object": obj,
        }
    }


def _privileged_overlay() -> dict[str, Any]:
    doc = _doc()
    doc["spec"]["beSpec"]["podTemplate"] = {
        "spec": {
            "hostPID": True,
            "containers": [{"name": "be", "securityContext": {"privileged": True}}],
            "initContainers": [
                {"name": "x", "image": "busybox", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}
            ],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        }
    }
    return doc


def test_pod_template_may_not_add_privileged_settings() -> None:
    cluster = parse_cluster(_privileged_overlay())
    problems = {p.path for p in podsecurity.overlay_problems(cluster)}
    base = "spec.beSpec.podTemplate.spec"
    assert problems == {
        f"{base}.hostPID",
        f"{base}.containers[0].securityContext.privileged",
        f"{base}.initContainers[0].securityContext.capabilities.add",
        f"{base}.volumes[0].hostPath",
    }
    assert podsecurity.overlay_problems(cluster, podsecurity.Policy(allow_privileged=True)) == []
    verdict = admission.validate_doris_cluster(admission.Request.from_review(_review(_privileged_overlay())))
    assert not verdict.allowed and f"{base}.volumes[0].hostPath" in verdict.message
    harmless = _doc()
    harmless["spec"]["beSpec"]["podTemplate"] = {
        "metadata": {"labels": {"team": "a"}},
        "spec": {"priority": 1},
    }
    assert podsecurity.overlay_problems(parse_cluster(harmless)) == []


async def test_controller_refuses_a_privileged_overlay_it_was_never_asked_about() -> None:
    kube = await _reconcile(_privileged_overlay())
    assert not kube.applied
    assert kube.status is not None and "hostPath" in str(kube.status)
    policy = podsecurity.POLICY
    policy.allow_privileged = True
    try:
        allowed = await _reconcile(_privileged_overlay())
    finally:
        policy.allow_privileged = False
    assert allowed.applied


def test_privileged_contract_containers_get_admission_warnings() -> None:
    doc = _doc()
    doc["spec"]["beSpec"]["systemInitialization"] = {"command": ["/sbin/sysctl", "-w", "vm.swappiness=0"]}
    doc["spec"]["beSpec"]["enableWorkloadGroup"] = True
    verdict = admission.validate_doris_cluster(admission.Request.from_review(_review(doc)))
    assert verdict.allowed
    text = " ".join(verdict.warnings)
    assert "spec.beSpec.systemInitialization" in text and "spec.beSpec.enableWorkloadGroup" in text
    plain = admission.validate_doris_cluster(admission.Request.from_review(_review(_doc()))).warnings
    assert not [w for w in plain if "systemInitialization" in w or "enableWorkloadGroup" in w]
