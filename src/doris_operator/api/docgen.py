"""docs/reference.md generated from the pydantic models: every DorisCluster field with its wire name,
type, description (the attribute docstrings), whether it is an extension of ours, allowed values,
bounds and the CEL rules the apiserver checks.

``python -m doris_operator.api.docgen`` rewrites the file; tests/test_docgen.py fails when it is stale.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel, WithJsonSchema
from pydantic.fields import FieldInfo

from . import doriscluster as dc
from .base import QUANTITY_PATTERN, Model

REFERENCE_PATH = Path("docs/reference.md")

EXTENSION = "*(extension)*"

# The component specs share BaseSpec: it is documented once, each of them lists only its own fields.
SHARED_BASE: dict[type[BaseModel], type[BaseModel]] = {
    dc.FeSpec: dc.BaseSpec,
    dc.BeSpec: dc.BaseSpec,
    dc.CnSpec: dc.BaseSpec,
    dc.BrokerSpec: dc.BaseSpec,
}

# Descriptions of official fields whose models carry no attribute docstring (checked against builders/ and
# reconcile/).  A docstring on the field wins; tests/test_docgen.py checks every key names a field.
FALLBACK: dict[str, str] = {
    "DorisClusterSpec.fe_spec": "The FE (frontend): metadata, SQL planning, the MySQL protocol.",
    "DorisClusterSpec.be_spec": "The BE (backend): storage and query execution.",
    "DorisClusterSpec.cn_spec": "Compute nodes: BEs that execute queries and store no data.",
    "DorisClusterSpec.broker_spec": "Brokers: access to external file systems for loads and exports.",
    "DorisClusterSpec.enable_restart_when_config_change": "Restart a component, one pod at a time, when "
    "the conf file in its configMapInfo ConfigMap changes (docs/operations.md).",
    "DorisClusterSpec.kerberos_info": "Kerberos files (krb5.conf, keytabs) mounted into the pods.",
    "DorisClusterSpec.shared_persistent_volume_claims": "Existing PersistentVolumeClaims mounted into the "
    "pods of the listed components.",
    "BaseSpec.replicas": "Number of pods (default 1). Lowering it for FE, BE or CN first removes the "
    "leaving nodes from Doris (docs/operations.md).",
    "BaseSpec.image_pull_secrets": "Secrets for pulling the images.",
    "BaseSpec.service_account": "ServiceAccount of the pods.",
    "BaseSpec.service": "The access Service `{cluster}-{component}-service` (the Broker has none).",
    "BaseSpec.fe_address": "An FE outside this DorisCluster, for BE, CN or Broker without feSpec.",
    "BaseSpec.config_map_info": "ConfigMaps with the conf files; ports and storage paths are read from them.",
    "BaseSpec.requests": "Container resource requests (cpu, memory, ...).",
    "BaseSpec.limits": "Container resource limits.",
    "BaseSpec.claims": "Dynamic resource claims of the container.",
    "BaseSpec.node_selector": "Pod node selector.",
    "BaseSpec.env_vars": "Extra container environment variables; the variables the images depend on "
    "(ENV_FE_ADDR, FE_QUERY_PORT, ELECT_NUMBER, ...) can't be overridden.",
    "BaseSpec.affinity": "Pod affinity; the operator adds a preferred anti-affinity spreading the pods of a "
    "component over nodes.",
    "BaseSpec.tolerations": "Pod tolerations.",
    "BaseSpec.pod_labels": "Extra pod labels (the selector labels always win).",
    "BaseSpec.host_aliases": "Extra /etc/hosts entries of the pods.",
    "BaseSpec.persistent_volumes": "Persistent volumes of the pods (the StatefulSet's volumeClaimTemplates).",
    "BaseSpec.system_initialization": "An extra privileged init container, for host settings.",
    "BaseSpec.secrets": "Secrets mounted into the container.",
    "BaseSpec.readiness_probe_policy": "Readiness probe settings.",
    "BaseSpec.priority_class_name": "PriorityClass of the pods.",
    "BeSpec.enable_workload_group": "Run the BE container privileged with ENABLE_WORKLOAD_GROUP=true, for "
    "Doris workload groups' CPU limits.",
    "BeSpec.skip_default_system_init": "No default init container (sysctl vm.max_map_count, swapoff); sets "
    "SKIP_CHECK_ULIMIT=true.",
    "BeSpec.enable_fe_affinity": "Prefer nodes that run an FE of this cluster.",
    "BeSpec.auto_resolve_limit_cpu": "Pass limits.cpu to the BE (BE_CPU_LIMIT).",
    "CnSpec.skip_default_system_init": "As beSpec.skipDefaultSystemInit.",
    "CnSpec.auto_resolve_limit_cpu": "As beSpec.autoResolveLimitCPU.",
    "BrokerSpec.kick_off_affinity_be": "Prefer nodes that run a BE of this cluster.",
    "PvcRetentionPolicy.when_deleted": "Delete: the claims go with the DorisCluster. Retain (default): they "
    "stay.",
    "DorisClusterStatus.phase": "Ready, Progressing, Degraded, Paused or Deleting.",
    "ComponentStatus.access_service": "The component's access Service.",
    "ComponentStatus.ready_replicas": "Ready pods.",
    "ComponentCondition.phase": "initializing, reconciling, available or haveMemberFailed (as the official "
    "operator reports them).",
}

_NONE = type(None)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models an annotation refers to, in order (inside unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        if typing.get_origin(annotation) is Literal:
            return
        yield from _models_in(arg)


def _schema_marker(metadata: list[Any]) -> str | None:
    for item in metadata:
        if isinstance(item, WithJsonSchema) and item.json_schema is not None:
            schema = item.json_schema
            if schema.get("x-kubernetes-preserve-unknown-fields"):
                return "object"
            if schema.get("pattern") == QUANTITY_PATTERN:
                return "quantity"
            if schema.get("x-kubernetes-int-or-string"):
                return "int-or-string"
    return None


def type_name(annotation: Any) -> str:
    """A short, Go-API-reference-like name: ``[]ServicePort``, ``map[string]quantity``, ``enum``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        marker = _schema_marker(list(annotation.__metadata__))
        return marker if marker is not None else type_name(args[0])
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not _NONE]
        if len(rest) == 1:
            return type_name(rest[0])
        return " or ".join(type_name(a) for a in rest)
    if origin is Literal:
        kinds = {type(a) for a in args}
        return "string" if kinds == {str} else " or ".join(sorted(k.__name__ for k in kinds))
    if origin is list:
        return f"[]{type_name(args[0])}"
    if origin is dict:
        return f"map[string]{type_name(args[1])}"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{_anchor(annotation)})"
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in simple:
        return simple[annotation]
    return getattr(annotation, "__name__", str(annotation))


