"""Admission as a new user meets it, on the local control plane, with the webhook running as a
ServiceAccount that has only the permissions the webhook uses:

* a corpus of bad DorisClusters (pod-template fields only Kubernetes itself validates, duplicate
  ports, object names, ConfigMaps whose ports clash, volume changes, removing a component whose pods
  run): every one refused at admission with the DorisCluster field in the message, none stored;
* every official sample (its doc/examples and its Helm chart rendered under several value sets)
  admitted unchanged, stored without a field pruned, and rendered with its fields honoured; the chart's
  NodePort example with a warning about its BE ``targetPort: 9040``.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import compat
from doris_operator.api.validation import parse_cluster
from doris_operator.builders import build
from doris_operator.builders.config import resolve
from harness import Kubectl, eventually
from identity import ServiceAccountIdentity
from test_webhook import WebhookProcess, apply, doris

pytestmark = pytest.mark.cluster

ROLE = "doris-webhook-minimal"
WEBHOOK_RULES: list[dict[str, Any]] = [
    # its certificate Secret, its configurations, its own identity
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update"]},
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
        "verbs": ["get", "create", "patch"],
    },
    {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
    # what the DorisCluster checks read: the ConfigMaps it names, the pods of a removed component
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    # the dry-runs (server-side apply, dryRun=All) of the children; StatefulSets listed for their
    # volumeClaimTemplates
    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["list", "create", "patch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "patch"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["create", "patch"]},
]
"""Exactly what the webhook uses (docs/webhook.md, "RBAC it needs"); the operator's rules in the Helm
chart cover the DorisCluster part, since the webhook runs in the operator's pod."""


