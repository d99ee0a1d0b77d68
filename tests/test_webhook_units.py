"""The admission webhook without an apiserver: decisions, defaults, configurations, certificates and their
rotation, and the TLS server reloading a certificate without dropping what is in flight."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import json
import random
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from cryptography import x509

from doris_operator import cli
from doris_operator.api.validation import Problem, parse_cluster
from doris_operator.builders import build
from doris_operator.webhook import admission, certs, configs
from doris_operator.webhook.admission import REGISTRY, AdmissionKind, Registry, Request, Verdict
from doris_operator.webhook.server import ReloadableTLS, WebhookOptions, build_app

ROOT = Path(__file__).resolve().parents[1]
GOOD: dict[str, Any] = {
    "apiVersion": "doris.selectdb.com/v1",
    "kind": "DorisCluster",
    "metadata": {"name": "dc", "namespace": "doris"},
    "spec": {
        "feSpec": {"replicas": 3, "image": "selectdb/doris.fe-ubuntu:2.1.8"},
        "beSpec": {"replicas": 3, "image": "selectdb/doris.be-ubuntu:2.1.8"},
    },
}


def review(
    obj: dict[str, Any] | None, old: dict[str, Any] | None = None, op: str = "CREATE"
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0f0e0d0c",
            "kind": {"group": "doris.selectdb.com", "version": "v1", "kind": "DorisCluster"},
            "resource": {"group": "doris.selectdb.com", "version": "v1", "resource": "dorisclusters"},
            "operation": op,
            "name": "dc",
            "namespace": "doris",
            "userInfo": {"username": "alice"},
            "object": obj,
            "oldObject": old,
        },
    }


def cluster(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


def with_volumes(comp: str, volumes: list[dict[str, Any]], base: dict[str, Any] = GOOD) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    doc["spec"][f"{comp}Spec"]["persistentVolumes"] = volumes
    return doc


def volume(
    name: str, storage: Any = "100Gi", mount: str | None = None, sc: str | None = "std"
) -> dict[str, Any]:
    claim: dict[str, Any] = {"resources": {"requests": {"storage": storage}}}
    if sc is not None:
        claim["storageClassName"] = sc
    out: dict[str, Any] = {"name": name, "persistentVolumeClaimSpec": claim}
    out["mountPath"] = mount or f"/opt/apache-doris/be/{name}"
    return out


def validate(obj: dict[str, Any], old: dict[str, Any] | None = None) -> Verdict:
    op = "UPDATE" if old is not None else "CREATE"
    return admission.validate_doris_cluster(Request("u", op, obj, old))


# ---- validation -----------------------------------------------------------------------------------------


def test_review_denies_with_every_problem_named_and_http_shape() -> None:
    bad = cluster(
        feSpec={"replicas": 1, "electionNumber": 3, "image": "Bad Image"},
        beSpec={"image": "selectdb/doris.be-ubuntu:2.1.8", "requests": {"cpu": 8}, "limits": {"cpu": 4}},
    )
    out = admission.validate_review(admission.DORIS_CLUSTER, review(bad))
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    resp = out["response"]
    assert resp["uid"] == "0f0e0d0c" and resp["allowed"] is False
    status = resp["status"]
    assert status["code"] == 422 and status["reason"] == "Invalid"
    lines = status["message"].splitlines()
    assert {line.split(":", 1)[0] for line in lines} == {
        "spec.feSpec.image",
        "spec.feSpec.electionNumber",
        "spec.beSpec.requests.cpu",
    }
    assert {c["field"] for c in status["details"]["causes"]} == {line.split(":", 1)[0] for line in lines}


PERSISTENT = {"name": "data", "persistentVolumeClaimSpec": {"resources": {"requests": {"storage": "10Gi"}}}}


def test_review_allows_a_good_cluster_without_status() -> None:
    good = with_volumes("be", [PERSISTENT], with_volumes("fe", [PERSISTENT]))
    resp = admission.validate_review(admission.DORIS_CLUSTER, review(good))["response"]
    assert resp == {"uid": "0f0e0d0c", "allowed": True}


def test_data_on_an_emptydir_warns() -> None:
    warnings = validate(GOOD).warnings
    assert any(
        w.startswith("spec.beSpec.persistentVolumes: no persistent volume holds /opt/apache-doris/be/storage")
        and "emptyDir" in w
        for w in warnings
    ), warnings
    assert any(w.startswith("spec.feSpec.persistentVolumes") and "meta_dir" in w for w in warnings)
    # a volume elsewhere leaves the storage path on the container's filesystem
    elsewhere = with_volumes("be", [volume("logs", mount="/opt/apache-doris/be/log")])
    assert any("the container's filesystem" in w for w in validate(elsewhere).warnings)
    covered = with_volumes("be", [PERSISTENT])
    assert not any(w.startswith("spec.beSpec.persistentVolumes") for w in validate(covered).warnings)


def test_delete_and_connect_are_allowed_without_looking() -> None:
    resp = admission.validate_review(admission.DORIS_CLUSTER, review(None, GOOD, op="DELETE"))["response"]
    assert resp["allowed"] is True


def test_malformed_review_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"request\.uid"):
        admission.validate_review(admission.DORIS_CLUSTER, {"request": {}})


def test_deprecated_admin_user_warns_but_is_allowed() -> None:
    resp = admission.validate_review(
        admission.DORIS_CLUSTER, review(cluster(adminUser={"name": "root", "password": "x"}))
    )["response"]
    assert resp["allowed"] is True
    assert any("spec.adminUser is deprecated" in w and "authSecret" in w for w in resp["warnings"])
    both = validate(cluster(adminUser={"name": "root"}, authSecret="creds"))
    assert any("ignored because spec.authSecret is set" in w for w in both.warnings)


def test_other_deprecations_warn() -> None:
    obj = copy.deepcopy(GOOD)
    obj["spec"]["beSpec"]["configMapInfo"] = {"configMapName": "be-conf", "resolveKey": "be.conf"}
    obj["spec"]["beSpec"]["feAddress"] = {"ServiceName": "x", "endpoints": {"address": ["1.2.3.4"]}}
    warnings = validate(obj).warnings
    assert "spec.beSpec.configMapInfo.resolveKey is deprecated and ignored" in warnings
    assert any(w.startswith("spec.beSpec.feAddress.ServiceName is not used") for w in warnings)


def test_metadata_only_update_is_never_blocked() -> None:
    """An object stored before a rule existed can still be labelled, annotated and finalised."""
    stored = cluster(feSpec={"replicas": 1, "electionNumber": 3, "image": "x"})
    relabelled = copy.deepcopy(stored)
    relabelled["metadata"]["labels"] = {"team": "a"}
    assert validate(relabelled, stored).allowed
    changed = copy.deepcopy(relabelled)
    changed["spec"]["feSpec"]["replicas"] = 2
    assert not validate(changed, stored).allowed


OLD = with_volumes("be", [volume("data"), volume("log", "10Gi")])
UPDATES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "shrink",
        with_volumes("be", [volume("data", "50Gi"), volume("log", "10Gi")]),
        "spec.beSpec.persistentVolumes[0].persistentVolumeClaimSpec.resources.requests.storage",
        "50Gi is smaller than 100Gi",
    ),
    (
        "shrink-in-bytes",
        with_volumes("be", [volume("data"), volume("log", 1024)]),
        "spec.beSpec.persistentVolumes[1].persistentVolumeClaimSpec.resources.requests.storage",
        "volumes can't shrink",
    ),
    (
        "rename",
        with_volumes("be", [volume("data2"), volume("log", "10Gi")]),
        "spec.beSpec.persistentVolumes[0].name",
        "'data2' can't be added to an existing BE",
    ),
    (
        "remove",
        with_volumes("be", [volume("data")]),
        "spec.beSpec.persistentVolumes",
        "'log' can't be removed",
    ),
    (
        "mount-path",
        with_volumes("be", [volume("data", mount="/data"), volume("log", "10Gi")]),
        "spec.beSpec.persistentVolumes[0].mountPath",
        "can't change from '/opt/apache-doris/be/data' to '/data'",
    ),
    (
        "storage-class",
        with_volumes("be", [volume("data", sc="fast"), volume("log", "10Gi")]),
        "spec.beSpec.persistentVolumes[0].persistentVolumeClaimSpec.storageClassName",
        "can't change from 'std' to 'fast'",
    ),
    (
        "storage-class-removed",
        with_volumes("be", [volume("data", sc=None), volume("log", "10Gi")]),
        "spec.beSpec.persistentVolumes[0].persistentVolumeClaimSpec.storageClassName",
        "can't change from 'std' to None",
    ),
]


@pytest.mark.parametrize(("new", "path", "words"), [c[1:] for c in UPDATES], ids=[c[0] for c in UPDATES])
def test_update_checks(new: dict[str, Any], path: str, words: str) -> None:
    verdict = validate(new, OLD)
    assert not verdict.allowed
    found = [p for p in verdict.problems if p.path == path]
    assert found, verdict.message
    assert words in found[0].message
    assert "volumeClaimTemplates" in found[0].message or "shrink" in found[0].message


def test_volumes_of_a_component_that_had_none_cant_be_added() -> None:
    verdict = validate(with_volumes("fe", [volume("meta", mount="/opt/apache-doris/fe/doris-meta")]), GOOD)
    assert [p.path for p in verdict.problems] == ["spec.feSpec.persistentVolumes[0].name"]


def test_allowed_updates() -> None:
    grown = with_volumes("be", [volume("log", "20Gi"), volume("data", "1Ti")])  # reordered and grown
    assert validate(grown, OLD).allowed
    new_component = copy.deepcopy(OLD)
    new_component["spec"]["cnSpec"] = {
        "image": "selectdb/doris.be-ubuntu:2.1.8",
        "persistentVolumes": [volume("d")],
    }
    assert validate(new_component, OLD).allowed
    scaled = copy.deepcopy(OLD)
    scaled["spec"]["beSpec"]["replicas"] = 1
    assert validate(scaled, OLD).allowed


def test_fe_scale_in_below_the_default_election_number_is_refused() -> None:
    old = cluster(feSpec={"replicas": 2, "image": "selectdb/doris.fe-ubuntu:2.1.8"})
    new = cluster(feSpec={"replicas": 1, "image": "selectdb/doris.fe-ubuntu:2.1.8"})
    verdict = validate(new, old)
    assert [p.path for p in verdict.problems] == ["spec.feSpec.replicas"]
    assert "would remove followers" in verdict.problems[0].message
    assert validate(old, new).allowed  # scale-out is fine
    observers = cluster(
        feSpec={"replicas": 5, "electionNumber": 3, "image": "selectdb/doris.fe-ubuntu:2.1.8"}
    )
    fewer = cluster(feSpec={"replicas": 3, "electionNumber": 3, "image": "selectdb/doris.fe-ubuntu:2.1.8"})
    assert validate(fewer, observers).allowed  # observers may go


def test_problems_are_not_reported_twice() -> None:
    new = with_volumes("be", [volume("data", "50Gi"), volume("log", "10Gi")])
    new["spec"]["feSpec"]["electionNumber"] = 5
    verdict = validate(new, OLD)
    assert len({str(p) for p in verdict.problems}) == len(verdict.problems) == 2


# ---- defaults ---------------------------------------------------------------------------------------------


def apply_patch(obj: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """The RFC 6902 ``add`` operations the defaulter emits."""
    out = copy.deepcopy(obj)
    for op in patch:
        assert op["op"] == "add"
        *parents, last = op["path"].lstrip("/").split("/")
        node = out
        for key in parents:
            node = node[key]
        assert last not in node, f"{op['path']} overwrites a value"
        node[last] = op["value"]
    return out


def test_mutation_review_returns_a_base64_json_patch() -> None:
    obj = cluster(feSpec={"image": "selectdb/doris.fe-ubuntu:2.1.8", "replicas": 3, "service": {}})
    resp = admission.mutate_review(admission.DORIS_CLUSTER, review(obj))["response"]
    assert resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(resp["patch"]))
    assert apply_patch(obj, patch)["spec"]["feSpec"] == {
        "image": "selectdb/doris.fe-ubuntu:2.1.8",
        "replicas": 3,
        "electionNumber": 3,
        "service": {"type": "ClusterIP"},
    }


def test_nothing_to_default_means_no_patch() -> None:
    obj = cluster(
        feSpec={"image": "x", "replicas": 3, "electionNumber": 3}, beSpec={"image": "y", "replicas": 2}
    )
    resp = admission.mutate_review(admission.DORIS_CLUSTER, review(obj))["response"]
    assert resp == {"uid": "0f0e0d0c", "allowed": True}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"feSpec": {"image": "x"}}, {"feSpec": {"image": "x", "replicas": 1}}),
        ({"feSpec": {"image": "x", "replicas": 2}}, {"feSpec": {"image": "x", "replicas": 2}}),
        (
            {"feSpec": {"image": "x", "replicas": 5}},
            {"feSpec": {"image": "x", "replicas": 5, "electionNumber": 3}},
        ),
        (
            {"feSpec": {"image": "x", "replicas": 5, "electionNumber": 5}},
            {"feSpec": {"image": "x", "replicas": 5, "electionNumber": 5}},
        ),
        ({"feSpec": {"image": "x", "replicas": "three"}}, {"feSpec": {"image": "x", "replicas": "three"}}),
        ({"feSpec": {"image": "x", "replicas": True}}, {"feSpec": {"image": "x", "replicas": True}}),
        (
            {"cnSpec": {"image": "x", "autoScalingPolicy": {"maxReplicas": 4}}},
            {"cnSpec": {"image": "x", "autoScalingPolicy": {"maxReplicas": 4}}},
        ),
        (
            {"brokerSpec": {"image": "x", "service": {"type": "NodePort"}}},
            {"brokerSpec": {"image": "x", "replicas": 1, "service": {"type": "NodePort"}}},
        ),
        ({"feSpec": "garbage"}, {"feSpec": "garbage"}),
    ],
    ids=[
        "replicas",
        "few-fe",
        "election",
        "election-set",
        "wrong-type",
        "bool",
        "cn-autoscaled",
        "svc",
        "junk",
    ],
)
def test_defaults(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    obj = {"spec": spec}
    assert apply_patch(obj, admission.doris_cluster_defaults(obj))["spec"] == expected


def test_no_spec_no_defaults() -> None:
    assert admission.doris_cluster_defaults({"metadata": {}}) == []


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for path in sorted([*(ROOT / "examples").glob("*.yaml"), *(ROOT / "tests" / "data").glob("*.yaml")]):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and doc.get("kind") == "DorisCluster":
                out.append((f"{path.name}#{i}", doc))
    variants = [
        {"feSpec": {"image": "selectdb/doris.fe-ubuntu:2.1.8"}},
        {"feSpec": {"image": "selectdb/doris.fe-ubuntu:2.1.8", "replicas": 4}, "beSpec": {"image": "a/b"}},
        {
            "feSpec": {"image": "a/b", "service": {"servicePorts": [{"targetPort": 9030}]}},
            "brokerSpec": {"image": "c"},
        },
    ]
    for i, spec in enumerate(variants):
        out.append((f"variant{i}", {**GOOD, "spec": spec}))
    return out


@pytest.mark.parametrize("doc", [d for _, d in _manifests()], ids=[n for n, _ in _manifests()])
def test_defaults_never_change_what_runs(doc: dict[str, Any]) -> None:
    """The builder's output is the same with and without the defaults, and defaulting is idempotent."""
    defaulted = apply_patch(doc, admission.doris_cluster_defaults(doc))
    assert build(parse_cluster(defaulted)) == build(parse_cluster(doc))
    assert admission.doris_cluster_defaults(defaulted) == []
    assert validate(defaulted).allowed


