"""The admission webhook behind a real kube-apiserver: bad manifests rejected by the webhook and by CEL,
defaults on the stored object, managed StatefulSets guarded by the ValidatingAdmissionPolicy, CEL when
the webhook is down, certificate rotation with no failed admission, and cert-manager mode."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from doris_operator.builders import names
from doris_operator.webhook import certs
from harness import CRD, Kubectl, eventually, free_port
from identity import ServiceAccountIdentity

pytestmark = pytest.mark.cluster

FE_IMAGE = "selectdb/doris.fe-ubuntu:2.1.8"
BE_IMAGE = "selectdb/doris.be-ubuntu:2.1.8"


class WebhookProcess:
    """``doris-operator webhook`` in its own process, with a URL clientConfig on 127.0.0.1."""

    def __init__(self, cluster: Any, log_dir: Path, name: str, namespace: str, *extra: str) -> None:
        self.cluster = cluster
        self.name = name
        self.namespace = namespace
        self.port = free_port()
        self.extra = list(extra)
        self.log_path = log_dir / f"webhook-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def args(self) -> list[str]:
        return [
            "--host", "127.0.0.1", "--port", str(self.port), "--url", f"https://127.0.0.1:{self.port}",
            "--namespace", self.namespace, "--config-name", self.name, "--secret-name", f"{self.name}-cert",
            "--policy-name", f"{self.name}-statefulsets", *self.extra,
        ]  # fmt: skip

    def start(self) -> WebhookProcess:
        env = dict(self.cluster.env())
        env["LOG_LEVEL"] = "INFO"
        mark = self.log().count("serving on port")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "doris_operator", "webhook", *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"webhook exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            return self.log().count("serving on port") > mark

        eventually(up, 30, 0.1, what=f"webhook {self.name} listening")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def denials(self, name: str) -> int:
        return self.log().count(f"denied DorisCluster {self.namespace}/{name}:")

    def peer(self, ca_bundle: bytes) -> x509.Certificate:
        """A fresh TLS handshake verified against ``ca_bundle``, as a new apiserver connection would."""
        ctx = ssl.create_default_context(cadata=ca_bundle.decode())
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock,
            ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    def uninstall(self, kubectl: Kubectl) -> None:
        for kind, name in (
            ("validatingwebhookconfiguration", self.name),
            ("mutatingwebhookconfiguration", self.name),
            ("validatingadmissionpolicybinding", f"{self.name}-statefulsets"),
            ("validatingadmissionpolicy", f"{self.name}-statefulsets"),
        ):
            kubectl("delete", kind, name, "--ignore-not-found", check=False)


def ca_bundle(kubectl: Kubectl, config: str, kind: str = "validatingwebhookconfiguration") -> bytes:
    obj = kubectl.json(kind, config)
    return base64.b64decode(obj["webhooks"][0]["clientConfig"].get("caBundle", ""))


def doris(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "feSpec": {"replicas": 3, "image": FE_IMAGE},
        "beSpec": {"replicas": 3, "image": BE_IMAGE},
    }
    for key, value in spec.items():
        if value is None:
            body.pop(key, None)
        elif isinstance(value, dict) and isinstance(body.get(key), dict):
            merged = {**body[key], **value}
            body[key] = {k: v for k, v in merged.items() if v is not None}  # None removes a field
        else:
            body[key] = value
    return {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def apply(kubectl: Kubectl, obj: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl apply; the CompletedProcess (no exception on failure)."""
    result: subprocess.CompletedProcess[str] = kubectl.cluster.kubectl(
        "apply", "-f", "-", *args, input=yaml.safe_dump(obj), check=False
    )
    return result


@pytest.fixture(scope="module")
def kubectl(kube_cluster: Any) -> Kubectl:
    k = Kubectl(kube_cluster)
    k("apply", "-f", str(CRD))  # client-side, as the other modules do
    eventually(lambda: "dorisclusters" in k("api-resources", "--api-group=doris.selectdb.com"), 30)
    return k


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl) -> Iterator[str]:
    ns = kubectl.new_namespace("wh")
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(
    kube_cluster: Any, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceAccountIdentity]:
    identity = ServiceAccountIdentity(
        kube_cluster, namespace, "doris-operator", tmp_path_factory.mktemp("sa")
    )
    identity.create()
    assert identity.whoami() == identity.username
    yield identity
    identity.delete()


