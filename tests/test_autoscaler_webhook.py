"""Admission of DorisClusterAutoscalers: bad specs refused naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from doris_operator.webhook.admission import Request
from doris_operator.webhook.autoscaler import validate_autoscaler


def request(spec: dict[str, Any]) -> Request:
    obj = {"apiVersion": "doris.selectdb.com/v1", "kind": "DorisClusterAutoscaler", "metadata": {"name": "a"}}
    return Request(uid="1", operation="CREATE", object={**obj, "spec": spec}, namespace="ns", name="a")


CPU = {
    "type": "Resource",
    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
}
GOOD = {"cluster": "c", "be": {"minReplicas": 3, "maxReplicas": 6}, "metrics": [CPU]}


def test_a_good_autoscaler_is_admitted() -> None:
    assert validate_autoscaler(request(GOOD)).allowed


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({**GOOD, "be": {"minReplicas": 7, "maxReplicas": 6}}, "spec.be.minReplicas"),
        ({**GOOD, "be": {"minReplicas": 0, "maxReplicas": 6}}, "spec.be.minReplicas"),
        ({**GOOD, "metrics": []}, "spec.metrics"),
        ({k: v for k, v in GOOD.items() if k != "cluster"}, "spec.cluster"),
        ({**GOOD, "metrics": [{"type": "Resource"}]}, "spec.metrics[0].resource"),
        (
            {
                **GOOD,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}
                ],
            },
            "spec.metrics[0].resource.target.averageUtilization",
        ),
        (
            {
                **GOOD,
                "metrics": [
                    {
                        "type": "Prometheus",
                        "prometheus": {
                            "serverURL": "http://p:9090",
                            "query": "up",
                            "target": {"type": "Utilization", "averageUtilization": 5},
                        },
                    }
                ],
            },
            "spec.metrics[0].prometheus.target.type",
        ),
        (
            {**GOOD, "metrics": [{**CPU, "resource": {"name": "disk", "target": CPU["resource"]["target"]}}]},
            "spec.metrics[0].resource.name",
        ),
        (
            {**GOOD, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 7200}}},
            "spec.behavior.scaleDown.stabilizationWindowSeconds",
        ),
        ({**GOOD, "bee": {}}, "spec.bee"),
        ({k: v for k, v in GOOD.items() if k != "be"}, "spec"),
    ],
)
def test_bad_autoscalers_name_the_field(spec: dict[str, Any], path: str) -> None:
    verdict = validate_autoscaler(request(spec))
    assert not verdict.allowed
    assert any(p.path == path for p in verdict.problems), verdict.message


# --- on the local control plane: the rivals the webhook reads ---------------------------------------


@pytest.mark.cluster
def test_the_webhook_refuses_a_second_autoscaler_of_a_component(
    kube_cluster: Any, kubectl: Any, tmp_path: Any
) -> None:
    from harness import eventually
    from test_webhook import WebhookProcess, apply, doris

    ns = kubectl.new_namespace("dcawh")
    proc = WebhookProcess(
        kube_cluster, tmp_path, "doris-wh-dca", ns, "--no-policy", "--timeout-seconds", "10"
    )
    try:
        proc.start()

        def scaler(name: str, comp: str) -> dict[str, Any]:
            spec = {"cluster": "c", comp: {"minReplicas": 1, "maxReplicas": 3}, "metrics": [CPU]}
            return {
                "apiVersion": "doris.selectdb.com/v1",
                "kind": "DorisClusterAutoscaler",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
            }

        bad = scaler("probe", "be")
        bad["spec"]["be"]["minReplicas"] = 9  # refused by the webhook's own check once it is wired
        eventually(
            lambda: "spec.be.minReplicas" in apply(kubectl, bad, "--dry-run=server").stderr, 30, 0.3,
            what="the apiserver calling the webhook",
        )  # fmt: skip
        policy = {"minReplicas": 1, "maxReplicas": 4}
        cn_spec = {"replicas": 2, "image": "apache/doris:be-2.1.8", "autoScalingPolicy": policy}
        cluster = doris("c", ns, cnSpec=cn_spec)
        assert apply(kubectl, cluster).returncode == 0
        first = apply(kubectl, scaler("first", "be"))
        assert first.returncode == 0, first.stderr
        second = apply(kubectl, scaler("second", "be"))
        assert (
            second.returncode != 0
            and "spec.be" in second.stderr
            and "first already scales be" in second.stderr
        )
        cn = apply(kubectl, scaler("cn", "cn"))
        assert cn.returncode != 0 and "cnSpec.autoScalingPolicy" in cn.stderr, cn.stderr
        again = apply(kubectl, scaler("first", "be"))  # the same one again: no rival of itself
        assert again.returncode == 0, again.stderr
    finally:
        proc.stop()
        proc.uninstall(kubectl)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