# ---- registry and HTTP ------------------------------------------------------------------------------------


def test_registry_serves_more_kinds() -> None:
    registry = Registry()
    registry.register(admission.DORIS_CLUSTER)
    monitor = AdmissionKind(
        "doris.selectdb.com",
        "v1",
        "DorisMonitor",
        "dorismonitors",
        validate=lambda req: Verdict([Problem("spec.x", "no")]),
    )
    registry.register(monitor)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(monitor)
    assert registry.get("doris.selectdb.com", "dorismonitors") is monitor
    objs = configs.webhook_configurations(
        configs.ConfigOptions(url="https://127.0.0.1:9443"), registry, b"CA"
    )
    validating, mutating = objs
    assert [w["name"] for w in validating["webhooks"]] == [
        "validate.dorisclusters.doris.selectdb.com",
        "validate.dorismonitors.doris.selectdb.com",
    ]
    assert [w["name"] for w in mutating["webhooks"]] == ["mutate.dorisclusters.doris.selectdb.com"]
    assert validating["webhooks"][1]["clientConfig"]["url"] == (
        "https://127.0.0.1:9443/validate/doris.selectdb.com/dorismonitors"
    )
    assert REGISTRY.get("doris.selectdb.com", "dorisclusters") is admission.DORIS_CLUSTER