@pytest.fixture(scope="module")
def webhook(
    kube_cluster: Any,
    kubectl: Kubectl,
    namespace: str,
    operator: ServiceAccountIdentity,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookProcess]:
    proc = WebhookProcess(
        kube_cluster, tmp_path_factory.mktemp("webhook"), "doris-wh-test", namespace,
        "--operator-user", operator.username,
    )  # fmt: skip
    try:
        proc.start()
        probe = doris("probe", namespace, feSpec={"hostAliases": [{"ip": "nope", "hostnames": ["a"]}]})

        def wired() -> bool:
            result = apply(kubectl, probe, "--dry-run=server")
            return result.returncode != 0 and "spec.feSpec.hostAliases[0].ip" in result.stderr

        eventually(wired, 30, 0.2, what="the apiserver calling the webhook")
        yield proc
    finally:
        proc.stop()
        proc.uninstall(kubectl)


# ---- validation through the webhook -----------------------------------------------------------------------

NP = {"type": "NodePort"}
PVC = {"resources": {"requests": {"storage": "10Gi"}}}
# (id, spec changes or metadata.name, field path, words): all beyond what the schema and CEL check, so the
# webhook is the one answering
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("name-dns-label", {"metadata.name": "a.b"}, "metadata.name", "must be a DNS label"),
    ("name-too-long", {"metadata.name": "n" * 50}, "metadata.name", "at most 45 fit"),
    (
        "init-image",
        {"feSpec": {"systemInitialization": {"initImage": "Not An Image"}}},
        "spec.feSpec.systemInitialization.initImage",
        "not a valid image reference",
    ),
    (
        "target-port-missing",
        {"feSpec": {"service": {**NP, "servicePorts": [{"nodePort": 31010}]}}},
        "spec.feSpec.service.servicePorts[0].targetPort",
        "is required",
    ),
    (
        "node-port-shared",
        {
            "feSpec": {"service": {**NP, "servicePorts": [{"nodePort": 31020, "targetPort": 9030}]}},
            "beSpec": {"service": {**NP, "servicePorts": [{"nodePort": 31020, "targetPort": 9050}]}},
        },
        "spec.beSpec.service.servicePorts[0].nodePort",
        "31020 is already used by spec.feSpec.service.servicePorts[0]",
    ),
    (
        "broker-node-ports",
        {
            "brokerSpec": {
                "image": "selectdb/doris.broker-ubuntu:2.1.8",
                "service": {**NP, "servicePorts": [{"nodePort": 31030, "targetPort": 8000}]},
            }
        },
        "spec.brokerSpec.service.servicePorts",
        "the Broker has no access Service",
    ),
    (
        "requests-over-limits",
        {"beSpec": {"requests": {"cpu": 8}, "limits": {"cpu": 4}}},
        "spec.beSpec.requests.cpu",
        "8 is more than the limit 4",
    ),
    (
        "traffic-policy-cluster-ip",
        {"feSpec": {"service": {"externalTrafficPolicy": "Local"}}},
        "spec.feSpec.service.externalTrafficPolicy",
        "NodePort and LoadBalancer Services only",
    ),
    (
        "source-ranges-not-lb",
        {"feSpec": {"service": {**NP, "loadBalancerSourceRanges": ["10.0.0.0/8"]}}},
        "spec.feSpec.service.loadBalancerSourceRanges",
        "LoadBalancer Services only",
    ),
    (
        "source-range-cidr",
        {"feSpec": {"service": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/33"]}}},
        "spec.feSpec.service.loadBalancerSourceRanges[0]",
        "not a CIDR",
    ),
    (
        "pv-name-missing",
        {"beSpec": {"persistentVolumes": [{"mountPath": "/data", "persistentVolumeClaimSpec": PVC}]}},
        "spec.beSpec.persistentVolumes[0].name",
        "is required",
    ),
    (
        "pv-name-dns",
        {
            "beSpec": {
                "persistentVolumes": [
                    {"name": "BE_Data", "mountPath": "/d", "persistentVolumeClaimSpec": PVC}
                ]
            }
        },
        "spec.beSpec.persistentVolumes[0].name",
        "must be a DNS label",
    ),
    (
        "pv-storage-missing",
        {"beSpec": {"persistentVolumes": [{"name": "data", "mountPath": "/data"}]}},
        "spec.beSpec.persistentVolumes[0].persistentVolumeClaimSpec.resources.requests.storage",
        "is required",
    ),
    (
        "pv-mount-relative",
        {
            "beSpec": {
                "persistentVolumes": [{"name": "data", "mountPath": "data", "persistentVolumeClaimSpec": PVC}]
            }
        },
        "spec.beSpec.persistentVolumes[0].mountPath",
        "must be an absolute path",
    ),
    (
        "pv-mount-clash",
        {
            "beSpec": {
                "persistentVolumes": [
                    {"name": "a", "mountPath": "/data", "persistentVolumeClaimSpec": PVC},
                    {"name": "b", "mountPath": "/data", "persistentVolumeClaimSpec": PVC},
                ]
            }
        },
        "spec.beSpec.persistentVolumes[1].mountPath",
        "/data is already mounted by spec.beSpec.persistentVolumes[0]",
    ),
    (
        "env-twice",
        {"feSpec": {"envVars": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
        "spec.feSpec.envVars[1].name",
        "'A' is set twice",
    ),
    (
        "env-value-and-from",
        {
            "feSpec": {
                "envVars": [
                    {"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ]
            }
        },
        "spec.feSpec.envVars[0]",
        "set value or valueFrom, not both",
    ),
    (
        "toleration-exists-value",
        {"beSpec": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
        "spec.beSpec.tolerations[0].value",
        "must be empty when operator is Exists",
    ),
    (
        "host-alias-ip",
        {"feSpec": {"hostAliases": [{"ip": "ten.0.0.1", "hostnames": ["a"]}]}},
        "spec.feSpec.hostAliases[0].ip",
        "is not an IP address",
    ),
    (
        "pod-template-extra",
        {"feSpec": {"podTemplate": {"spec": {}, "status": {}}}},
        "spec.feSpec.podTemplate",
        "only metadata and spec may be set",
    ),
    (
        "autoscaler-max-missing",
        {"cnSpec": {"image": BE_IMAGE, "autoScalingPolicy": {"minReplicas": 1}}},
        "spec.cnSpec.autoScalingPolicy.maxReplicas",
        "is required and must be at least 1",
    ),
    (
        "shared-pvc-relative",
        {"sharedPersistentVolumeClaims": [{"persistentVolumeClaimName": "x", "mountPath": "share"}]},
        "spec.sharedPersistentVolumeClaims[0].mountPath",
        "must be an absolute path",
    ),
    (
        "keytab-relative",
        {"kerberosInfo": {"keytabPath": "keytab"}},
        "spec.kerberosInfo.keytabPath",
        "must be an absolute path",
    ),
    (
        "config-map-name-missing",
        {"feSpec": {"configMapInfo": {"configMaps": [{"mountPath": "/etc/x"}]}}},
        "spec.feSpec.configMapInfo.configMaps[0].configMapName",
        "is required",
    ),
    (
        "secret-name-missing",
        {"feSpec": {"secrets": [{"mountPath": "/etc/s"}]}},
        "spec.feSpec.secrets[0].secretName",
        "is required",
    ),
]


@pytest.mark.parametrize(("changes", "path", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_manifest_rejected_by_the_webhook(
    kubectl: Kubectl, namespace: str, webhook: WebhookProcess, changes: dict[str, Any], path: str, words: str
) -> None:
    changes = dict(changes)
    name = changes.pop("metadata.name", f"bad-{uuid.uuid4().hex[:6]}")
    result = apply(kubectl, doris(name, namespace, **changes))
    assert result.returncode != 0, f"{name} was accepted"
    assert f"{path}: {words}" in result.stderr or (path in result.stderr and words in result.stderr), (
        result.stderr
    )
    assert "failed calling webhook" not in result.stderr
    assert webhook.denials(name) == 1, f"the webhook did not deny {name}: {result.stderr}"
    assert kubectl.cluster.kubectl("get", "dcr", name, "-n", namespace, check=False).returncode != 0


def test_every_problem_is_listed(kubectl: Kubectl, namespace: str, webhook: WebhookProcess) -> None:
    obj = doris(
        "many-problems",
        namespace,
        feSpec={"envVars": [{"name": "A"}, {"name": "A"}], "hostAliases": [{"ip": "x"}]},
        beSpec={"requests": {"cpu": 8}, "limits": {"cpu": 4}},
    )
    result = apply(kubectl, obj)
    assert result.returncode != 0
    for path in ("spec.feSpec.envVars[1].name", "spec.feSpec.hostAliases[0].ip", "spec.beSpec.requests.cpu"):
        assert path in result.stderr, result.stderr


def test_defaults_are_visible_on_the_stored_object(
    kubectl: Kubectl, namespace: str, webhook: WebhookProcess
) -> None:
    obj = doris("defaults", namespace, feSpec={"replicas": 3, "service": {}}, beSpec={"replicas": None})
    result = apply(kubectl, obj)
    assert result.returncode == 0, result.stderr
    spec = kubectl.json("dcr", "defaults", "-n", namespace)["spec"]
    assert spec["feSpec"]["electionNumber"] == 3
    assert spec["feSpec"]["service"] == {"type": "ClusterIP"}
    assert spec["beSpec"]["replicas"] == 1
    small = doris("small-fe", namespace, feSpec={"replicas": None}, beSpec=None)
    assert apply(kubectl, small).returncode == 0
    fe = kubectl.json("dcr", "small-fe", "-n", namespace)["spec"]["feSpec"]
    assert fe["replicas"] == 1 and "electionNumber" not in fe  # ELECT_NUMBER stays the builder's 3
    # applying the same manifest again changes nothing (the defaults are not fought over)
    generation = kubectl.json("dcr", "defaults", "-n", namespace)["metadata"]["generation"]
    assert apply(kubectl, obj).returncode == 0
    assert kubectl.json("dcr", "defaults", "-n", namespace)["metadata"]["generation"] == generation


def test_unknown_target_port_is_admitted_with_a_warning(
    kubectl: Kubectl, namespace: str, webhook: WebhookProcess
) -> None:
    """As the official operator does (its chart's NodePort example has BE targetPort 9040): the entry is
    ignored, and kubectl shows why."""
    svc = {**NP, "servicePorts": [{"nodePort": 31005, "targetPort": 9999}]}
    result = apply(kubectl, doris("unknown-port", namespace, beSpec={"service": svc}), "--dry-run=server")
    assert result.returncode == 0, result.stderr
    assert (
        "Warning: spec.beSpec.service.servicePorts[0].targetPort: 9999 is not a port of BE" in result.stderr
    )


def test_deprecated_admin_user_warns(kubectl: Kubectl, namespace: str, webhook: WebhookProcess) -> None:
    result = apply(kubectl, doris("legacy-admin", namespace, adminUser={"name": "root", "password": "pw"}))
    assert result.returncode == 0, result.stderr
    assert "Warning: spec.adminUser is deprecated" in result.stderr and "authSecret" in result.stderr


def test_update_checks(kubectl: Kubectl, namespace: str, webhook: WebhookProcess) -> None:
    claim = {"storageClassName": "std", "resources": {"requests": {"storage": "100Gi"}}}
    pvs = [{"name": "data", "mountPath": "/opt/apache-doris/be/storage", "persistentVolumeClaimSpec": claim}]
    base = doris("updates", namespace, feSpec={"replicas": 2}, beSpec={"persistentVolumes": pvs})
    assert apply(kubectl, base).returncode == 0

    def change(edit: Any) -> subprocess.CompletedProcess[str]:
        obj = copy.deepcopy(base)
        edit(obj["spec"])
        return apply(kubectl, obj)

    def storage(size: str) -> Any:
        return lambda s: s["beSpec"]["persistentVolumes"][0]["persistentVolumeClaimSpec"]["resources"][
            "requests"
        ].update(storage=size)

    shrink = change(storage("50Gi"))
    assert shrink.returncode != 0 and "spec.beSpec.persistentVolumes" in shrink.stderr
    assert "storage can't shrink" in shrink.stderr
    renamed = change(lambda s: s["beSpec"]["persistentVolumes"][0].update(name="data2"))
    assert renamed.returncode != 0 and "can't be added, removed or renamed" in renamed.stderr
    moved = change(lambda s: s["beSpec"]["persistentVolumes"][0].update(mountPath="/data"))
    assert moved.returncode != 0 and "mountPath can't change" in moved.stderr
    # FE 2 -> 1 without electionNumber: only the webhook knows the default (3) would lose a follower
    scale_in = change(lambda s: s["feSpec"].update(replicas=1))
    assert scale_in.returncode != 0, scale_in.stderr
    assert "spec.feSpec.replicas: scaling FE from 2 to 1 would remove followers" in scale_in.stderr
    assert webhook.denials("updates") == 1
    grown = change(storage("200Gi"))
    assert grown.returncode == 0, grown.stderr


# ---- the StatefulSet policy -------------------------------------------------------------------------------


def statefulset(name: str, namespace: str, cluster: str | None) -> dict[str, Any]:
    """A StatefulSet labelled as the operator labels ``{cluster}-be``, or an unmanaged one."""
    labels = selector = {"app": name}
    if cluster is not None:
        labels, selector = names.object_labels(cluster, "be"), names.selector_labels(cluster, "be")
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [{"name": "be", "image": BE_IMAGE}]},
            },
        },
    }


TEMPLATE_PATCH = json.dumps({"spec": {"template": {"metadata": {"annotations": {"touched": "yes"}}}}})


def test_managed_statefulsets_are_guarded(
    kubectl: Kubectl,
    namespace: str,
    webhook: WebhookProcess,
    operator: ServiceAccountIdentity,
    tmp_path: Path,
) -> None:
    sts = statefulset("guarded-be", namespace, "guarded")
    operator.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=doris-operator",
        "-f",
        "-",
        input=yaml.safe_dump(sts),
    )
    admin = kubectl.cluster.kubectl

    def replicas_now() -> int:
        return int(kubectl.json("statefulset", "guarded-be", "-n", namespace)["spec"]["replicas"])

    def denied_scale() -> str:
        # a different count each time: until the policy is in force a scale succeeds, and a repeat would be
        # a no-op the policy rightly lets through
        target = f"--replicas={replicas_now() + 1}"
        result = admin("scale", "statefulset", "guarded-be", "-n", namespace, target, check=False)
        return result.stderr if result.returncode != 0 else ""

    scale = eventually(denied_scale, 20, 0.2, what="kubectl scale denied by the policy")
    assert "DorisCluster guarded" in scale and "spec.beSpec.replicas" in scale, scale
    assert f"kubectl -n {namespace} edit doriscluster guarded" in scale

    template = admin("patch", "statefulset", "guarded-be", "-n", namespace, "-p", TEMPLATE_PATCH, check=False)
    assert template.returncode != 0 and "its pod template comes from spec.beSpec" in template.stderr
    five = '{"spec":{"replicas":5}}'
    replicas = admin(
        "patch", "statefulset", "guarded-be", "-n", namespace, "--type=merge", "-p", five, check=False
    )
    assert replicas.returncode != 0 and "DorisCluster guarded" in replicas.stderr
    restart = admin("rollout", "restart", "statefulset", "guarded-be", "-n", namespace, check=False)
    assert restart.returncode != 0 and "DorisCluster guarded" in restart.stderr
    unlabel = admin(
        "label", "statefulset", "guarded-be", "-n", namespace, f"{names.LABEL_MANAGED_BY}-", check=False
    )
    assert unlabel.returncode != 0 and names.LABEL_MANAGED_BY in unlabel.stderr
    # metadata and no-op changes are fine
    admin("annotate", "statefulset", "guarded-be", "-n", namespace, "note=ok")
    admin("scale", "statefulset", "guarded-be", "-n", namespace, f"--replicas={replicas_now()}")

    # another cluster-admin ServiceAccount is not the operator
    intruder = ServiceAccountIdentity(kubectl.cluster, namespace, "intruder", tmp_path).create()
    try:
        result = intruder.kubectl(
            "scale", "statefulset", "guarded-be", "-n", namespace, "--replicas=2", check=False
        )
        assert result.returncode != 0 and "DorisCluster guarded" in result.stderr
    finally:
        intruder.delete()

    # the operator's own changes go through, scale subresource included
    operator.kubectl("scale", "statefulset", "guarded-be", "-n", namespace, "--replicas=2")
    operator.kubectl("patch", "statefulset", "guarded-be", "-n", namespace, "-p", TEMPLATE_PATCH)
    sts["spec"]["replicas"] = 3
    operator.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=doris-operator",
        "-f",
        "-",
        input=yaml.safe_dump(sts),
    )
    stored = kubectl.json("statefulset", "guarded-be", "-n", namespace)
    assert stored["spec"]["replicas"] == 3

    # a StatefulSet the operator does not manage is nobody's business
    kubectl.apply(statefulset("plain", namespace, None), namespace)
    admin("scale", "statefulset", "plain", "-n", namespace, "--replicas=2")
    admin("patch", "statefulset", "plain", "-n", namespace, "-p", TEMPLATE_PATCH)
    assert kubectl.json("statefulset", "plain", "-n", namespace)["spec"]["replicas"] == 2


# ---- CEL when the webhook is down -------------------------------------------------------------------------

CEL_CASES: list[tuple[dict[str, Any], str, str]] = [
    (
        {"feSpec": {"replicas": 2, "electionNumber": 3}},
        "spec.feSpec.electionNumber",
        "electionNumber must be <= replicas",
    ),
    ({"beSpec": {"image": " "}}, "spec.beSpec.image", "image must not be empty"),
    ({"beSpec": {"image": "Not An Image"}}, "spec.beSpec.image", "image must be an image reference"),
    (
        {"feSpec": {"service": {**NP, "servicePorts": [{"nodePort": 8080, "targetPort": 9030}]}}},
        "spec.feSpec.service.servicePorts[0].nodePort",
        "nodePort must be in the node port range 30000-32767",
    ),
    (
        {"feSpec": {"service": {"servicePorts": [{"nodePort": 31000, "targetPort": 9030}]}}},
        "spec.feSpec.service.servicePorts",
        "needs service.type NodePort or LoadBalancer",
    ),
    ({"adminUser": {"name": "admin"}}, "spec.adminUser.name", "'admin' can't manage nodes"),
    ({"feSpec": None}, "spec", "BE, CN and Broker need an FE"),
    (
        {"cnSpec": {"image": BE_IMAGE, "autoScalingPolicy": {"minReplicas": 4, "maxReplicas": 2}}},
        "spec.cnSpec.autoScalingPolicy.minReplicas",
        "minReplicas must be <= maxReplicas",
    ),
]


def test_cel_rules_hold_when_the_webhook_is_down(
    kubectl: Kubectl, namespace: str, webhook: WebhookProcess
) -> None:
    assert apply(kubectl, doris("survivor", namespace)).returncode == 0
    webhook.stop()
    try:
        # fail closed: a change the webhook can't check is refused (failurePolicy Fail) ...
        refused = apply(kubectl, doris("unchecked", namespace), "--dry-run=server")
        assert refused.returncode != 0 and "failed calling webhook" in refused.stderr, refused.stderr
        # ... but the apiserver's own CEL rules still answer, with their own messages
        for changes, path, words in CEL_CASES:
            result = apply(
                kubectl, doris(f"cel-{uuid.uuid4().hex[:6]}", namespace, **changes), "--dry-run=server"
            )
            assert result.returncode != 0
            assert path in result.stderr and words in result.stderr, result.stderr
            assert "failed calling webhook" not in result.stderr
        # metadata-only updates never call the webhook (matchConditions), so they still work
        kubectl("label", "dcr", "survivor", "-n", namespace, "team=storage")
        kubectl("annotate", "dcr", "survivor", "-n", namespace, "note=webhook-down")
    finally:
        webhook.start()

    def back() -> bool:
        return apply(kubectl, doris("unchecked", namespace), "--dry-run=server").returncode == 0

    eventually(back, 30, 0.2, what="admissions succeeding again")


# ---- certificate rotation ---------------------------------------------------------------------------------


def test_certificate_rotation_without_failed_admissions(
    kube_cluster: Any, kubectl: Kubectl, namespace: str, webhook: WebhookProcess, tmp_path: Path
) -> None:
    """A 20-second certificate (renewed with a third left, CA published 2 s before it is served): while it
    is replaced and the old CA pruned, every admission through the webhook succeeds (or is denied by it,
    for the bad manifests), and a new connection always verifies against the published bundle."""
    rot = WebhookProcess(
        kube_cluster, tmp_path, "doris-wh-rotation", namespace,
        "--no-policy", "--cert-validity", "20s", "--ca-propagation", "2s", "--operator-user", "nobody",
    )  # fmt: skip
    rot.start()
    try:
        bundle_sizes: list[int] = []
        serials: list[int] = []
        failures: list[str] = []
        bad_sent = 0
        good = doris("rotation-probe", namespace)
        deadline = time.monotonic() + 60
        started = time.monotonic()
        while time.monotonic() < deadline:
            result = apply(kubectl, good, "--server-side", "--dry-run=server")
            if result.returncode != 0:
                failures.append(result.stderr)
            bad_sent += 1
            bad = doris("rotation-bad", namespace, feSpec={"hostAliases": [{"ip": "x"}]})
            denied = apply(kubectl, bad, "--server-side", "--dry-run=server")
            if "spec.feSpec.hostAliases[0].ip" not in denied.stderr or "failed calling" in denied.stderr:
                failures.append(denied.stderr)
            bundle = ca_bundle(kubectl, rot.name)
            bundle_sizes.append(len(certs.load_bundle(bundle)))
            try:
                serial = rot.peer(bundle).serial_number
            except (OSError, ssl.SSLError) as err:
                failures.append(f"handshake against the published bundle: {err}")
            else:
                if not serials or serials[-1] != serial:
                    serials.append(serial)
            rotated = len(serials) >= 2 and 2 in bundle_sizes
            if rotated and bundle_sizes[-1] == 1:
                break  # renewed, promoted, and the old CA pruned
        elapsed = time.monotonic() - started
        assert not failures, failures[:3]
        assert len(serials) >= 2, f"no rotation within {elapsed:.0f}s: {rot.log()[-2000:]}"
        assert 2 in bundle_sizes and bundle_sizes[-1] == 1, bundle_sizes
        assert rot.denials("rotation-bad") == bad_sent  # the rotating webhook answered every time
        log = rot.log()
        assert "staged a new CA" in log and "promoting the staged serving certificate" in log
        secret = kubectl.json("secret", f"{rot.name}-cert", "-n", namespace)
        assert secret["type"] == "kubernetes.io/tls" and {"tls.crt", "tls.key", "ca.crt"} <= set(
            secret["data"]
        )
    finally:
        rot.stop()
        rot.uninstall(kubectl)


# ---- cert-manager mode ------------------------------------------------------------------------------------


def test_cert_manager_mode(
    kube_cluster: Any, kubectl: Kubectl, namespace: str, webhook: WebhookProcess, tmp_path: Path
) -> None:
    """Certificates from a mounted directory, reloaded when they change; caBundle left to cainjector
    (simulated here with a patch by another field manager) and never overwritten by the webhook."""
    first, ca_a = certs.issue(["127.0.0.1"], dt.timedelta(hours=1))
    second, ca_b = certs.issue(["127.0.0.1"], dt.timedelta(hours=1))
    cert_dir = tmp_path / "tls"
    cert_dir.mkdir()
    (cert_dir / "tls.crt").write_bytes(first.cert_pem)
    (cert_dir / "tls.key").write_bytes(first.key_pem)
    cm = WebhookProcess(
        kube_cluster, tmp_path, "doris-wh-cm", namespace, "--no-policy", "--cert-dir", str(cert_dir),
        "--cert-manager-certificate", "wh-cert", "--check-interval", "0.5", "--operator-user", "nobody",
    )  # fmt: skip
    cm.start()
    try:
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            obj = kubectl.json(kind, cm.name)
            assert obj["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{namespace}/wh-cert"
            assert "caBundle" not in obj["webhooks"][0]["clientConfig"]
            injected = base64.b64encode(ca_a + ca_b).decode()
            patch = json.dumps(
                [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": injected}]
            )
            kubectl("patch", kind, cm.name, "--type=json", "-p", patch, "--field-manager=cainjector")

        bad = doris("cm-bad", namespace, feSpec={"hostAliases": [{"ip": "x"}]})

        def answered_by_cm(count: int) -> bool:
            apply(kubectl, bad, "--dry-run=server")
            return cm.denials("cm-bad") >= count

        eventually(lambda: answered_by_cm(1), 20, 0.2, what="the cert-manager-mode webhook answering")
        assert cm.peer(ca_a + ca_b).serial_number == first.serial

        cm.stop()
        cm.start()  # re-applies its configurations: cainjector's caBundle stays
        assert ca_bundle(kubectl, cm.name) == ca_a + ca_b

        (cert_dir / "tls.key").write_bytes(second.key_pem)
        (cert_dir / "tls.crt").write_bytes(second.cert_pem)
        eventually(lambda: cm.peer(ca_a + ca_b).serial_number == second.serial, 20, 0.2, what="reloaded cert")
        denials = cm.denials("cm-bad")
        eventually(lambda: answered_by_cm(denials + 1), 20, 0.2, what="answers with the renewed certificate")
    finally:
        cm.stop()
        cm.uninstall(kubectl)
