"""CustomResourceDefinitions generated from the pydantic models.

pydantic's JSON schema uses constructs a CRD's structural schema forbids; this module rewrites them:
``$ref``/``$defs`` are inlined, ``anyOf`` with ``null`` becomes the non-null branch (the apiserver drops
nulls of non-nullable fields), ``title``/``default``/``const`` go, and the markers in :mod:`.base`
(int-or-string, preserve-unknown-fields) pass through.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from . import doriscluster as dc
from . import dorisclusterautoscaler as dca
from . import dorisinitializer as di
from . import dorismonitor as dm

CRD_DIR = Path("config/crd")

_DROP = {"title", "default", "const"}


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a pydantic JSON schema (with ``$defs``) into a CRD structural schema."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        ref = node.pop("$ref", None)
        if ref is not None:
            target = walk(copy.deepcopy(defs[ref.rsplit("/", 1)[-1]]))
            target.update({k: walk(v) for k, v in node.items() if k != "$defs"})
            node = target
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
            if len(branches) != 1:
                raise ValueError(f"union without int-or-string marker cannot be structural: {branches}")
            merged = walk(branches[0])
            merged.update({k: v for k, v in node.items()})
            node = merged
        if "allOf" in node and len(node["allOf"]) == 1:
            merged = walk(node.pop("allOf")[0])
            merged.update(node)
            node = merged
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP or key == "$defs" or (key == "additionalProperties" and value is False):
                continue
            if key == "properties":
                out[key] = {name: walk(sub) for name, sub in value.items()}
            else:
                out[key] = walk(value)
        if "properties" in out or "additionalProperties" in out:
            out.setdefault("type", "object")
        # description and type first: the generated YAML reads like hand-written CRDs
        head = {k: out.pop(k) for k in ("description", "type") if k in out}
        return head | out

    return walk(schema)  # type: ignore[no-any-return]


def doriscluster_crd() -> dict[str, Any]:
    spec_schema = structural(dc.DorisClusterSpec.model_json_schema(by_alias=True, mode="validation"))
    status_schema = structural(dc.DorisClusterStatus.model_json_schema(by_alias=True, mode="validation"))
    spec_schema["description"] = "The desired state of the Doris cluster."
    status_schema["description"] = "The observed state, written by the operator."
    columns: list[dict[str, Any]] = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "FE",
            "type": "string",
            "jsonPath": ".status.feStatus.ready",
            "description": "ready/desired",
        },
        {
            "name": "BE",
            "type": "string",
            "jsonPath": ".status.beStatus.ready",
            "description": "ready/desired",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    for comp in ("fe", "be", "cn", "broker"):
        columns.append(
            {
                "name": f"{comp.capitalize()}Status",
                "type": "string",
                "priority": 1,
                "jsonPath": f".status.{comp}Status.componentCondition.phase",
            }
        )
    return namespaced_crd(
        dc.KIND,
        dc.PLURAL,
        ["dcr"],
        "An Apache Doris cluster: FE, BE, CN and Broker.",
        spec_schema,
        status_schema,
        columns,
    )


def namespaced_crd(
    kind: str,
    plural: str,
    short_names: list[str],
    description: str,
    spec_schema: dict[str, Any],
    status_schema: dict[str, Any],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    """A namespaced CRD of group doris.selectdb.com, one served and stored version, status subresource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{dc.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "doris-operator"},
        },
        "spec": {
            "group": dc.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["doris"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": dc.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": description,
                            "type": "object",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def dorisinitializer_crd() -> dict[str, Any]:
    spec_schema = structural(di.DorisInitializerSpec.model_json_schema(by_alias=True, mode="validation"))
    status_schema = structural(di.DorisInitializerStatus.model_json_schema(by_alias=True, mode="validation"))
    spec_schema["description"] = "The desired initialization: passwords, users, databases and SQL steps."
    status_schema["description"] = "What has been applied, step by step, written by the operator."
    progressing = '.status.conditions[?(@.type=="Progressing")]'
    degraded = '.status.conditions[?(@.type=="Degraded")]'
    columns: list[dict[str, Any]] = [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Steps", "type": "string", "jsonPath": ".status.applied", "description": "applied/total"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Progress", "type": "string", "priority": 1, "jsonPath": f"{progressing}.reason"},
        {"name": "Problem", "type": "string", "priority": 1, "jsonPath": f"{degraded}.message"},
    ]
    return namespaced_crd(
        di.KIND,
        di.PLURAL,
        [di.SHORT_NAME],
        "The initialization of a DorisCluster: root and admin passwords, users, databases and SQL, "
        "each applied once and recorded in status.steps.",
        spec_schema,
        status_schema,
        columns,
    )


def dorisclusterautoscaler_crd() -> dict[str, Any]:
    spec_schema = structural(
        dca.DorisClusterAutoscalerSpec.model_json_schema(by_alias=True, mode="validation")
    )
    status_schema = structural(
        dca.DorisClusterAutoscalerStatus.model_json_schema(by_alias=True, mode="validation")
    )
    spec_schema["description"] = "The components to scale, their ranges, the metrics and the behavior."
    status_schema["description"] = "Per component: replicas, the last decision, metrics and conditions."
    columns: list[dict[str, Any]] = [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
        {"name": "BE", "type": "integer", "jsonPath": ".status.be.desiredReplicas", "description": "desired"},
        {"name": "CN", "type": "integer", "jsonPath": ".status.cn.desiredReplicas", "description": "desired"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Decision", "type": "string", "priority": 1, "jsonPath": ".status.be.lastDecision.message"},
    ]
    return namespaced_crd(
        dca.KIND,
        dca.PLURAL,
        [dca.SHORT_NAME],
        "The automatic scaling of a DorisCluster's BEs and CNs, decided with the HorizontalPodAutoscaler's "
        "algorithm and applied through the DorisCluster's replicas.",
        spec_schema,
        status_schema,
        columns,
    )


def dorismonitor_crd() -> dict[str, Any]:
    spec_schema = structural(dm.DorisMonitorSpec.model_json_schema(by_alias=True, mode="validation"))
    status_schema = structural(dm.DorisMonitorStatus.model_json_schema(by_alias=True, mode="validation"))
    spec_schema["description"] = "What to monitor, and how (prometheusOperator or bundled)."
    status_schema["description"] = "The observed state, written by the operator."
    columns: list[dict[str, Any]] = [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Grafana", "type": "string", "priority": 1, "jsonPath": ".status.grafanaURL"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    crd = namespaced_crd(
        dm.KIND,
        dm.PLURAL,
        [dm.SHORT_NAME],
        "Metrics, alerts and dashboards for one DorisCluster.",
        spec_schema,
        status_schema,
        columns,
    )
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["required"] = ["spec"]
    return crd


def all_crds() -> list[dict[str, Any]]:
    return [doriscluster_crd(), dorisinitializer_crd(), dorisclusterautoscaler_crd(), dorismonitor_crd()]


def crd_filename(crd: dict[str, Any]) -> str:
    return f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"


def render_yaml(crd: dict[str, Any]) -> str:
    return yaml.safe_dump(crd, sort_keys=False, width=110)


def write(directory: Path = CRD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for crd in all_crds():
        path = directory / crd_filename(crd)
        path.write_text(render_yaml(crd))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write():
        print(p)