@pytest_asyncio.fixture(loop_scope="function")
async def http_client() -> AsyncIterator[Any]:
    from aiohttp.test_utils import TestClient, TestServer

    registry = Registry()
    registry.register(admission.DORIS_CLUSTER)

    def boom(req: Request) -> Verdict:
        raise RuntimeError("bug")

    registry.register(AdmissionKind("example.com", "v1", "Boom", "booms", validate=boom))
    client = TestClient(TestServer(build_app(registry, ready=lambda: True)))
    await client.start_server()
    yield client
    await client.close()


async def test_http_endpoints(http_client: Any) -> None:
    resp = await http_client.post(
        "/validate/doris.selectdb.com/dorisclusters", json=review(cluster(beSpec=None))
    )
    assert resp.status == 200
    assert (await resp.json())["response"]["allowed"] is True
    bad = cluster(feSpec={"image": "x", "replicas": 1, "electionNumber": 2})
    resp = await http_client.post("/validate/doris.selectdb.com/dorisclusters", json=review(bad))
    assert resp.status == 200  # a denial is an answer, not an error
    body = await resp.json()
    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["message"].startswith("spec.feSpec.electionNumber: ")
    resp = await http_client.post("/mutate/doris.selectdb.com/dorisclusters", json=review(bad))
    assert (await resp.json())["response"]["allowed"] is True
    assert (await http_client.post("/validate/example.com/booms", json=review(GOOD))).status == 500
    assert (await http_client.post("/validate/nope/nopes", json=review(GOOD))).status == 404
    assert (await http_client.post("/validate/doris.selectdb.com/dorisclusters", data=b"{")).status == 400
    assert (await http_client.post("/validate/doris.selectdb.com/dorisclusters", json={"x": 1})).status == 400
    assert (await http_client.get("/healthz")).status == 200
    assert (await http_client.get("/readyz")).status == 200