class AsServiceAccount:
    """The cluster, with the ServiceAccount's kubeconfig for processes started on it."""

    def __init__(self, cluster: Any, identity: ServiceAccountIdentity) -> None:
        self.cluster, self.identity = cluster, identity

    def env(self) -> dict[str, str]:
        env = dict(self.cluster.env())
        env["KUBECONFIG"] = str(self.identity.kubeconfig)
        return env


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl) -> Iterator[str]:
    ns = kubectl.new_namespace("adm")
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def webhook(
    kube_cluster: Any, kubectl: Kubectl, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE},
        "rules": WEBHOOK_RULES,
    }
    kubectl("apply", "-f", "-", input=yaml.safe_dump(role))
    identity = ServiceAccountIdentity(
        kube_cluster, namespace, "doris-webhook", tmp_path_factory.mktemp("sa"), cluster_role=ROLE
    ).create()
    proc = WebhookProcess(
        AsServiceAccount(kube_cluster, identity), tmp_path_factory.mktemp("webhook"), "doris-wh-corpus",
        namespace, "--no-policy", "--timeout-seconds", "10",
    )  # fmt: skip
    try:
        proc.start()
        probe = doris("probe", namespace, beSpec={"priorityClassName": "Not_Valid"})

        def wired() -> bool:
            result = apply(kubectl, probe, "--dry-run=server")
            return result.returncode != 0 and "spec.beSpec.priorityClassName" in result.stderr

        eventually(wired, 30, 0.2, what="the apiserver calling the webhook, which dry-runs the children")
        yield proc
    finally:
        proc.stop()
        proc.uninstall(kubectl)
        identity.delete()
        kubectl("delete", "clusterrole", ROLE, "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def config_maps(kubectl: Kubectl, namespace: str) -> dict[str, dict[str, str]]:
    """ConfigMaps whose conf files make the Services invalid: two FE ports on 9030, a BE port past 65535."""
    data = {
        "fe-clash": {"fe.conf": "http_port = 9030\nquery_port = 9030\n"},
        "be-out-of-range": {"be.conf": "webserver_port = 70000\n"},
    }
    for name, content in data.items():
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": content}
        kubectl.apply(cm, namespace)
    return data


# ---- the corpus ------------------------------------------------------------------------------------------

NP = {"type": "NodePort"}
CLAIM = {"resources": {"requests": {"storage": "10Gi"}}}
AFFINITY_IN = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Inn", "values": ["a"]}]}]
        }
    }
}
HEAVY = {
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 500, "podAffinityTerm": {"topologyKey": "zone", "labelSelector": {}}}
        ]
    }
}
SPREAD = {"maxSkew": 1, "topologyKey": "zone", "labelSelector": {}}
# (id, spec changes, DorisCluster field path the message names, words of the message)
CORPUS: list[tuple[str, dict[str, Any], str, str]] = [
    # pod-template fields: Kubernetes' own validation, through the dry-run
    (
        "pod-label-value",
        {"beSpec": {"podLabels": {"team": "a b"}}},
        "spec.beSpec.podLabels[team]",
        "a valid label",
    ),
    (
        "pod-label-key",
        {"feSpec": {"podLabels": {"Bad Key": "v"}}},
        "spec.feSpec.podLabels[Bad Key]",
        "name part",
    ),
    (
        "pod-annotation-key",
        {"beSpec": {"annotations": {"bad key!": "v"}}},
        "spec.beSpec.annotations[bad key!]",
        "name part",
    ),
    (
        "node-selector-key",
        {"beSpec": {"nodeSelector": {"bad key!": "v"}}},
        "spec.beSpec.nodeSelector[bad key!]",
        "name part",
    ),
    (
        "affinity-operator",
        {"feSpec": {"affinity": AFFINITY_IN}},
        "spec.feSpec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
        ".matchExpressions[0].operator",
        "not a valid selector operator",
    ),
    (
        "affinity-weight",
        {"beSpec": {"affinity": HEAVY}},
        "spec.beSpec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
        "must be in the range 1-100",
    ),
    (
        "affinity-typo",
        {"beSpec": {"affinity": {"nodeAffinty": {}}}},
        "spec.beSpec.affinity.nodeAffinty",
        "field not declared in schema",
    ),
    (
        "priority-class",
        {"beSpec": {"priorityClassName": "High_Priority"}},
        "spec.beSpec.priorityClassName",
        "RFC 1123 subdomain",
    ),
    (
        "spread-when-unsatisfiable",
        {"beSpec": {"topologySpreadConstraints": [{**SPREAD, "whenUnsatisfiable": "Maybe"}]}},
        "spec.beSpec.topologySpreadConstraints[0].whenUnsatisfiable",
        'Unsupported value: "Maybe"',
    ),
    (
        "spread-max-skew",
        {
            "feSpec": {
                "topologySpreadConstraints": [{**SPREAD, "maxSkew": 0, "whenUnsatisfiable": "DoNotSchedule"}]
            }
        },
        "spec.feSpec.topologySpreadConstraints[0].maxSkew",
        "must be greater than zero",
    ),
    (
        "service-account",
        {"feSpec": {"serviceAccount": "Bad_SA"}},
        "spec.feSpec.serviceAccount",
        "RFC 1123 subdomain",
    ),
    (
        "env-field-path",
        {"beSpec": {"envVars": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]}},
        "spec.beSpec.envVars[0].valueFrom.fieldRef.fieldPath",
        "field label not supported",
    ),
    (
        "env-value-from-typo",
        {"beSpec": {"envVars": [{"name": "X", "valueFrom": {"fieldReff": {"fieldPath": "metadata.name"}}}]}},
        "spec.beSpec.envVars[0].valueFrom.fieldReff",
        "field not declared in schema",
    ),
    (
        "toleration-key",
        {"beSpec": {"tolerations": [{"key": "bad key!", "operator": "Exists"}]}},
        "spec.beSpec.tolerations[0].key",
        "name part",
    ),
    (
        "host-alias-hostname",
        {"feSpec": {"hostAliases": [{"ip": "127.0.0.1", "hostnames": ["Bad_Host"]}]}},
        "spec.feSpec.hostAliases[0].hostnames[0]",
        "RFC 1123 subdomain",
    ),
    (
        "security-context-type",
        {"beSpec": {"securityContext": {"runAsUser": "root"}}},
        "spec.beSpec.securityContext.runAsUser",
        "expected numeric",
    ),
    (
        "container-security-context-typo",
        {"feSpec": {"containerSecurityContext": {"capabilites": {"add": ["NET_ADMIN"]}}}},
        "spec.feSpec.containerSecurityContext.capabilites",
        "field not declared in schema",
    ),
    ("fs-group", {"beSpec": {"fsGroup": -1}}, "spec.beSpec.fsGroup", "between 0 and 2147483647"),
    (
        "resource-claim",
        {"beSpec": {"claims": [{"name": "gpu"}]}},
        "spec.beSpec.claims[0]",
        "must be one of the names in pod.spec.resourceClaims",
    ),
    (
        "init-resource-claim",
        {"beSpec": {"systemInitialization": {"command": ["true"], "claims": [{"name": "gpu"}]}}},
        "spec.beSpec.systemInitialization.claims[0]",
        "must be one of the names in pod.spec.resourceClaims",
    ),
    (
        "pv-selector-label",
        {
            "beSpec": {
                "persistentVolumes": [
                    {
                        "name": "data",
                        "persistentVolumeClaimSpec": {**CLAIM, "selector": {"matchLabels": {"a": "b c"}}},
                    }
                ]
            }
        },
        "spec.beSpec.persistentVolumes[0].persistentVolumeClaimSpec.selector.matchLabels",
        "a valid label",
    ),
    (
        "service-annotation-key",
        {"feSpec": {"service": {"annotations": {"bad key!": "x"}}}},
        "spec.feSpec.service.annotations[bad key!]",
        "name part",
    ),
    (
        "service-label-value",
        {"beSpec": {"service": {"labels": {"tier": "a b"}}}},
        "spec.beSpec.service.labels[tier]",
        "a valid label",
    ),
    # the pod template overlay
    (
        "pod-template-typo",
        {"beSpec": {"podTemplate": {"spec": {"nodeSelectr": {"a": "b"}}}}},
        "spec.beSpec.podTemplate.spec.nodeSelectr",
        "field not declared in schema",
    ),
    (
        "pod-template-container-typo",
        {"feSpec": {"podTemplate": {"spec": {"containers": [{"name": "fe", "imagePullPolcy": "Always"}]}}}},
        "spec.feSpec.podTemplate.spec.containers[0].imagePullPolcy",
        "field not declared in schema",
    ),
    (
        "pod-template-metadata-typo",
        {"beSpec": {"podTemplate": {"metadata": {"labelz": {"a": "b"}}}}},
        "spec.beSpec.podTemplate.metadata.labelz",
        "field not declared in schema",
    ),
    (
        "pod-template-label",
        {"beSpec": {"podTemplate": {"metadata": {"labels": {"x": "bad value!"}}}}},
        "spec.beSpec.podTemplate.metadata.labels[x]",
        "a valid label",
    ),
    (
        "pod-template-dns-policy",
        {"feSpec": {"podTemplate": {"spec": {"dnsPolicy": "Sometimes"}}}},
        "spec.feSpec.podTemplate.spec.dnsPolicy",
        'Unsupported value: "Sometimes"',
    ),
    (
        "pod-template-sidecar-image",
        {"beSpec": {"podTemplate": {"spec": {"containers": [{"name": "sidecar"}]}}}},
        "spec.beSpec.podTemplate",
        "Required value",
    ),
    (
        "pod-template-volume-name",
        {"beSpec": {"podTemplate": {"spec": {"volumes": [{"name": "Bad_Vol", "emptyDir": {}}]}}}},
        "spec.beSpec.podTemplate.spec.volumes[0].name",
        "RFC 1123 label",
    ),
    # ports
    (
        "target-port-twice",
        {
            "feSpec": {
                "service": {
                    **NP,
                    "servicePorts": [
                        {"nodePort": 31101, "targetPort": 9030},
                        {"nodePort": 31102, "targetPort": 9030},
                    ],
                }
            }
        },
        "spec.feSpec.service.servicePorts[1].targetPort",
        "9030 is already set by spec.feSpec.service.servicePorts[0]",
    ),
    (
        "target-port-twice-one-unpinned",
        {
            "beSpec": {
                "service": {
                    **NP,
                    "servicePorts": [{"targetPort": 8040}, {"nodePort": 31103, "targetPort": 8040}],
                }
            }
        },
        "spec.beSpec.service.servicePorts[1].targetPort",
        "8040 is already set",
    ),
    (
        "node-port-twice-across-components",
        {
            "feSpec": {"service": {**NP, "servicePorts": [{"nodePort": 31104, "targetPort": 9030}]}},
            "beSpec": {"service": {**NP, "servicePorts": [{"nodePort": 31104, "targetPort": 8040}]}},
        },
        "spec.beSpec.service.servicePorts[0].nodePort",
        "31104 is already used by spec.feSpec.service.servicePorts[0]",
    ),
    (
        "config-map-ports-clash",
        {"feSpec": {"configMapInfo": {"configMapName": "fe-clash"}}},
        "spec.feSpec.configMapInfo.configMapName",
        "duplicate entries for key [port=9030",
    ),
    (
        "config-map-port-out-of-range",
        {"beSpec": {"configMapInfo": {"configMapName": "be-out-of-range"}}},
        "spec.beSpec.configMapInfo.configMapName",
        "between 1 and 65535",
    ),
    # object names
    (
        "config-map-name",
        {"feSpec": {"configMapInfo": {"configMapName": "FE_Conf"}}},
        "spec.feSpec.configMapInfo.configMapName",
        "not a valid ConfigMap name",
    ),
    (
        "config-maps-entry-name",
        {
            "beSpec": {
                "configMapInfo": {"configMaps": [{"configMapName": "extra conf", "mountPath": "/etc/extra"}]}
            }
        },
        "spec.beSpec.configMapInfo.configMaps[0].configMapName",
        "not a valid ConfigMap name",
    ),
    (
        "secret-name",
        {"beSpec": {"secrets": [{"secretName": "My_Secret", "mountPath": "/etc/s"}]}},
        "spec.beSpec.secrets[0].secretName",
        "not a valid Secret name",
    ),
    ("auth-secret-name", {"authSecret": "Doris-Auth"}, "spec.authSecret", "not a valid Secret name"),
    (
        "krb5-config-map-name",
        {"kerberosInfo": {"krb5ConfigMap": "krb5_conf"}},
        "spec.kerberosInfo.krb5ConfigMap",
        "not a valid ConfigMap name",
    ),
    (
        "keytab-secret-name",
        {"kerberosInfo": {"keytabSecretName": "-keytab"}},
        "spec.kerberosInfo.keytabSecretName",
        "not a valid Secret name",
    ),
    (
        "shared-claim-name",
        {"sharedPersistentVolumeClaims": [{"persistentVolumeClaimName": "Shared", "mountPath": "/shared"}]},
        "spec.sharedPersistentVolumeClaims[0].persistentVolumeClaimName",
        "not a valid PersistentVolumeClaim name",
    ),
    # FE address
    (
        "fe-address-both-spellings",
        {"beSpec": {"feAddress": {"endpoints": {"address": ["fe-a"], ":address": ["fe-b"]}}}},
        "spec.beSpec.feAddress.endpoints",
        "address and :address",
    ),
]


