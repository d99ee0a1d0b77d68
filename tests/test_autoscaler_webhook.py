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