# ---- configurations ---------------------------------------------------------------------------------------


def test_webhook_configurations_service_mode() -> None:
    opts = configs.ConfigOptions(namespace="doris", service_name="wh", service_port=8443)
    validating, mutating = configs.webhook_configurations(opts, REGISTRY, b"PEM")
    hook = validating["webhooks"][0]
    assert hook["clientConfig"] == {
        "service": {
            "namespace": "doris",
            "name": "wh",
            "port": 8443,
            "path": "/validate/doris.selectdb.com/dorisclusters",
        },
        "caBundle": base64.b64encode(b"PEM").decode(),
    }
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"] and hook["timeoutSeconds"] == 5
    assert hook["rules"] == [
        {
            "apiGroups": ["doris.selectdb.com"],
            "apiVersions": ["v1"],
            "resources": ["dorisclusters"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]
    assert hook["matchConditions"][0]["expression"] == configs.SPEC_CHANGED
    assert mutating["webhooks"][0]["failurePolicy"] == "Ignore"
    assert mutating["webhooks"][0]["reinvocationPolicy"] == "Never"
    assert "annotations" not in validating["metadata"]


def test_webhook_configurations_cert_manager_mode() -> None:
    opts = configs.ConfigOptions(namespace="doris", cert_manager_certificate="wh-cert")
    for obj in configs.webhook_configurations(opts, REGISTRY, None):
        assert obj["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "doris/wh-cert"}
        assert all("caBundle" not in w["clientConfig"] for w in obj["webhooks"])


def test_statefulset_policy_names_the_exempt_identities() -> None:
    opts = configs.ConfigOptions(operator_users=["system:serviceaccount:doris:doris-operator"])
    policy, binding = configs.statefulset_policy(opts)
    assert policy["kind"] == "ValidatingAdmissionPolicy" and binding["spec"]["policyName"] == opts.policy_name
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0]["resources"] == ["statefulsets", "statefulsets/scale"] and rules[0]["operations"] == [
        "UPDATE"
    ]
    exempt = next(c for c in policy["spec"]["matchConditions"] if c["name"] == "not-the-operator")[
        "expression"
    ]
    assert '"system:serviceaccount:doris:doris-operator"' in exempt
    assert '"system:kube-controller-manager"' in exempt
    assert "objectSelector" not in policy["spec"]["matchConstraints"]  # a Scale has no labels to select


def test_webhook_options() -> None:
    opts = WebhookOptions(namespace="doris", service_name="wh")
    assert opts.hosts() == ["wh.doris.svc", "wh.doris.svc.cluster.local", "wh.doris", "wh"]
    assert WebhookOptions(url="https://127.0.0.1:9443").hosts() == ["127.0.0.1"]
    assert opts.interval() == 60.0
    assert WebhookOptions(cert_validity=dt.timedelta(seconds=20)).interval() == 1.0
    assert (
        WebhookOptions(cert_dir=Path("/x")).config_options([]).cert_manager_certificate
        == "doris-operator-webhook"
    )
    assert opts.config_options([]).cert_manager_certificate is None


def test_cli_webhook_options() -> None:
    args = cli._parser().parse_args(
        [
            "webhook",
            "--url",
            "https://127.0.0.1:9555",
            "--port",
            "9555",
            "--namespace",
            "ns",
            "--cert-validity",
            "20s",
            "--ca-propagation",
            "2s",
            "--operator-user",
            "system:serviceaccount:ns:op",
            "--validation-failure-policy",
            "Ignore",
        ]
    )
    opts = cli._webhook_options(args)
    assert opts.cert_validity == dt.timedelta(seconds=20) and opts.ca_propagation == dt.timedelta(seconds=2)
    assert opts.namespace == "ns" and opts.port == 9555 and opts.url == "https://127.0.0.1:9555"
    assert opts.operator_users == ["system:serviceaccount:ns:op"]
    assert opts.validation_failure_policy == "Ignore" and opts.mutation_failure_policy == "Ignore"
    assert opts.exempt_users == list(configs.SYSTEM_USERS)
    assert cli._duration("90d") == 90 * 86400 and cli._duration("1.5") == 1.5
    with pytest.raises(Exception, match="not a duration"):
        cli._duration("soon")


# ---- certificates -----------------------------------------------------------------------------------------

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
HOSTS = ["127.0.0.1", "wh.doris.svc"]


def test_issue_covers_hosts_and_verifies() -> None:
    pair, ca_pem = certs.issue(HOSTS, dt.timedelta(days=90), T0)
    bundle = certs.load_bundle(ca_pem)
    assert pair.hosts() == set(HOSTS) and pair.covers(["wh.doris.svc"])
    for host in HOSTS:
        assert certs.verify_chain(pair, bundle, host, T0)
    assert not certs.verify_chain(pair, bundle, "other.svc", T0)
    assert not certs.verify_chain(pair, bundle, "127.0.0.1", T0 + dt.timedelta(days=91))
    other_pair, other_ca = certs.issue(HOSTS, dt.timedelta(days=90), T0)
    assert not certs.verify_chain(pair, certs.load_bundle(other_ca), "127.0.0.1", T0)
    assert pair.not_after == T0 + dt.timedelta(days=90)
    assert pair.not_before == T0 - dt.timedelta(minutes=5)
    pair.check()
    with pytest.raises(ValueError, match="does not belong"):
        certs.KeyPair(pair.cert_pem, other_pair.key_pem).check()
    with pytest.raises(ValueError, match="at least one host"):
        certs.issue([], dt.timedelta(days=1), T0)


def test_rotation_policy_bounds() -> None:
    assert certs.RotationPolicy(dt.timedelta(days=90)).effective_propagation == dt.timedelta(seconds=30)
    assert certs.RotationPolicy(dt.timedelta(seconds=20)).effective_propagation == dt.timedelta(seconds=2)
    with pytest.raises(ValueError):
        certs.RotationPolicy(dt.timedelta(seconds=1))
    with pytest.raises(ValueError):
        certs.RotationPolicy(renew_fraction=1.5)


def test_secret_round_trip_and_garbage() -> None:
    state = certs.plan(certs.CertState(), HOSTS, certs.RotationPolicy(), T0)
    again = certs.CertState.from_secret(state.data(), state.annotations())
    assert again == state
    broken = dict(state.data())
    broken[certs.TLS_KEY] = certs.issue(HOSTS, dt.timedelta(days=1), T0)[0].key_pem
    broken[certs.CA_CRT] = b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
    garbled = certs.CertState.from_secret(broken, {certs.ANNOTATION_PUBLISHED: "yesterday"})
    assert garbled.current is None and garbled.bundle == ()
    replanned = certs.plan(garbled, HOSTS, certs.RotationPolicy(), T0)
    assert replanned.current is not None and len(replanned.bundle) == 1


class Apiserver:
    """What an apiserver trusts: the bundle last published to the webhook configurations."""

    def __init__(self) -> None:
        self.bundle: tuple[x509.Certificate, ...] = ()


def step(
    state: certs.CertState, api: Apiserver, policy: certs.RotationPolicy, now: dt.datetime
) -> certs.CertState:
    """One tick of WebhookServer (sync, serve, publish, stamp) against the fake apiserver."""
    state = certs.plan(state, HOSTS, policy, now)
    if api.bundle != state.bundle:
        api.bundle = state.bundle
    if state.next is not None and state.published_at is None:
        state = certs.CertState(state.current, state.next, state.bundle, now)
    return state


@pytest.mark.parametrize("seed", range(5))
def test_rotation_never_serves_an_untrusted_certificate(seed: int) -> None:
    """Simulated months of rotation with jittery ticks: at every instant the certificate served is valid
    and verifies against the bundle the apiserver has, and so does the one about to be served."""
    rng = random.Random(seed)
    policy = certs.RotationPolicy(dt.timedelta(hours=3), propagation=dt.timedelta(minutes=2))
    api = Apiserver()
    now = T0
    state = step(certs.CertState(), api, policy, now)
    served = {state.current.serial if state.current else 0}
    max_bundle = 0
    while now < T0 + dt.timedelta(days=2):
        now += dt.timedelta(seconds=rng.uniform(1, 600))
        state = step(state, api, policy, now)
        assert state.current is not None
        served.add(state.current.serial)
        for pair in filter(None, (state.current, state.next if state.published_at else None)):
            assert certs.verify_chain(pair, api.bundle, "127.0.0.1", now), now
        max_bundle = max(max_bundle, len(api.bundle))
        assert len(state.bundle) <= 3
    assert len(served) >= 2 * 24 // 2  # renewed at two thirds of three hours: every two hours
    assert max_bundle == 2


def test_rotation_steps_in_order() -> None:
    policy = certs.RotationPolicy(dt.timedelta(seconds=30), propagation=dt.timedelta(seconds=10))
    s0 = certs.plan(certs.CertState(), HOSTS, policy, T0)
    assert s0.current is not None and s0.next is None and len(s0.bundle) == 1
    assert certs.plan(s0, HOSTS, policy, T0 + dt.timedelta(seconds=15)) == s0  # nothing due
    t1 = T0 + dt.timedelta(seconds=21)  # 9 s left of 33: less than a third
    s1 = certs.plan(s0, HOSTS, policy, t1)
    assert s1.current == s0.current and s1.next is not None and len(s1.bundle) == 2
    assert s1.published_at is None
    assert certs.plan(s1, HOSTS, policy, t1 + dt.timedelta(seconds=5)) == s1  # not published: never promote
    s2 = certs.CertState(s1.current, s1.next, s1.bundle, t1)
    assert certs.plan(s2, HOSTS, policy, t1 + dt.timedelta(seconds=2)) == s2  # propagating (3 s)
    s3 = certs.plan(s2, HOSTS, policy, t1 + dt.timedelta(seconds=3))
    assert s3.current == s1.next and s3.next is None and len(s3.bundle) == 2
    s4 = certs.plan(s3, HOSTS, policy, T0 + dt.timedelta(seconds=31))  # the first CA expired
    assert s4.bundle == s1.bundle[1:]


def test_new_hosts_get_a_new_certificate_through_the_same_steps() -> None:
    policy = certs.RotationPolicy()
    s0 = certs.plan(certs.CertState(), HOSTS, policy, T0)
    s1 = certs.plan(s0, [*HOSTS, "wh2.doris.svc"], policy, T0 + dt.timedelta(minutes=1))
    assert s1.current == s0.current and s1.next is not None and "wh2.doris.svc" in s1.next.hosts()


def test_expired_or_missing_ca_is_replaced_at_once() -> None:
    policy = certs.RotationPolicy(dt.timedelta(hours=1))
    s0 = certs.plan(certs.CertState(), HOSTS, policy, T0)
    late = certs.plan(s0, HOSTS, policy, T0 + dt.timedelta(hours=2))
    assert late.current != s0.current and late.next is None and len(late.bundle) == 1
    no_ca = certs.CertState(s0.current)
    fixed = certs.plan(no_ca, HOSTS, policy, T0)
    assert fixed.next is not None  # the current one can't be verified: stage one that can


# ---- TLS reload -------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="function")
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[ReloadableTLS, int, asyncio.Event]]:
    tls = ReloadableTLS()
    release = asyncio.Event()
    app = build_app(Registry())

    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    app.router.add_get("/slow", slow)
    tls.load(certs.issue(["127.0.0.1"], dt.timedelta(hours=1))[0])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield tls, port, release
    release.set()
    await runner.cleanup()
    tls.close()


def _client_ctx(ca_pem: bytes | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else ssl._create_unverified_context()
    return ctx


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    return head + await reader.readexactly(length)


async def test_reload_keeps_open_connections_and_in_flight_requests(
    tls_server: tuple[ReloadableTLS, int, asyncio.Event],
) -> None:
    tls, port, release = tls_server
    old_serial = tls.pair.serial if tls.pair else 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_ctx())
    sslobj = writer.get_extra_info("ssl_object")
    assert x509.load_der_x509_certificate(sslobj.getpeercert(binary_form=True)).serial_number == old_serial
    # a request in flight across the reload
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_ctx())
    slow_writer.write(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await slow_writer.drain()
    await asyncio.sleep(0.1)

    new_pair, new_ca = certs.issue(["127.0.0.1"], dt.timedelta(hours=1))
    assert tls.load(new_pair) is True
    assert tls.load(new_pair) is False  # same pair: nothing to do

    assert b"200 OK" in await _request(reader, writer, "/healthz")  # old connection still works
    release.set()
    head = await slow_reader.readuntil(b"\r\n\r\n")
    assert b"200 OK" in head
    # a new connection gets the new certificate, verified by the new CA
    r2, w2 = await asyncio.open_connection("127.0.0.1", port, ssl=_client_ctx(new_ca))
    peer = x509.load_der_x509_certificate(w2.get_extra_info("ssl_object").getpeercert(binary_form=True))
    assert peer.serial_number == new_pair.serial != old_serial
    assert b"200 OK" in await _request(r2, w2, "/healthz")
    for w in (writer, slow_writer, w2):
        w.close()


async def test_a_bad_pair_never_reaches_the_live_context(
    tls_server: tuple[ReloadableTLS, int, asyncio.Event],
) -> None:
    tls, port, _ = tls_server
    before = tls.pair
    a, _ = certs.issue(["127.0.0.1"], dt.timedelta(hours=1))
    b, _ = certs.issue(["127.0.0.1"], dt.timedelta(hours=1))
    with pytest.raises(ValueError):
        tls.load(certs.KeyPair(a.cert_pem, b.key_pem))
    assert tls.pair is before
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_ctx())
    assert b"200 OK" in await _request(reader, writer, "/healthz")
    writer.close()


