"""Bad DorisCluster manifests are rejected with one line per problem naming the field."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from doris_operator import cli
from doris_operator.api.validation import InvalidResource, parse_cluster, parse_quantity

GOOD: dict[str, Any] = {
    "apiVersion": "doris.selectdb.com/v1",
    "kind": "DorisCluster",
    "metadata": {"name": "doriscluster-sample"},
    "spec": {
        "feSpec": {"replicas": 3, "image": "selectdb/doris.fe-ubuntu:2.1.8"},
        "beSpec": {"replicas": 3, "image": "selectdb/doris.be-ubuntu:2.1.8"},
    },
}


def with_(path: str, value: Any, base: dict[str, Any] = GOOD) -> dict[str, Any]:
    """A copy of ``base`` with the value at a dotted path set (``None`` deletes it)."""
    doc = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


FE = "spec.feSpec"
BE = "spec.beSpec"
# (id, manifest, field path, words the message must contain)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("replicas-negative", with_(f"{FE}.replicas", -1), f"{FE}.replicas", "greater than or equal to 0"),
    ("replicas-string", with_(f"{BE}.replicas", "three"), f"{BE}.replicas", "valid integer"),
    ("image-missing", with_(f"{FE}.image", None), f"{FE}.image", "is required"),
    ("image-empty", with_(f"{BE}.image", ""), f"{BE}.image", "must not be empty"),
    (
        "image-malformed",
        with_(f"{BE}.image", "Selectdb/Doris BE:2.1"),
        f"{BE}.image",
        "not a valid image reference",
    ),
    ("unknown-field", with_(f"{FE}.replica", 3), f"{FE}.replica", "unknown field"),
    (
        "service-type",
        with_(f"{FE}.service", {"type": "ExternalName"}),
        f"{FE}.service.type",
        "must be 'ClusterIP'",
    ),
    (
        "quantity-format",
        with_(f"{BE}.requests", {"cpu": "8 cores"}),
        f"{BE}.requests.cpu",
        "not a Kubernetes quantity",
    ),
    (
        "quantity-type",
        with_(f"{BE}.limits", {"memory": ["16Gi"]}),
        f"{BE}.limits.memory",
        "must be an integer",
    ),
    (
        "requests-over-limits",
        with_(f"{FE}.limits", {"cpu": "4"}, with_(f"{FE}.requests", {"cpu": 8})),
        f"{FE}.requests.cpu",
        "more than the limit",
    ),
    (
        "election-above-replicas",
        with_(f"{FE}.electionNumber", 5),
        f"{FE}.electionNumber",
        "electionNumber must be <= replicas",
    ),
    ("election-zero", with_(f"{FE}.electionNumber", 0), f"{FE}.electionNumber", "greater than or equal to 1"),
    (
        "nodeport-on-clusterip",
        with_(f"{FE}.service", {"servicePorts": [{"nodePort": 31001, "targetPort": 9030}]}),
        f"{FE}.service.servicePorts[0].nodePort",
        "only NodePort and LoadBalancer",
    ),
    (
        "nodeport-out-of-range",
        with_(
            f"{FE}.service", {"type": "NodePort", "servicePorts": [{"nodePort": 8080, "targetPort": 9030}]}
        ),
        f"{FE}.service.servicePorts[0].nodePort",
        "outside the node port range 30000-32767",
    ),
    (
        "nodeport-too-big",
        with_(
            f"{FE}.service", {"type": "NodePort", "servicePorts": [{"nodePort": 70000, "targetPort": 9030}]}
        ),
        f"{FE}.service.servicePorts[0].nodePort",
        "less than or equal to 65535",
    ),
    (
        "targetport-twice",
        with_(
            f"{BE}.service",
            {
                "type": "NodePort",
                "servicePorts": [{"nodePort": 31005, "targetPort": 9030}, {"targetPort": 9030}],
            },
        ),
        f"{BE}.service.servicePorts[1].targetPort",
        "9030 is already set by spec.beSpec.service.servicePorts[0]",
    ),
    (
        "configmap-name",
        with_(f"{FE}.configMapInfo", {"configMapName": "FE_Conf"}),
        f"{FE}.configMapInfo.configMapName",
        "'FE_Conf' is not a valid ConfigMap name",
    ),
    (
        "secret-name",
        with_(f"{BE}.secrets", [{"secretName": "my secret", "mountPath": "/etc/s"}]),
        f"{BE}.secrets[0].secretName",
        "is not a valid Secret name",
    ),
    (
        "auth-secret-name",
        with_("spec.authSecret", "Doris-Auth"),
        "spec.authSecret",
        "is not a valid Secret name",
    ),
    (
        "fe-address-both-spellings",
        with_(
            f"{BE}.feAddress",
            {"endpoints": {"address": ["fe-a"], ":address": ["fe-b"]}},
        ),
        f"{BE}.feAddress.endpoints",
        "address and :address",
    ),
    (
        "external-traffic-policy-on-clusterip",
        with_(f"{BE}.service", {"externalTrafficPolicy": "Local"}),
        f"{BE}.service.externalTrafficPolicy",
        "NodePort and LoadBalancer Services only",
    ),
    (
        "external-traffic-policy-value",
        with_(f"{BE}.service", {"type": "NodePort", "externalTrafficPolicy": "local"}),
        f"{BE}.service.externalTrafficPolicy",
        "unsupported value 'local'",
    ),
    (
        "source-ranges-not-cidr",
        with_(f"{FE}.service", {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/33"]}),
        f"{FE}.service.loadBalancerSourceRanges[0]",
        "not a CIDR",
    ),
    (
        "pv-without-storage",
        with_(
            f"{BE}.persistentVolumes", [{"name": "be-storage", "mountPath": "/opt/apache-doris/be/storage"}]
        ),
        f"{BE}.persistentVolumes[0].persistentVolumeClaimSpec.resources.requests.storage",
        "is required",
    ),
    (
        "pv-bad-name",
        with_(
            f"{BE}.persistentVolumes",
            [
                {
                    "name": "BE_Storage",
                    "persistentVolumeClaimSpec": {"resources": {"requests": {"storage": "1Ti"}}},
                }
            ],
        ),
        f"{BE}.persistentVolumes[0].name",
        "must be a DNS label",
    ),
    (
        "pv-access-mode",
        with_(
            f"{BE}.persistentVolumes", [{"name": "d", "persistentVolumeClaimSpec": {"accessModes": ["RWO"]}}]
        ),
        f"{BE}.persistentVolumes[0].persistentVolumeClaimSpec.accessModes[0]",
        "unsupported value 'RWO'",
    ),
    (
        "pv-provisioner",
        with_(f"{BE}.persistentVolumes", [{"name": "d", "provisioner": "Helm"}]),
        f"{BE}.persistentVolumes[0].provisioner",
        "unsupported value 'Helm'",
    ),
    (
        "mount-path-clash",
        with_(
            f"{FE}.configMapInfo",
            {
                "configMapName": "fe-conf",
                "configMaps": [{"configMapName": "extra", "mountPath": "/etc/doris"}],
            },
        ),
        f"{FE}.configMapInfo.configMaps[0].mountPath",
        "already mounted by spec.feSpec.configMapInfo.configMapName",
    ),
    (
        "relative-mount-path",
        with_(f"{FE}.secrets", [{"secretName": "tls", "mountPath": "etc/tls"}]),
        f"{FE}.secrets[0].mountPath",
        "must be an absolute path",
    ),
    (
        "env-twice",
        with_(f"{BE}.envVars", [{"name": "TZ", "value": "UTC"}, {"name": "TZ", "value": "CET"}]),
        f"{BE}.envVars[1].name",
        "set twice",
    ),
    ("env-no-name", with_(f"{BE}.envVars", [{"value": "x"}]), f"{BE}.envVars[0].name", "is required"),
    (
        "toleration-operator",
        with_(f"{BE}.tolerations", [{"key": "k", "operator": "Equals"}]),
        f"{BE}.tolerations[0].operator",
        "unsupported value 'Equals'",
    ),
    (
        "host-alias-ip",
        with_(f"{FE}.hostAliases", [{"ip": "fe-host"}]),
        f"{FE}.hostAliases[0].ip",
        "not an IP",
    ),
    ("name-uppercase", with_("metadata.name", "Doris"), "metadata.name", "must be a DNS label"),
    ("name-too-long", with_("metadata.name", "d" * 46), "metadata.name", "at most 45"),
    (
        "admin-user",
        with_("spec.adminUser", {"name": "admin", "password": "x"}),
        "spec.adminUser.name",
        "NODE_PRIV",
    ),
    ("no-component", with_("spec", {}), "spec", "no component"),
    ("be-without-fe", with_(f"{FE}", None), f"{BE}.feAddress", "needs an FE"),
    (
        "cn-autoscaling-min-over-max",
        with_(
            "spec.cnSpec",
            {
                "image": "selectdb/doris.be-ubuntu:2.1.8",
                "autoScalingPolicy": {"minReplicas": 5, "maxReplicas": 2},
            },
        ),
        "spec.cnSpec.autoScalingPolicy.minReplicas",
        "greater than maxReplicas",
    ),
    (
        "pod-template-extra",
        with_(f"{FE}.podTemplate", {"spec": {}, "status": {}}),
        f"{FE}.podTemplate",
        "only metadata and spec",
    ),
    (
        "start-timeout-negative",
        with_(f"{FE}.startTimeout", -5),
        f"{FE}.startTimeout",
        "greater than or equal to 0",
    ),
    (
        "shared-pvc-component",
        with_(
            "spec.sharedPersistentVolumeClaims",
            [{"mountPath": "/s", "persistentVolumeClaimName": "c", "supportComponents": ["ms"]}],
        ),
        "spec.sharedPersistentVolumeClaims[0].supportComponents[0]",
        "unsupported value 'ms'",
    ),
]


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20
    assert parse_cluster(GOOD).name == "doriscluster-sample"  # the base manifest itself is valid


@pytest.mark.parametrize(("manifest", "path", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejected_with_field_path(manifest: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_cluster(manifest)
    lines = [str(p) for p in info.value.problems]
    matching = [line for line in lines if line.startswith(f"{path}: ")]
    assert matching, lines
    assert any(words in line for line in matching), lines


@pytest.mark.parametrize(("manifest", "path", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_exits_non_zero_with_one_line_per_problem(
    tmp_path: Path, manifest: dict[str, Any], path: str, words: str
) -> None:
    file = tmp_path / "dc.yaml"
    file.write_text(yaml.safe_dump(manifest))
    out, err = io.StringIO(), io.StringIO()
    assert cli.render(str(file), "yaml", False, out, err) == 1
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert "Traceback" not in err.getvalue()
    assert any("document 1" in line and f": {path}: " in line and words in line for line in lines), lines


def test_all_problems_are_reported_at_once() -> None:
    bad = with_(f"{FE}.replicas", -1)
    bad["spec"]["beSpec"]["image"] = 7
    bad["spec"]["beSpec"]["requests"] = {"cpu": "lots"}
    with pytest.raises(InvalidResource) as info:
        parse_cluster(bad)
    assert {p.path for p in info.value.problems} == {f"{FE}.replicas", f"{BE}.image", f"{BE}.requests.cpu"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("feSpec: [unclosed", "not valid YAML"),
        ("kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n", "no DorisCluster"),
        (
            "apiVersion: doris.selectdb.com/v2\nkind: DorisCluster\nmetadata: {name: x}\nspec: {}\n",
            "apiVersion: must be doris.selectdb.com/v1",
        ),
        ("- just\n- a list\n", "no DorisCluster"),
    ],
)
def test_cli_reports_unreadable_input_without_traceback(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "in.yaml"
    file.write_text(text)
    err = io.StringIO()
    assert cli.render(str(file), "yaml", False, io.StringIO(), err) == 1
    assert message in err.getvalue() and "Traceback" not in err.getvalue()


def test_cli_missing_file(tmp_path: Path) -> None:
    err = io.StringIO()
    assert cli.render(str(tmp_path / "nope.yaml"), "yaml", False, io.StringIO(), err) == 1
    assert "No such file" in err.getvalue()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(8, "8"), ("500m", "0.5"), ("16Gi", str(16 * 2**30)), ("1e3", "1000"), (0.5, "0.5")],
)
def test_parse_quantity(value: Any, expected: str) -> None:
    assert parse_quantity(value) == parse_quantity(expected)