@pytest.mark.parametrize(("changes", "path", "words"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_cluster_refused_at_admission(
    kubectl: Kubectl,
    namespace: str,
    webhook: WebhookProcess,
    config_maps: dict[str, Any],
    changes: dict[str, Any],
    path: str,
    words: str,
) -> None:
    name = f"bad-{uuid.uuid4().hex[:6]}"
    result = apply(kubectl, doris(name, namespace, **changes))
    assert result.returncode != 0, f"{name} was admitted: {changes}"
    assert f"{path}: " in result.stderr and words in result.stderr, result.stderr
    assert "failed calling webhook" not in result.stderr
    assert webhook.denials(name) == 1, f"the webhook did not deny {name}: {result.stderr}"
    assert kubectl.cluster.kubectl("get", "dcr", name, "-n", namespace, check=False).returncode != 0


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 40
    kinds = {c[2].split(".")[1].split("[")[0] for c in CORPUS}
    assert {"feSpec", "beSpec", "authSecret", "kerberosInfo", "sharedPersistentVolumeClaims"} <= kinds


# ---- updates ---------------------------------------------------------------------------------------------

PV = {
    "name": "data",
    "mountPath": "/opt/apache-doris/be/storage",
    "persistentVolumeClaimSpec": {"storageClassName": "std", "accessModes": ["ReadWriteOnce"], **CLAIM},
}


def _claim(spec: dict[str, Any]) -> dict[str, Any]:
    claim: dict[str, Any] = spec["beSpec"]["persistentVolumes"][0]["persistentVolumeClaimSpec"]
    return claim


UPDATES: list[tuple[str, Any, str, str]] = [
    (
        "access-modes",
        lambda s: _claim(s).update(accessModes=["ReadWriteMany"]),
        "spec.beSpec.persistentVolumes[0].persistentVolumeClaimSpec.accessModes",
        "can't change from ['ReadWriteOnce'] to ['ReadWriteMany']",
    ),
    (
        "volume-mode",
        lambda s: _claim(s).update(volumeMode="Block"),
        "spec.beSpec.persistentVolumes[0].persistentVolumeClaimSpec.volumeMode",
        "can't change from 'Filesystem' to 'Block'",
    ),
    (
        "storage-class",
        lambda s: _claim(s).update(storageClassName="fast"),
        "spec.beSpec.persistentVolumes",
        "storageClassName can't change",
    ),
    (
        "volume-name",
        lambda s: s["beSpec"]["persistentVolumes"][0].update(name="data2"),
        "spec.beSpec.persistentVolumes",
        "can't be added, removed or renamed",
    ),
    (
        "shrink",
        lambda s: _claim(s)["resources"]["requests"].update(storage="5Gi"),
        "spec.beSpec.persistentVolumes",
        "storage can't shrink",
    ),
]


def test_volume_changes_refused(kubectl: Kubectl, namespace: str, webhook: WebhookProcess) -> None:
    base = doris("volumes", namespace, beSpec={"persistentVolumes": [PV]})
    assert apply(kubectl, base).returncode == 0
    stored = kubectl.json("dcr", "volumes", "-n", namespace)["spec"]
    for case, edit, path, words in UPDATES:
        obj = copy.deepcopy(base)
        edit(obj["spec"])
        result = apply(kubectl, obj)
        assert result.returncode != 0, f"{case}: admitted"
        assert path in result.stderr and words in result.stderr, f"{case}: {result.stderr}"
    assert kubectl.json("dcr", "volumes", "-n", namespace)["spec"] == stored  # nothing changed


def _pod(name: str, cluster: str, comp: str) -> dict[str, Any]:
    labels = {"app.doris.ownerreference/name": f"{cluster}-{comp}", "app.kubernetes.io/component": comp}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": comp, "image": "apache/doris:be-2.1.7"}]},
    }


def test_removing_a_component_whose_pods_run_is_refused(
    kubectl: Kubectl, namespace: str, webhook: WebhookProcess
) -> None:
    cn = {"image": "apache/doris:be-2.1.7", "replicas": 1}
    base = doris("removal", namespace, cnSpec=cn)
    assert apply(kubectl, base).returncode == 0
    for comp in ("be", "cn"):
        kubectl.apply(_pod(f"removal-{comp}-0", "removal", comp), namespace)
    for comp in ("beSpec", "cnSpec"):
        result = apply(kubectl, doris("removal", namespace, **{"cnSpec": cn, comp: None}))
        assert result.returncode != 0, result.stderr
        assert (
            f"spec.{comp}: can't remove {comp[:2].upper()} while its pods run (removal-{comp[:2]}-0)"
            in result.stderr
        )
    assert webhook.denials("removal") == 2
    # once the pods are gone, the component can go
    kubectl("delete", "pod", "removal-cn-0", "-n", namespace, "--wait=true", "--grace-period=0", "--force")
    result = apply(kubectl, doris("removal", namespace, cnSpec=None))
    assert result.returncode == 0, result.stderr
    assert "cnSpec" not in kubectl.json("dcr", "removal", "-n", namespace)["spec"]


def test_a_minor_version_skip_warns(kubectl: Kubectl, namespace: str, webhook: WebhookProcess) -> None:
    images = {"feSpec": {"image": "apache/doris:fe-3.0.5"}, "beSpec": {"image": "apache/doris:be-3.0.5"}}
    assert apply(kubectl, doris("upgrade", namespace, **images)).returncode == 0
    skip = {"feSpec": {"image": "apache/doris:fe-3.2.0"}, "beSpec": {"image": "apache/doris:be-3.1.0"}}
    result = apply(kubectl, doris("upgrade", namespace, **skip))
    assert result.returncode == 0, result.stderr
    assert (
        "Warning: spec.feSpec.image: apache/doris:fe-3.0.5 -> apache/doris:fe-3.2.0 skips Doris 3.1"
        in result.stderr
    )
    assert "spec.beSpec.image" not in result.stderr


# ---- the official samples --------------------------------------------------------------------------------

SAMPLES = compat.samples()


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_official_sample_admitted_stored_and_rendered(
    kubectl: Kubectl, namespace: str, webhook: WebhookProcess, sample: compat.Sample, tmp_path: Path
) -> None:
    for obj in sample.objects:
        kubectl.apply(obj, namespace)
    result = kubectl.cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(sample.manifest), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "failed calling webhook" not in result.stderr and "could not be checked" not in result.stderr
    if sample.id == "helm-nodeport":
        assert (
            "Warning: spec.beSpec.service.servicePorts[0].targetPort: 9040 is not a port of BE"
            in result.stderr
        ), result.stderr
    stored = kubectl.json("dcr", sample.manifest["metadata"]["name"], "-n", namespace)
    assert compat._subset(sample.manifest["spec"], stored["spec"]), "a field of the sample was pruned"
    dc = parse_cluster(stored)
    config_maps = sample.config_maps()
    objects = build(dc, config_maps)
    ports = {c: {p.number for p in resolve(c, s, config_maps).ports()} for c, s in dc.components()}
    assert len(compat.assert_honoured(sample.manifest, objects, ports)) >= 4
    kubectl("delete", "dcr", sample.manifest["metadata"]["name"], "-n", namespace, "--wait=false")


# ---- children that exist ---------------------------------------------------------------------------------


def test_existing_children_are_checked_as_the_update_the_operator_makes(
    kubectl: Kubectl, namespace: str, webhook: WebhookProcess
) -> None:
    """With its StatefulSet, Services and PodDisruptionBudget applied (as the operator applies them),
    an update is dry-run as the update the operator would make: a larger volume is fine (the operator
    keeps the immutable volumeClaimTemplates), a node port another Service holds is not."""
    pv = {**PV, "persistentVolumeClaimSpec": {**PV["persistentVolumeClaimSpec"], "storageClassName": None}}
    pv["persistentVolumeClaimSpec"] = {
        k: v for k, v in pv["persistentVolumeClaimSpec"].items() if v is not None
    }
    base = doris("live", namespace, beSpec={"persistentVolumes": [pv]})
    assert apply(kubectl, base).returncode == 0
    for obj in build(parse_cluster(kubectl.json("dcr", "live", "-n", namespace))):
        if obj["kind"] in ("StatefulSet", "Service", "PodDisruptionBudget"):
            obj["metadata"].pop("ownerReferences", None)
            kubectl(
                "apply", "--server-side", "--field-manager=doris-operator", "-n", namespace, "-f", "-",
                input=yaml.safe_dump(obj),
            )  # fmt: skip
    grown = copy.deepcopy(base)
    grown["spec"]["beSpec"]["persistentVolumes"][0]["persistentVolumeClaimSpec"]["resources"]["requests"][
        "storage"
    ] = "20Gi"
    result = apply(kubectl, grown)
    assert result.returncode == 0, result.stderr
    assert "could not be checked" not in result.stderr, result.stderr
    # a node port another Service holds: only the apiserver knows
    other = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "holder"},
        "spec": {"type": "NodePort", "selector": {"a": "b"}, "ports": [{"port": 80, "nodePort": 31200}]},
    }
    kubectl.apply(other, namespace)
    taken = copy.deepcopy(grown)
    taken["spec"]["feSpec"]["service"] = {
        "type": "NodePort",
        "servicePorts": [{"nodePort": 31200, "targetPort": 9030}],
    }
    result = apply(kubectl, taken)
    assert result.returncode != 0, result.stderr
    assert (
        "spec.feSpec.service.servicePorts[0].nodePort: " in result.stderr
        and "already allocated" in result.stderr
    )
    labelled = copy.deepcopy(grown)
    labelled["spec"]["beSpec"]["podLabels"] = {"team": "a b"}
    result = apply(kubectl, labelled)
    assert result.returncode != 0 and "spec.beSpec.podLabels[team]: " in result.stderr, result.stderr