def test_cert_dir_reads_and_checks_pairs(tmp_path: Path) -> None:
    pair, _ = certs.issue(["wh.doris.svc"], dt.timedelta(hours=1))
    other, _ = certs.issue(["wh.doris.svc"], dt.timedelta(hours=1))
    (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
    (tmp_path / "tls.key").write_bytes(pair.key_pem)
    assert certs.CertDir(tmp_path).read() == pair
    (tmp_path / "tls.key").write_bytes(other.key_pem)  # half-updated
    with pytest.raises(ValueError):
        certs.CertDir(tmp_path).read()


async def test_cert_dir_mode_reloads_on_change(tmp_path: Path) -> None:
    """cert-manager mode: a renewed Secret (new files) is served from the next handshake; a broken one
    is ignored and the current certificate kept."""
    from doris_operator.webhook.server import WebhookServer

    first, _ = certs.issue(["127.0.0.1"], dt.timedelta(hours=1))
    (tmp_path / "tls.crt").write_bytes(first.cert_pem)
    (tmp_path / "tls.key").write_bytes(first.key_pem)
    server = WebhookServer(WebhookOptions(cert_dir=tmp_path, operator_users=["x"]), client=None)  # type: ignore[arg-type]
    assert server._reload_files() is True and server.tls.pair == first
    assert server._reload_files() is False
    second, _ = certs.issue(["127.0.0.1"], dt.timedelta(hours=1))
    (tmp_path / "tls.key").write_bytes(second.key_pem)
    assert server._reload_files() is False and server.tls.pair == first  # half-written: keep the old one
    (tmp_path / "tls.crt").write_bytes(second.cert_pem)
    assert server._reload_files() is True and server.tls.pair == second and server.rotations == 1
    server.tls.close()


# ---- replicas sharing the Secret (a fake apiserver) -------------------------------------------------------


class FakeApi:
    """Just enough of lightkube's AsyncClient for WebhookServer: Secrets with resourceVersion conflicts and
    server-side applied configuration objects."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0

    @staticmethod
    def _error(code: int, reason: str) -> Exception:
        from lightkube import ApiError
        from lightkube.models.meta_v1 import Status

        return ApiError(status=Status(code=code, reason=reason, message=reason))

    async def get(self, res: Any, name: str, namespace: str | None = None) -> Any:
        obj = self.objects.get((res.__name__, name))
        if obj is None:
            raise self._error(404, "NotFound")
        return res.from_dict(copy.deepcopy(obj))

    async def create(self, obj: Any, field_manager: str | None = None) -> Any:
        body = obj.to_dict()
        key = (type(obj).__name__, body["metadata"]["name"])
        if key in self.objects:
            raise self._error(409, "AlreadyExists")
        return self._store(key, body, type(obj))

    async def replace(self, obj: Any, field_manager: str | None = None) -> Any:
        body = obj.to_dict()
        key = (type(obj).__name__, body["metadata"]["name"])
        if self.objects[key]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise self._error(409, "Conflict")
        return self._store(key, body, type(obj))

    async def patch(self, res: Any, name: str, obj: dict[str, Any], **_: Any) -> Any:
        return self._store((res.__name__, name), copy.deepcopy(obj), res)

    def _store(self, key: tuple[str, str], body: dict[str, Any], res: Any) -> Any:
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = body
        return res.from_dict(copy.deepcopy(body))

    def trusted(self) -> list[x509.Certificate]:
        """What the apiserver trusts: the caBundle of the ValidatingWebhookConfiguration."""
        config = self.objects[("ValidatingWebhookConfiguration", "doris-operator")]
        return certs.load_bundle(base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]))


def _replica(api: FakeApi, clock: list[dt.datetime]) -> Any:
    from doris_operator.webhook.server import WebhookServer

    options = WebhookOptions(
        url="https://127.0.0.1:9443",
        cert_validity=dt.timedelta(hours=1),
        ca_propagation=dt.timedelta(minutes=1),
        operator_users=["system:serviceaccount:doris:doris-operator"],
        install_policy=False,
    )
    return WebhookServer(options, client=api, now=lambda: clock[0])  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(3))
async def test_replicas_share_one_certificate_and_never_serve_an_untrusted_one(seed: int) -> None:
    rng = random.Random(seed)
    api, clock = FakeApi(), [T0]
    replicas = [_replica(api, clock) for _ in range(3)]
    for replica in replicas:
        await replica.tick()
    assert len({r.tls.pair.serial for r in replicas}) == 1  # one Secret, one certificate
    served: set[int] = set()
    for _ in range(400):
        clock[0] += dt.timedelta(seconds=rng.uniform(5, 90))
        replica = rng.choice(replicas)
        await replica.tick()
        for r in replicas:
            pair = r.tls.pair
            served.add(pair.serial)
            if not pair.expired(clock[0]):  # a replica that hasn't ticked for long may hold an old one
                assert certs.verify_chain(pair, api.trusted(), "127.0.0.1", clock[0])
    assert len(served) >= 6  # about one rotation every 43 minutes of the 5 hours
    for replica in replicas:
        replica.tls.close()


async def test_promotion_waits_until_the_configurations_trust_the_new_ca() -> None:
    """Another writer puts an older caBundle back after the new CA was published: no promotion until the
    bundle has been published again and propagated."""
    api, clock = FakeApi(), [T0]
    replica = _replica(api, clock)
    await replica.tick()
    first = replica.tls.pair
    old_config = copy.deepcopy(api.objects[("ValidatingWebhookConfiguration", "doris-operator")])
    clock[0] = T0 + dt.timedelta(minutes=45)  # less than a third left: stage, publish, stamp
    await replica.tick()
    assert replica.state.next is not None and replica.state.published_at == clock[0]
    api.objects[("ValidatingWebhookConfiguration", "doris-operator")] = old_config  # stale writer
    clock[0] += dt.timedelta(minutes=2)
    await replica.tick()  # would promote; the live bundle can't verify the new certificate: republish
    assert replica.tls.pair == first
    assert certs.verify_chain(replica.state.next, api.trusted(), "127.0.0.1", clock[0])
    clock[0] += dt.timedelta(minutes=2)
    await replica.tick()
    assert replica.tls.pair == replica.state.current != first
    assert replica.rotations == 1
    replica.tls.close()


async def test_a_deleted_secret_does_not_restart_the_chain_of_trust() -> None:
    api, clock = FakeApi(), [T0]
    replica = _replica(api, clock)
    await replica.tick()
    served = replica.tls.pair
    del api.objects[("Secret", "doris-operator-webhook-cert")]
    clock[0] += dt.timedelta(minutes=1)
    await replica.tick()
    assert replica.tls.pair == served
    assert ("Secret", "doris-operator-webhook-cert") in api.objects
    assert certs.verify_chain(served, api.trusted(), "127.0.0.1", clock[0])
    replica.tls.close()


# ---- CEL rules on the CRD ---------------------------------------------------------------------------------


def _rules(node: Any, path: str = "") -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    if isinstance(node, dict):
        if node.get("x-kubernetes-validations"):
            out[path] = node["x-kubernetes-validations"]
        for name, sub in (node.get("properties") or {}).items():
            out.update(_rules(sub, f"{path}.{name}" if path else name))
        if isinstance(node.get("items"), dict):
            out.update(_rules(node["items"], f"{path}[]"))
    return out


def test_crd_carries_the_cel_rules() -> None:
    from doris_operator.api import crdgen

    schema = crdgen.doriscluster_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = _rules(schema)
    messages = {path: [r["message"] for r in found] for path, found in rules.items()}
    assert any("electionNumber must be <= replicas" in m for m in messages["spec.feSpec"])
    for comp in ("fe", "be", "cn", "broker"):
        assert any("can't shrink" in m for m in messages[f"spec.{comp}Spec"])
        assert any("image must not be empty" in m for m in messages[f"spec.{comp}Spec.image"])
        assert any("node port range" in m for m in messages[f"spec.{comp}Spec.service.servicePorts[]"])
    assert any("need an FE" in m for m in messages["spec"])
    transition = [r for found in rules.values() for r in found if "oldSelf" in r["rule"]]
    assert len(transition) == 4 * 4  # four persistentVolumes rules on each component
    for found in rules.values():
        for r in found:
            assert r["message"] and r["rule"]
            assert r.get("fieldPath", ".").startswith(".")
    # the bounds that keep the rules within the apiserver's CEL cost budget
    be = schema["properties"]["spec"]["properties"]["beSpec"]
    assert be["properties"]["persistentVolumes"]["maxItems"] == 64
    pv = be["properties"]["persistentVolumes"]["items"]["properties"]
    assert pv["name"]["maxLength"] == 63
    assert pv["persistentVolumeClaimSpec"]["properties"]["storageClassName"]["maxLength"] == 253


async def test_serve_publishes_a_bundle_that_verifies_the_server() -> None:
    """serve(): certificate, TLS listener, configurations; a client trusting the published bundle gets in."""
    from doris_operator.webhook import serve
    from doris_operator.webhook.server import WebhookServer

    api = FakeApi()
    options = WebhookOptions(
        host="127.0.0.1", port=0, url="https://127.0.0.1:9443", operator_users=["system:serviceaccount:d:op"]
    )
    started: asyncio.Future[WebhookServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(options, api, started=started.set_result))  # type: ignore[arg-type]
    server = await asyncio.wait_for(started, 10)
    assert server.ready
    bundle = base64.b64decode(
        api.objects[("ValidatingWebhookConfiguration", "doris-operator")]["webhooks"][0]["clientConfig"][
            "caBundle"
        ]
    )
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=_client_ctx(bundle), server_hostname="127.0.0.1"
    )
    assert b"200 OK" in await _request(reader, writer, "/readyz")
    writer.close()
    policy = api.objects[("ValidatingAdmissionPolicy", "doris-operator-managed-statefulsets")]
    assert "system:serviceaccount:d:op" in json.dumps(policy)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not server.ready


def test_cel_image_rule_is_the_webhooks_image_check() -> None:
    from doris_operator.api import validation
    from doris_operator.api.doriscluster import IMAGE_PATTERN

    assert validation._IMAGE.pattern == IMAGE_PATTERN
