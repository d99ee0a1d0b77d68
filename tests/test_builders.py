"""Behaviour of the pure builder: access modes, the image contract, storage, credentials, overlays."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from doris_operator.api.validation import parse_cluster
from doris_operator.builders import build, names
from doris_operator.builders.config import parse_properties

BASE: dict[str, Any] = {
    "apiVersion": "doris.selectdb.com/v1",
    "kind": "DorisCluster",
    "metadata": {"name": "dc", "namespace": "doris"},
    "spec": {
        "feSpec": {"replicas": 3, "image": "selectdb/doris.fe-ubuntu:2.1.8"},
        "beSpec": {"replicas": 3, "image": "selectdb/doris.be-ubuntu:2.1.8"},
    },
}


def render(patch: dict[str, Any] | None = None, config_maps: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for comp, fields in (patch or {}).items():
        if comp.endswith("Spec") and comp in doc["spec"]:
            doc["spec"][comp].update(fields)
        else:
            doc["spec"][comp] = fields
    objs = build(parse_cluster(doc), config_maps)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objs}


def container(objs: dict[str, Any], comp: str) -> dict[str, Any]:
    return objs[f"StatefulSet/dc-{comp}"]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def env(objs: dict[str, Any], comp: str) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objs, comp)["env"]}


def test_external_traffic_policy_and_load_balancer_annotations_render_unchanged() -> None:
    annotations = {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
        "service.kubernetes.io/qcloud-loadbalancer-internal-subnetid": "subnet-xxxxxxxx",
    }
    objs = render(
        {
            "feSpec": {
                "service": {
                    "type": "LoadBalancer",
                    "externalTrafficPolicy": "Local",
                    "annotations": annotations,
                    "loadBalancerIP": "203.0.113.7",
                    "loadBalancerSourceRanges": ["192.0.2.0/24"],
                }
            },
            "beSpec": {"service": {"type": "NodePort", "externalTrafficPolicy": "Local"}},
        }
    )
    fe = objs["Service/dc-fe-service"]
    assert fe["metadata"]["annotations"] == annotations
    assert fe["spec"]["externalTrafficPolicy"] == "Local"
    assert fe["spec"]["loadBalancerIP"] == "203.0.113.7"
    assert fe["spec"]["loadBalancerSourceRanges"] == ["192.0.2.0/24"]
    be = objs["Service/dc-be-service"]
    assert (be["spec"]["type"], be["spec"]["externalTrafficPolicy"]) == ("NodePort", "Local")
    assert "externalTrafficPolicy" not in objs["Service/dc-fe-internal"]["spec"]


def test_load_balancer_ip_only_on_load_balancer_services() -> None:
    objs = render({"feSpec": {"service": {"type": "NodePort", "loadBalancerIP": "203.0.113.7"}}})
    assert "loadBalancerIP" not in objs["Service/dc-fe-service"]["spec"]


def test_ports_come_from_the_conf_files_in_the_referenced_config_map() -> None:
    fe_conf = "http_port = 18030\nquery_port=19030\n# edit_log_port = 1\nEDIT_LOG_PORT = 19010\n"
    objs = render(
        {
            "feSpec": {"configMapInfo": {"configMapName": "fe-cm"}},
            "beSpec": {"configMapInfo": {"configMapName": "be-cm"}},
        },
        {"fe-cm": {"fe.conf": fe_conf}, "be-cm": {"be.conf": "heartbeat_service_port=19050\n"}},
    )
    assert [p["port"] for p in objs["Service/dc-fe-service"]["spec"]["ports"]] == [18030, 9020, 19030, 19010]
    assert objs["Service/dc-fe-internal"]["spec"]["ports"][0]["port"] == 19030
    assert objs["Service/dc-be-internal"]["spec"]["ports"][0]["port"] == 19050
    # BE finds the FE on the FE's query port, whatever BE's own file says
    assert env(objs, "be")["FE_QUERY_PORT"] == "19030"
    assert container(objs, "be")["livenessProbe"]["tcpSocket"]["port"] == 19050


def test_ports_default_without_config_map() -> None:
    objs = render()
    assert [p["port"] for p in objs["Service/dc-be-service"]["spec"]["ports"]] == [9060, 8040, 9050, 8060]
    assert [p["name"] for p in container(objs, "fe")["ports"]] == [
        "http-port",
        "rpc-port",
        "query-port",
        "edit-log-port",
    ]


def test_arrow_flight_port_only_when_configured() -> None:
    objs = render(
        {"feSpec": {"configMapInfo": {"configMapName": "c"}}},
        {"c": {"fe.conf": "arrow_flight_sql_port = 8070"}},
    )
    assert objs["Service/dc-fe-service"]["spec"]["ports"][-1] == {
        "name": "arrow-flight",
        "port": 8070,
        "targetPort": 8070,
        "protocol": "TCP",
    }
    assert all(p["name"] != "arrow-flight" for p in objs["Service/dc-be-service"]["spec"]["ports"])


def test_image_contract_environment() -> None:
    objs = render({"feSpec": {"electionNumber": 3, "envVars": [{"name": "ENV_FE_ADDR", "value": "evil"}]}})
    fe = env(objs, "fe")
    assert fe["ENV_FE_ADDR"] == "dc-fe-service"  # the contract wins over a user variable of the same name
    assert fe["FE_QUERY_PORT"] == "9030"
    assert fe["ELECT_NUMBER"] == "3"
    assert fe["CONFIGMAP_MOUNT_PATH"] == "/etc/doris"
    assert fe["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert "ELECT_NUMBER" not in env(objs, "be")
    names_ = [e["name"] for e in container(objs, "fe")["env"]]
    assert len(names_) == len(set(names_))  # env is a list-map keyed by name: no duplicates
    assert container(objs, "fe")["command"] == ["/opt/apache-doris/fe_entrypoint.sh"]
    assert container(objs, "fe")["args"] == ["$(ENV_FE_ADDR)"]


def test_user_env_overrides_base_variables() -> None:
    objs = render(
        {
            "beSpec": {
                "envVars": [{"name": "DNS_READY_TIMEOUT", "value": "300"}, {"name": "TZ", "value": "UTC"}]
            }
        }
    )
    be = env(objs, "be")
    assert (be["DNS_READY_TIMEOUT"], be["TZ"]) == ("300", "UTC")


def test_external_fe_address() -> None:
    doc = {"beSpec": {"feAddress": {"endpoints": {"address": ["10.0.0.1", "10.0.0.2"], "port": 19030}}}}
    be = env(render(doc), "be")
    assert (be["ENV_FE_ADDR"], be["FE_QUERY_PORT"]) == ("10.0.0.1,10.0.0.2", "19030")


def test_cn_gets_compute_type_and_be_ports() -> None:
    objs = render({"cnSpec": {"image": "selectdb/doris.be-ubuntu:2.1.8", "replicas": 2}})
    assert env(objs, "cn")["COMPONENT_TYPE"] == "COMPUTE"
    assert [p["containerPort"] for p in container(objs, "cn")["ports"]] == [9060, 8040, 9050, 8060]
    assert container(objs, "cn")["lifecycle"]["preStop"]["exec"]["command"] == [
        "/opt/apache-doris/be_prestop.sh"
    ]
    assert "Service/dc-cn-service" in objs and "Service/dc-cn-internal" in objs


def test_broker_has_no_access_service_and_exec_probes() -> None:
    objs = render({"brokerSpec": {"image": "selectdb/doris.broker-ubuntu:2.1.8"}})
    assert "Service/dc-broker-service" not in objs
    assert objs["Service/dc-broker-internal"]["spec"]["ports"][0]["port"] == 8000
    probe = container(objs, "broker")["livenessProbe"]
    assert probe["exec"]["command"] == ["/opt/apache-doris/broker_is_alive.sh", "8000"]
    assert "terminationGracePeriodSeconds" not in objs["StatefulSet/dc-broker"]["spec"]["template"]["spec"]


def test_probes_and_grace_periods() -> None:
    objs = render(
        {"feSpec": {"startTimeout": 900, "liveTimeout": 30, "readinessProbePolicy": {"periodSeconds": 9}}}
    )
    fe = container(objs, "fe")
    assert fe["startupProbe"]["failureThreshold"] == 180  # 900 s at 5 s a probe
    assert fe["livenessProbe"]["timeoutSeconds"] == 30
    assert fe["readinessProbe"]["periodSeconds"] == 9
    assert container(objs, "be")["startupProbe"]["failureThreshold"] == 72  # at least 360 s
    assert objs["StatefulSet/dc-fe"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 330
    assert objs["StatefulSet/dc-be"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 200
    graced = render(
        {"beSpec": {"configMapInfo": {"configMapName": "c"}}},
        {"c": {"be.conf": "grace_shutdown_wait_seconds=77"}},
    )
    assert graced["StatefulSet/dc-be"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 77


def test_readiness_is_http_in_ip_mode() -> None:
    objs = render(
        {"feSpec": {"configMapInfo": {"configMapName": "c"}}}, {"c": {"fe.conf": "enable_fqdn_mode = false"}}
    )
    assert container(objs, "fe")["readinessProbe"]["httpGet"] == {"path": "/api/health", "port": 8030}
    assert "exec" in container(render(), "fe")["readinessProbe"]  # FQDN mode (the images' default)


def test_empty_dir_when_no_persistent_volume() -> None:
    objs = render()
    fe_pod = objs["StatefulSet/dc-fe"]["spec"]["template"]["spec"]
    assert {"name": "fe-meta", "emptyDir": {}} in fe_pod["volumes"]
    assert {"name": "fe-meta", "mountPath": "/opt/apache-doris/fe/doris-meta"} in container(objs, "fe")[
        "volumeMounts"
    ]
    assert "volumeClaimTemplates" not in objs["StatefulSet/dc-be"]["spec"]


def test_persistent_volume_template_expands_over_storage_root_path() -> None:
    pv = {"name": "data", "persistentVolumeClaimSpec": {"resources": {"requests": {"storage": "1Ti"}}}}
    objs = render(
        {"beSpec": {"persistentVolumes": [pv], "configMapInfo": {"configMapName": "c"}}},
        {"c": {"be.conf": "storage_root_path = /data/a.HDD,50;/data/b,medium:ssd"}},
    )
    claims = objs["StatefulSet/dc-be"]["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data-a", "data-b"]
    mounts = {m["name"]: m["mountPath"] for m in container(objs, "be")["volumeMounts"]}
    assert (mounts["data-a"], mounts["data-b"]) == ("/data/a", "/data/b")


def test_auth_secret_is_mounted_and_admin_user_never_in_env() -> None:
    objs = render({"adminUser": {"name": "ops", "password": "s3cret"}})
    secret = objs["Secret/dc-admin-user"]
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert base64.b64decode(secret["data"]["password"]) == b"s3cret"
    for comp in ("fe", "be"):
        assert "s3cret" not in str(objs[f"StatefulSet/dc-{comp}"])
        assert "PASSWD" not in env(objs, comp)
        assert {"name": "basic-auth", "mountPath": "/etc/basic_auth", "readOnly": True} in container(
            objs, comp
        )["volumeMounts"]
    with_secret = render({"authSecret": "doris-auth", "adminUser": {"name": "ops", "password": "s3cret"}})
    assert "Secret/dc-admin-user" not in with_secret  # authSecret wins, as in the official operator
    volumes = with_secret["StatefulSet/dc-fe"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "basic-auth", "secret": {"secretName": "doris-auth"}} in volumes


def test_system_initialization_and_default_init() -> None:
    objs = render({"beSpec": {"systemInitialization": {"command": ["/sbin/sysctl", "-w", "a=1"]}}})
    inits = objs["StatefulSet/dc-be"]["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["default-init", "init"]
    assert all(c["securityContext"] == {"privileged": True} for c in inits)
    assert inits[1]["image"] == "selectdb/doris.be-ubuntu:2.1.8"  # not the alpine default
    skipped = render({"beSpec": {"skipDefaultSystemInit": True}})
    assert "initContainers" not in skipped["StatefulSet/dc-be"]["spec"]["template"]["spec"]
    assert env(skipped, "be")["SKIP_CHECK_ULIMIT"] == "true"
    fe_init = render({"feSpec": {"systemInitialization": {"initImage": "busybox:1.36", "args": ["x"]}}})
    assert (
        fe_init["StatefulSet/dc-fe"]["spec"]["template"]["spec"]["initContainers"][0]["image"]
        == "busybox:1.36"
    )


def test_debug_mode_reads_pod_annotations_through_podinfo() -> None:
    objs = render()
    assert {"name": "podinfo", "mountPath": "/etc/podinfo"} in container(objs, "be")["volumeMounts"]
    podinfo = next(
        v for v in objs["StatefulSet/dc-be"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "podinfo"
    )
    assert {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}} in podinfo[
        "downwardAPI"
    ]["items"]


def test_labels_and_selectors_are_those_of_the_official_operator() -> None:
    objs = render({"feSpec": {"podLabels": {"team": "a", names.LABEL_COMPONENT: "not-fe"}}})
    sts = objs["StatefulSet/dc-fe"]
    selector = {"app.doris.ownerreference/name": "dc-fe", "app.kubernetes.io/component": "fe"}
    assert sts["spec"]["selector"] == {"matchLabels": selector}
    assert objs["Service/dc-fe-service"]["spec"]["selector"] == selector
    assert sts["spec"]["template"]["metadata"]["labels"] == selector | {
        "app.doris.cluster": "dc",
        "team": "a",
    }
    assert objs["Service/dc-fe-service"]["metadata"]["labels"]["app.doris.service/role"] == "access"
    assert objs["Service/dc-fe-internal"]["metadata"]["labels"]["app.doris.service/role"] == "internal"


def test_pod_template_overlay_merges_by_name_and_keeps_selector() -> None:
    overlay = {
        "metadata": {"labels": {"app.kubernetes.io/component": "x", "extra": "1"}},
        "spec": {
            "containers": [
                {"name": "fe", "imagePullPolicy": "Always"},
                {"name": "sidecar", "image": "busybox"},
            ],
            "dnsPolicy": "None",
        },
    }
    objs = render({"feSpec": {"podTemplate": overlay}})
    template = objs["StatefulSet/dc-fe"]["spec"]["template"]
    fe, sidecar = template["spec"]["containers"]
    assert (fe["name"], fe["imagePullPolicy"], fe["image"]) == (
        "fe",
        "Always",
        "selectdb/doris.fe-ubuntu:2.1.8",
    )
    assert sidecar == {"name": "sidecar", "image": "busybox"}
    assert template["spec"]["dnsPolicy"] == "None"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "fe"
    assert template["metadata"]["labels"]["extra"] == "1"


def test_extensions_reach_the_pod() -> None:
    tsc = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]
    objs = render(
        {
            "beSpec": {
                "topologySpreadConstraints": tsc,
                "priorityClassName": "high",
                "terminationGracePeriodSeconds": 9,
            }
        }
    )
    pod = objs["StatefulSet/dc-be"]["spec"]["template"]["spec"]
    assert (
        pod["topologySpreadConstraints"],
        pod["priorityClassName"],
        pod["terminationGracePeriodSeconds"],
    ) == (
        tsc,
        "high",
        9,
    )


def test_default_anti_affinity_merges_with_user_affinity() -> None:
    user = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}},
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {}}]
        },
    }
    objs = render({"beSpec": {"affinity": user}})
    affinity = objs["StatefulSet/dc-be"]["spec"]["template"]["spec"]["affinity"]
    assert affinity["nodeAffinity"] == user["nodeAffinity"]
    weights = [
        t["weight"] for t in affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    ]
    assert weights == [20, 1]


def test_pod_disruption_budgets_allow_one_pod_down() -> None:
    objs = render()
    for comp in ("fe", "be"):
        pdb = objs[f"PodDisruptionBudget/dc-{comp}"]
        assert pdb["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": names.selector_labels("dc", comp)},
        }


def test_owner_reference_when_uid_known() -> None:
    doc = copy.deepcopy(BASE)
    doc["metadata"]["uid"] = "1234"
    for obj in build(parse_cluster(doc)):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("DorisCluster", "1234", True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = 1\n# b = 2\nC=3", {"a": "1", "c": "3"}),
        ('JAVA_OPTS="-Xmx8g"', {"java_opts": "-Xmx8g"}),
        ("meta_dir = ${DORIS_HOME}/meta", {"meta_dir": "/opt/apache-doris/fe/meta"}),
    ],
)
def test_parse_properties(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text, "/opt/apache-doris/fe") == expected


def test_build_is_deterministic_and_does_not_mutate_input() -> None:
    dc = parse_cluster(
        copy.deepcopy(BASE)
        | {
            "spec": {
                **BASE["spec"],
                "beSpec": {
                    **BASE["spec"]["beSpec"],
                    "enableWorkloadGroup": True,
                    "containerSecurityContext": {"runAsUser": 0},
                },
            }
        }
    )
    before = dc.model_dump()
    assert build(dc) == build(dc)
    assert dc.model_dump() == before


def test_restart_triggers_reach_the_pod_template() -> None:
    """restartedAt on the DorisCluster and, with enableRestartWhenConfigChange, the conf content change
    the pod template: that is what rolls the component (one pod at a time, by the operator)."""

    def annotations(doc_patch: dict[str, Any], conf: str, comp: str = "be") -> dict[str, str]:
        doc = copy.deepcopy(BASE)
        doc["metadata"].update(doc_patch.pop("metadata", {}))
        doc["spec"].update(doc_patch)
        doc["spec"]["beSpec"]["configMapInfo"] = {"configMapName": "c"}
        objs = build(parse_cluster(doc), {"c": {"be.conf": conf}})
        sts = next(o for o in objs if o["metadata"]["name"] == f"dc-{comp}" and o["kind"] == "StatefulSet")
        return dict(sts["spec"]["template"]["metadata"].get("annotations") or {})

    assert annotations({}, "a=1") == {}  # off by default: a conf change alone restarts nothing
    on = {"enableRestartWhenConfigChange": True}
    first, same, changed = (
        annotations(dict(on), "a=1"),
        annotations(dict(on), "a = 1\n"),
        annotations(dict(on), "a=2"),
    )
    assert first[names.CONFIG_HASH] == same[names.CONFIG_HASH] != changed[names.CONFIG_HASH]
    stamp = {"metadata": {"annotations": {"apache.doris.be/restartedAt": "2026-11-22T03:30:00Z"}}}
    assert annotations(stamp, "a=1")["apache.doris.be/restartedAt"] == "2026-11-22T03:30:00Z"
    assert "apache.doris.be/restartedAt" not in annotations(copy.deepcopy(stamp), "a=1", comp="fe")


def test_statefulsets_are_replaced_by_the_operator_not_the_controller() -> None:
    for obj in render().values():
        if obj["kind"] == "StatefulSet":
            assert obj["spec"]["updateStrategy"] == {"type": "OnDelete"}
            assert obj["spec"]["podManagementPolicy"] == "Parallel"