def test_the_older_address_spelling_is_kept_and_read(
    kubectl: Kubectl, namespace: str, webhook: WebhookProcess
) -> None:
    """``feAddress.endpoints[":address"]`` (every official release up to 25.8.0): not pruned, accepted by
    CEL (which can't read the key) and by the webhook, and used as the FE address."""
    endpoints = {":address": ["fe-0.fe.other.svc"], "port": 9030}
    obj = doris("legacy-address", namespace, feSpec=None, beSpec={"feAddress": {"endpoints": endpoints}})
    result = apply(kubectl, obj)
    assert result.returncode == 0, result.stderr
    assert "endpoints[':address'] is read as endpoints.address" in result.stderr
    stored = kubectl.json("dcr", "legacy-address", "-n", namespace)
    assert stored["spec"]["beSpec"]["feAddress"]["endpoints"] == endpoints
    sts = next(o for o in build(parse_cluster(stored)) if o["kind"] == "StatefulSet")
    env = {e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ENV_FE_ADDR"] == "fe-0.fe.other.svc"
    empty = doris("no-address", namespace, feSpec=None, beSpec={"feAddress": {"endpoints": {"address": []}}})
    refused = apply(kubectl, empty)
    assert refused.returncode != 0 and "BE, CN and Broker need an FE" in refused.stderr