def enum_values(annotation: Any) -> list[Any]:
    """The allowed values of a Literal anywhere in the annotation (``""`` included)."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    out: list[Any] = []
    for arg in typing.get_args(annotation):
        if not isinstance(arg, type | typing.TypeVar) or typing.get_origin(arg) is not None:
            out += [v for v in enum_values(arg) if v not in out]
    return out


def constraints(field: FieldInfo) -> list[str]:
    out: list[str] = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            out.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Le):
            out.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.Gt):
            out.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Lt):
            out.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen):
            out.append(f"min length {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            out.append(f"max length {item.max_length}")
    return out


def _rules(extra: Any) -> list[str]:
    if not isinstance(extra, dict):
        return []
    return [str(r["message"]) for r in extra.get("x-kubernetes-validations", [])]


def model_rules(model: type[BaseModel]) -> list[str]:
    rules = _rules(model.model_config.get("json_schema_extra"))
    base = SHARED_BASE.get(model)
    if base is not None:
        inherited = set(_rules(base.model_config.get("json_schema_extra")))
        rules = [r for r in rules if r not in inherited]
    return rules


def own_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    base = SHARED_BASE.get(model)
    fields = dict(model.model_fields)
    if base is not None:
        fields = {k: v for k, v in fields.items() if k not in base.model_fields}
    return fields


def wire_name(name: str, field: FieldInfo) -> str:
    return field.alias or name


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


_COMPONENT_PATH = re.compile(r"^(spec|status)\.(?:fe|be|cn|broker)(Spec|Status)(?=\.|$)")


def compact_paths(paths: list[str]) -> list[str]:
    """``spec.feSpec.service`` ... ``spec.brokerSpec.service`` become ``spec.<comp>Spec.service``
    (and the same for ``status.<comp>Status``)."""
    out: list[str] = []
    for path in paths:
        template = _COMPONENT_PATH.sub(r"\1.<comp>\2", path)
        every = template != path and all(
            template.replace("<comp>", c) in paths for c in ("fe", "be", "cn", "broker")
        )
        shown = template if every else path
        if shown not in out:
            out.append(shown)
    return out


def _describe(model: type[BaseModel], name: str, field: FieldInfo) -> tuple[str, bool]:
    text = " ".join((field.description or "").split())
    extension = text.startswith(EXTENSION)
    if extension:
        text = text[len(EXTENSION) :].strip()
    if not text:
        owner = next(
            (m for m in model.__mro__ if isinstance(m, type) and name in getattr(m, "__annotations__", {})),
            model,
        )
        text = FALLBACK.get(f"{owner.__name__}.{name}", "")
    return text, extension


def walk(root: type[BaseModel] = dc.DorisCluster) -> tuple[list[type[BaseModel]], dict[type, list[str]]]:
    """The models reachable from ``root`` (breadth-first, in field order) and the paths each appears at."""
    order: list[type[BaseModel]] = [root]
    paths: dict[type, list[str]] = {root: [""]}
    queue: list[type[BaseModel]] = [root]
    while queue:
        model = queue.pop(0)
        children: list[type[BaseModel]] = [model]
        base = SHARED_BASE.get(model)
        if base is not None:
            children.append(base)
            paths.setdefault(base, [])
            if base not in order:
                order.append(base)
            for path in paths[model]:
                if path not in paths[base]:
                    paths[base].append(path)
        for name, field in model.model_fields.items():
            list_suffix = "[]" if "list[" in str(field.annotation) else ""
            for sub in _models_in(field.annotation):
                for path in paths[model]:
                    sub_path = f"{path}.{wire_name(name, field)}{list_suffix}".lstrip(".")
                    paths.setdefault(sub, [])
                    if sub_path not in paths[sub]:
                        paths[sub].append(sub_path)
                if sub not in order:
                    order.append(sub)
                    queue.append(sub)
    return order, paths


def _section(model: type[BaseModel], paths: list[str]) -> list[str]:
    lines = [f'<a id="{_anchor(model)}"></a>', "", f"### {model.__name__}", ""]
    doc = model.__doc__
    if doc and model not in (Model,) and doc != Model.__doc__:
        lines += [_cell(doc), ""]
    if paths and paths != [""]:
        lines += ["At: " + ", ".join(f"`{p}`" for p in compact_paths(paths)), ""]
    base = SHARED_BASE.get(model)
    if base is not None:
        lines += [f"Every field of [{base.__name__}](#{_anchor(base)}), and:", ""]
    fields = own_fields(model)
    if fields:
        lines += ["| Field | Type | Description |", "|---|---|---|"]
        for name, field in fields.items():
            text, extension = _describe(model, name, field)
            notes: list[str] = []
            values = enum_values(field.annotation)
            if values:
                notes.append(
                    ("Always " if len(values) == 1 else "One of ")
                    + ", ".join(f"`{v}`" if v != "" else '`""`' for v in values)
                    + "."
                )
            bounds = constraints(field)
            if bounds:
                notes.append("Bounds: " + ", ".join(bounds) + ".")
            if field.is_required():
                notes.append("Required.")
            field_rules = _rules(field.json_schema_extra)
            if field_rules:
                notes.append("Checked: " + "; ".join(field_rules) + ".")
            description = " ".join(x for x in [text, *notes] if x)
            name_cell = f"`{wire_name(name, field)}`" + (" *(extension)*" if extension else "")
            lines.append(
                f"| {_cell(name_cell)} | {_cell(type_name(field.annotation))} | {_cell(description)} |"
            )
        lines.append("")
    rules = model_rules(model)
    if rules:
        lines += ["Rules the apiserver checks (CEL in the CRD):", ""]
        lines += [f"- {r}" for r in rules]
        lines.append("")
    return lines


def render() -> str:
    order, paths = walk()
    status_models = [m for m in order if paths[m] and all(p.split(".")[0] == "status" for p in paths[m])]
    spec_models = [m for m in order if m not in status_models and m is not dc.DorisCluster]
    lines = [
        "# DorisCluster reference",
        "",
        "<!-- Generated by `python -m doris_operator.api.docgen` from src/doris_operator/api/; do not edit."
        " tests/test_docgen.py fails when this file is stale. -->",
        "",
        f"`apiVersion: {dc.API_VERSION}`, `kind: {dc.KIND}` (plural `{dc.PLURAL}`, short name `dcr`).",
        "Field names are the ones on the wire (camelCase). Fields marked *(extension)* are not in the",
        "official operator's CRD; everything else means what it means there. Unknown fields are rejected",
        "by `doris-operator render` and the admission webhook, and pruned by the apiserver.",
        "",
        "Types: `[]X` is a list, `map[string]X` an object with string keys, `quantity` a Kubernetes",
        "quantity (`8`, `500m`, `16Gi`), `object` an embedded Kubernetes object passed through as it is.",
        "",
        "## DorisCluster",
        "",
        *_section(dc.DorisCluster, [])[4:],
        "## Metadata and spec",
        "",
    ]
    for model in spec_models:
        lines += _section(model, paths[model])
    lines += ["## Status", "", "Written by the operator.", ""]
    for model in status_models:
        lines += _section(model, paths[model])
    return "\n".join(lines).rstrip("\n") + "\n"


def write(path: Path = REFERENCE_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        current = REFERENCE_PATH.read_text() if REFERENCE_PATH.exists() else ""
        if current != render():
            print(f"{REFERENCE_PATH} is stale: run python -m doris_operator.api.docgen", file=sys.stderr)
            return 1
        return 0
    print(write())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
