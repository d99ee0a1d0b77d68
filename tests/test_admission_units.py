"""The parts of admission that need the apiserver's answers, without the apiserver: field paths of
children mapped back to DorisCluster fields (builders/paths.py), and the checks on facts (ConfigMaps,
pods, the old object) in webhook/checks.py."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from doris_operator.api.validation import parse_cluster
from doris_operator.builders import build, paths
from doris_operator.webhook import admission, checks
from doris_operator.webhook.admission import Request
from doris_operator.webhook.live import Facts, referenced_config_maps

GOOD: dict[str, Any] = {
    "apiVersion": "doris.selectdb.com/v1",
    "kind": "DorisCluster",
    "metadata": {"name": "dc", "namespace": "doris"},
    "spec": {
        "feSpec": {"replicas": 3, "image": "apache/doris:fe-2.1.7"},
        "beSpec": {"replicas": 3, "image": "apache/doris:be-2.1.7"},
    },
}


def cluster(**be: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    doc["spec"]["beSpec"].update(be)
    return doc


def child(doc: dict[str, Any], kind: str, name: str) -> tuple[Any, dict[str, Any]]:
    dc = parse_cluster(doc)
    return dc, next(o for o in build(dc) if o["kind"] == kind and o["metadata"]["name"] == name)


def mapped(
    doc: dict[str, Any], field: str, value: str | None = None, kind: str = "StatefulSet", name: str = "dc-be"
) -> str:
    dc, obj = child(doc, kind, name)
    return paths.cluster_path(dc, obj, paths.parse(field, obj), value)


CASES = [
    (
        "label-value",
        cluster(podLabels={"team": "a b"}),
        "spec.template.labels",
        "a b",
        "spec.beSpec.podLabels[team]",
    ),
    (
        "label-key",
        cluster(podLabels={"Bad Key": "v"}),
        "spec.template.labels",
        "Bad Key",
        "spec.beSpec.podLabels[Bad Key]",
    ),
    (
        "annotation",
        cluster(annotations={"x": "y"}),
        "spec.template.metadata.annotations",
        "x",
        "spec.beSpec.annotations[x]",
    ),
    (
        "node-selector",
        cluster(nodeSelector={"k!": "v"}),
        "spec.template.spec.nodeSelector",
        "k!",
        "spec.beSpec.nodeSelector[k!]",
    ),
    (
        "affinity-own-term-first",
        cluster(
            affinity={
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 500}]}
            }
        ),
        "spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[1].weight",
        None,
        "spec.beSpec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
    ),
    (
        "ssa-keyed-list-in-overlay",
        cluster(
            podTemplate={
                "spec": {"containers": [{"name": "sidecar", "image": "x"}, {"name": "be", "tty": "yes"}]}
            }
        ),
        '.spec.template.spec.containers[name="be"].tty',
        None,
        "spec.beSpec.podTemplate.spec.containers[1].tty",
    ),
    (
        "env-by-name",
        cluster(
            envVars=[
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
            ]
        ),
        "spec.template.spec.containers[0].env[10].valueFrom.fieldRef.fieldPath",
        None,
        "spec.beSpec.envVars[1].valueFrom.fieldRef.fieldPath",
    ),
    (
        "init-image",
        cluster(systemInitialization={"initImage": "x", "command": ["a"]}),
        "spec.template.spec.initContainers[1].image",
        None,
        "spec.beSpec.systemInitialization.initImage",
    ),
    (
        "volume-claim-template",
        cluster(
            persistentVolumes=[
                {
                    "name": "data",
                    "mountPath": "/d",
                    "persistentVolumeClaimSpec": {"resources": {"requests": {"storage": "1Gi"}}},
                }
            ]
        ),
        "spec.volumeClaimTemplates[0].spec.resources.requests",
        None,
        "spec.beSpec.persistentVolumes[0].persistentVolumeClaimSpec.resources.requests",
    ),
    (
        "secret-mount",
        cluster(secrets=[{"secretName": "s.one", "mountPath": "/s"}]),
        "spec.template.spec.containers[0].volumeMounts[2].mountPath",
        None,
        "spec.beSpec.secrets[0].mountPath",
    ),
    (
        "resources",
        cluster(requests={"cpu": "1"}),
        "spec.template.spec.containers[0].resources.requests.cpu",
        None,
        "spec.beSpec.requests.cpu",
    ),
    (
        "fs-group",
        cluster(fsGroup=-1),
        "spec.template.spec.securityContext.fsGroup",
        None,
        "spec.beSpec.fsGroup",
    ),
    ("replicas", GOOD, "spec.replicas", None, "spec.beSpec.replicas"),
    ("name", GOOD, "metadata.name", None, "metadata.name"),
    ("unknown", GOOD, "spec.template.spec.something", None, "spec.beSpec"),
]


@pytest.mark.parametrize(("doc", "field", "value", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_child_fields_map_back_to_the_doris_cluster(
    doc: dict[str, Any], field: str, value: str | None, want: str
) -> None:
    assert mapped(doc, field, value) == want


def test_service_node_port_maps_to_its_service_ports_entry() -> None:
    doc = cluster(
        service={
            "type": "NodePort",
            "servicePorts": [
                {"nodePort": 31000, "targetPort": 8040},
                {"nodePort": 31001, "targetPort": 9050},
            ],
        }
    )
    dc, svc = child(doc, "Service", "dc-be-service")
    index = next(i for i, p in enumerate(svc["spec"]["ports"]) if p["targetPort"] == 9050)
    assert (
        paths.cluster_path(dc, svc, paths.parse(f"spec.ports[{index}].nodePort", svc))
        == "spec.beSpec.service.servicePorts[1].nodePort"
    )
    with_cm = cluster(configMapInfo={"configMapName": "be-conf"})
    assert (
        mapped(with_cm, "spec.ports[0].port", kind="Service", name="dc-be-internal")
        == "spec.beSpec.configMapInfo.configMapName"
    )


def test_version_skips_warn() -> None:
    assert checks.doris_version("apache/doris:fe-2.1.7") == (2, 1, 7)
    assert checks.doris_version("registry:5000/selectdb/doris.be-ubuntu:3.0.2-rc1") == (3, 0, 2)
    assert checks.doris_version("apache/doris@sha256:" + "a" * 64) is None

    def warn(old: str, new: str) -> list[str]:
        before, after = copy.deepcopy(GOOD), copy.deepcopy(GOOD)
        before["spec"]["beSpec"]["image"], after["spec"]["beSpec"]["image"] = old, new
        return list(checks.version_warnings(before, after))

    (skip,) = warn("apache/doris:be-3.0.5", "apache/doris:be-3.2.0")
    assert skip.startswith(
        "spec.beSpec.image: apache/doris:be-3.0.5 -> apache/doris:be-3.2.0 skips Doris 3.1"
    )
    assert "(3.0 -> 3.1 -> 3.2)" in skip
    assert warn("apache/doris:be-3.0.5", "apache/doris:be-3.1.0") == []
    assert warn("apache/doris:be-2.1.7", "apache/doris:be-2.1.10") == []  # patch releases may be skipped
    assert "skips Doris 3.0" in warn("apache/doris:be-2.1.7", "apache/doris:be-3.1.0")[0]
    assert "downgrade" in warn("apache/doris:be-3.1.0", "apache/doris:be-3.0.9")[0]


def test_removing_a_component_with_running_pods_is_refused() -> None:
    new = copy.deepcopy(GOOD)
    del new["spec"]["beSpec"]
    req = Request("u", "UPDATE", new, GOOD, "doris", "dc")
    verdict = admission.validate_doris_cluster(req, Facts(running={"be": ["dc-be-0", "dc-be-1"]}))
    assert not verdict.allowed
    (problem,) = verdict.problems
    assert (
        problem.path == "spec.beSpec"
        and "dc-be-0, dc-be-1" in problem.message
        and "replicas to 0" in problem.message
    )
    assert admission.validate_doris_cluster(req, Facts()).allowed  # no pod left: the removal goes through


def test_privileged_init_and_referenced_config_maps() -> None:
    doc = cluster(
        systemInitialization={"command": ["sysctl"]},
        configMapInfo={
            "configMapName": "be-conf",
            "configMaps": [{"configMapName": "extra", "mountPath": "/x"}],
        },
    )
    warnings = admission.validate_doris_cluster(Request("u", "CREATE", doc, None, "doris", "dc")).warnings
    assert any(
        w.startswith("spec.beSpec.systemInitialization: its init container runs privileged") for w in warnings
    )
    assert referenced_config_maps(doc) == {"be-conf", "extra"}
    missing = admission.validate_doris_cluster(
        Request("u", "CREATE", doc, None, "doris", "dc"), Facts(missing_config_maps={"be-conf"})
    )
    assert (
        "ConfigMap be-conf does not exist (yet): the components that name it wait for it" in missing.warnings
    )


def test_access_modes_and_volume_mode_of_an_existing_volume_cant_change() -> None:
    pv = {
        "name": "data",
        "mountPath": "/opt/apache-doris/be/storage",
        "persistentVolumeClaimSpec": {"resources": {"requests": {"storage": "10Gi"}}},
    }
    old = cluster(persistentVolumes=[pv])
    new = copy.deepcopy(old)
    new["spec"]["beSpec"]["persistentVolumes"][0]["persistentVolumeClaimSpec"]["accessModes"] = [
        "ReadWriteMany"
    ]
    new["spec"]["beSpec"]["persistentVolumes"][0]["persistentVolumeClaimSpec"]["volumeMode"] = "Block"
    paths_ = {p.path for p in admission.update_problems(old, new)}
    assert paths_ == {
        "spec.beSpec.persistentVolumes[0].persistentVolumeClaimSpec.accessModes",
        "spec.beSpec.persistentVolumes[0].persistentVolumeClaimSpec.volumeMode",
    }
    same = copy.deepcopy(old)
    same["spec"]["beSpec"]["persistentVolumes"][0]["persistentVolumeClaimSpec"]["accessModes"] = [
        "ReadWriteOnce"
    ]
    assert list(admission.update_problems(old, same)) == []  # the default, written down


class Unreachable:
    """An apiserver client that can't connect, or (slow=True) never answers a dry-run."""

    def __init__(self, slow: bool = False) -> None:
        self.slow = slow

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError("connection refused")

    def list(self, *args: Any, **kwargs: Any) -> Any:
        async def items() -> Any:
            if not self.slow:
                raise OSError("connection refused")
            for item in ():
                yield item

        return items()

    async def patch(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(30)


def test_the_apiserver_unreachable_or_slow_never_refuses() -> None:
    live = admission.validate_doris_cluster_live
    with_cm = cluster(configMapInfo={"configMapName": "be-conf"})
    verdict = asyncio.run(live(Request("u", "CREATE", with_cm, None, "doris", "dc"), Unreachable(), 5))
    assert verdict.allowed
    assert (
        "the ConfigMaps and pods could not be read (connection refused): they were not checked"
        in verdict.warnings
    )
    verdict = asyncio.run(live(Request("u", "CREATE", GOOD, None, "doris", "dc"), Unreachable(), 5))
    assert verdict.allowed and any(
        "dry-run of the StatefulSets and Services failed" in w for w in verdict.warnings
    )
    verdict = asyncio.run(
        live(Request("u", "CREATE", GOOD, None, "doris", "dc"), Unreachable(slow=True), 0.5)
    )
    assert verdict.allowed and any("did not finish in time" in w for w in verdict.warnings)
    bad = cluster(podLabels={"ok": "yes"}, requests={"cpu": 8}, limits={"cpu": 4})
    verdict = asyncio.run(live(Request("u", "CREATE", bad, None, "doris", "dc"), Unreachable(), 5))
    assert [p.path for p in verdict.problems] == ["spec.beSpec.requests.cpu"]  # the other checks still hold
