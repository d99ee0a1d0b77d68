"""Turning a manifest into a DorisCluster, with every problem reported as ``field.path: what is wrong``.

Two layers: the schema (pydantic; the same rules the CRD carries) and the checks a schema can't
express.  The CLI, the admission webhook and the controller all call :func:`parse_cluster`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from .doriscluster import IMAGE_PATTERN, BaseSpec, Component, DorisCluster, FeSpec

MAX_NAME_LENGTH = 45
"""``{name}-broker-internal`` must be a 63-character DNS label, and pods' controller-revision-hash label
values (``{name}-broker-`` plus 10 characters) too."""
NODE_PORT_RANGE = (30000, 32767)

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IMAGE = re.compile(IMAGE_PATTERN)
_TYPE_TAG = re.compile(r"^(int|float|str|bool|none|.*\[.*\])$")
_TYPE_NAMES = {"int": "an integer", "float": "a number", "string": "a string", "bool": "a boolean"}
_SUFFIX: dict[str, int | Decimal] = {
    "": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("0.001"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidResource(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def parse_quantity(value: int | float | str) -> Decimal:
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = re.match(r"^([+-]?[0-9.]+)(e[+-]?\d+|[a-zA-Z]*)$", value)
    if match is None:
        raise ValueError(value)
    number, suffix = match.groups()
    try:
        if suffix.lower().startswith("e") and suffix[1:].lstrip("+-").isdigit():
            return Decimal(number + suffix)
        return Decimal(number) * Decimal(_SUFFIX[suffix])
    except (KeyError, InvalidOperation) as err:
        raise ValueError(value) from err


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif _TYPE_TAG.match(item):
            continue
        else:
            out += f".{item}" if out else item
    return out or "(root)"


def _message(err: Any) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "is required"
    if kind in ("literal_error", "enum"):
        expected = err.get("ctx", {}).get("expected", "")
        return f"unsupported value {err['input']!r}: must be {expected}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{msg[0].lower()}{msg[1:]} (got {type(err['input']).__name__} {err['input']!r})"
    return str(msg).removeprefix("Value error, ")


def schema_problems(err: ValidationError) -> list[Problem]:
    """One problem per field path (union members failing together collapse into one line)."""
    seen: dict[str, list[str]] = {}
    wrong_type: dict[str, tuple[list[str], Any]] = {}
    for e in err.errors():
        path = _path(tuple(e["loc"]))
        if e["type"].endswith("_type") and len(e["loc"]) > 0 and _TYPE_TAG.match(str(e["loc"][-1])):
            # one member of a union (int-or-string ...) failed: report the union once
            expected, _ = wrong_type.setdefault(path, ([], e["input"]))
            expected.append(e["type"].removesuffix("_type"))
            continue
        msg = _message(e)
        if msg not in seen.setdefault(path, []):
            seen[path].append(msg)
    problems = [Problem(path, " or ".join(msgs)) for path, msgs in seen.items()]
    for path, (expected, got) in wrong_type.items():
        problems.append(
            Problem(path, f"must be {' or '.join(_TYPE_NAMES.get(t, t) for t in expected)} (got {got!r})")
        )
    return problems


def parse_cluster(obj: Any) -> DorisCluster:
    """Validate a DorisCluster manifest; raise :class:`InvalidResource` naming every bad field."""
    if not isinstance(obj, dict):
        raise InvalidResource([Problem("(root)", f"expected a mapping, got {type(obj).__name__}")])
    try:
        dc = DorisCluster.model_validate(obj)
    except ValidationError as err:
        raise InvalidResource(schema_problems(err)) from None
    problems = list(semantic_problems(dc))
    if problems:
        raise InvalidResource(problems)
    return dc


def semantic_problems(dc: DorisCluster) -> Iterator[Problem]:
    name = dc.metadata.name
    if not _DNS1035.match(name):
        yield Problem(
            "metadata.name",
            f"{name!r} must be a DNS label: lower-case letters, digits and '-', starting with a letter "
            "(it names Services)",
        )
    if len(name) > MAX_NAME_LENGTH:
        yield Problem(
            "metadata.name",
            f"{name!r} is {len(name)} characters; at most {MAX_NAME_LENGTH} fit in the names of its Services "
            "and pods",
        )
    comps = dc.components()
    if not comps:
        yield Problem("spec", "no component: set feSpec (and beSpec, cnSpec, brokerSpec as needed)")
    admin = dc.spec.admin_user
    if admin is not None and (admin.name or "").lower() == "admin":
        yield Problem(
            "spec.adminUser.name",
            "'admin' can't manage nodes; use root or a dedicated user with NODE_PRIV",
        )
    node_ports: dict[int, str] = {}
    for comp, spec in comps:
        yield from _component_problems(dc, comp, spec, node_ports)
    for i, shared in enumerate(dc.spec.shared_persistent_volume_claims or []):
        base = f"spec.sharedPersistentVolumeClaims[{i}]"
        if not shared.persistent_volume_claim_name:
            yield Problem(f"{base}.persistentVolumeClaimName", "is required")
        if not shared.mount_path:
            yield Problem(f"{base}.mountPath", "is required")
        elif not shared.mount_path.startswith(("/", "$DORIS_HOME")):
            yield Problem(f"{base}.mountPath", f"{shared.mount_path!r} must be an absolute path")
    krb = dc.spec.kerberos_info
    if krb is not None and krb.keytab_path and not krb.keytab_path.startswith("/"):
        yield Problem("spec.kerberosInfo.keytabPath", f"{krb.keytab_path!r} must be an absolute path")


def _component_problems(
    dc: DorisCluster, comp: Component, spec: BaseSpec, node_ports: dict[int, str]
) -> Iterator[Problem]:
    from ..builders.config import PORTS  # the ports a component exposes; builders import api, not back

    base = f"spec.{comp}Spec"
    if not spec.image.strip():
        yield Problem(f"{base}.image", "must not be empty")
    elif not _IMAGE.match(spec.image):
        yield Problem(f"{base}.image", f"{spec.image!r} is not a valid image reference")
    init = spec.system_initialization
    if init is not None and init.init_image and not _IMAGE.match(init.init_image):
        yield Problem(
            f"{base}.systemInitialization.initImage", f"{init.init_image!r} is not a valid image reference"
        )
    if comp != "fe" and dc.spec.fe_spec is None:
        endpoints = spec.fe_address.endpoints if spec.fe_address else None
        if endpoints is None or not endpoints.address:
            yield Problem(
                f"{base}.feAddress",
                f"{comp.upper()} needs an FE: set spec.feSpec, or feAddress.endpoints for an FE outside "
                "this resource",
            )
    if isinstance(spec, FeSpec) and spec.election_number is not None:
        replicas = spec.replicas if spec.replicas is not None else 1
        if spec.election_number > replicas:
            yield Problem(
                f"{base}.electionNumber",
                f"{spec.election_number} followers can't be elected from {replicas} replicas "
                "(electionNumber must be <= replicas)",
            )
    yield from _service_problems(comp, spec, base, node_ports, {p[2] for p in PORTS[comp]})
    yield from _resource_problems(spec.requests, spec.limits, base)
    if init is not None:
        yield from _resource_problems(init.requests, init.limits, f"{base}.systemInitialization")
    yield from _volume_problems(spec, base)
    env_names: set[str] = set()
    for i, var in enumerate(spec.env_vars or []):
        if var.name in env_names:
            yield Problem(f"{base}.envVars[{i}].name", f"{var.name!r} is set twice")
        env_names.add(var.name)
        if var.value is not None and var.value_from is not None:
            yield Problem(f"{base}.envVars[{i}]", "set value or valueFrom, not both")
    for i, tol in enumerate(spec.tolerations or []):
        if tol.operator == "Exists" and tol.value:
            yield Problem(f"{base}.tolerations[{i}].value", "must be empty when operator is Exists")
    for i, alias in enumerate(spec.host_aliases or []):
        try:
            ipaddress.ip_address(alias.ip)
        except ValueError:
            yield Problem(f"{base}.hostAliases[{i}].ip", f"{alias.ip!r} is not an IP address")
    if spec.pod_template is not None:
        extra = set(spec.pod_template) - {"metadata", "spec"}
        if extra:
            yield Problem(f"{base}.podTemplate", f"only metadata and spec may be set, not {sorted(extra)}")
    policy = getattr(spec, "auto_scaling_policy", None)
    if policy is not None:
        if not policy.max_replicas:
            yield Problem(f"{base}.autoScalingPolicy.maxReplicas", "is required and must be at least 1")
        elif policy.min_replicas is not None and policy.min_replicas > policy.max_replicas:
            yield Problem(
                f"{base}.autoScalingPolicy.minReplicas",
                f"{policy.min_replicas} is greater than maxReplicas {policy.max_replicas}",
            )


def _service_problems(
    comp: Component, spec: BaseSpec, base: str, node_ports: dict[int, str], default_ports: set[int]
) -> Iterator[Problem]:
    svc = spec.service
    if svc is None:
        return
    svc_type = svc.type or "ClusterIP"
    if comp == "broker" and svc.service_ports:
        yield Problem(f"{base}.service.servicePorts", "the Broker has no access Service to pin ports on")
    for i, port in enumerate(svc.service_ports or []):
        path = f"{base}.service.servicePorts[{i}]"
        if not port.target_port:
            yield Problem(f"{path}.targetPort", "is required: the container port the entry applies to")
        elif port.target_port not in default_ports and not spec.config_map_info:
            yield Problem(
                f"{path}.targetPort",
                f"{port.target_port} is not a port of {comp.upper()} (ports: "
                f"{', '.join(str(p) for p in sorted(default_ports))})",
            )
        if port.node_port:
            if svc_type == "ClusterIP":
                yield Problem(f"{path}.nodePort", "only NodePort and LoadBalancer Services have node ports")
            low, high = NODE_PORT_RANGE
            if not low <= port.node_port <= high:
                yield Problem(
                    f"{path}.nodePort",
                    f"{port.node_port} is outside the node port range {low}-{high}",
                )
            if port.node_port in node_ports:
                yield Problem(
                    f"{path}.nodePort", f"{port.node_port} is already used by {node_ports[port.node_port]}"
                )
            else:
                node_ports[port.node_port] = path
    if svc.external_traffic_policy and svc_type == "ClusterIP":
        yield Problem(
            f"{base}.service.externalTrafficPolicy", "applies to NodePort and LoadBalancer Services only"
        )
    for i, cidr in enumerate(svc.load_balancer_source_ranges or []):
        if svc_type != "LoadBalancer":
            yield Problem(f"{base}.service.loadBalancerSourceRanges", "applies to LoadBalancer Services only")
            break
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield Problem(f"{base}.service.loadBalancerSourceRanges[{i}]", f"{cidr!r} is not a CIDR")


def _resource_problems(requests: Any, limits: Any, base: str) -> Iterator[Problem]:
    for resource, request in (requests or {}).items():
        limit = (limits or {}).get(resource)
        if limit is None:
            continue
        try:
            too_big = parse_quantity(request) > parse_quantity(limit)
        except ValueError:
            continue  # the schema already reported the malformed quantity
        if too_big:
            yield Problem(f"{base}.requests.{resource}", f"{request} is more than the limit {limit}")


def _volume_problems(spec: BaseSpec, base: str) -> Iterator[Problem]:
    mounts: dict[str, str] = {}
    volumes: dict[str, str] = {}

    def claim(kind: str, name: str | None, mount: str | None, path: str) -> Iterator[Problem]:
        from ..builders.pod import volume_name

        if mount is not None:
            if not mount.startswith("/"):
                yield Problem(f"{path}.mountPath", f"{mount!r} must be an absolute path")
            elif mount in mounts:
                yield Problem(f"{path}.mountPath", f"{mount} is already mounted by {mounts[mount]}")
            else:
                mounts[mount] = path
        if name:
            vname = volume_name(name) if kind != "pv" else name
            if vname in volumes:
                yield Problem(path, f"volume name {vname!r} is already used by {volumes[vname]}")
            volumes[vname] = path

    for i, pv in enumerate(spec.persistent_volumes or []):
        path = f"{base}.persistentVolumes[{i}]"
        if not pv.name:
            yield Problem(f"{path}.name", "is required")
        elif not _DNS1123_LABEL.match(pv.name) or len(pv.name) > 63:
            yield Problem(
                f"{path}.name", f"{pv.name!r} must be a DNS label (lower-case letters, digits, '-')"
            )
        claim_spec = pv.persistent_volume_claim_spec
        storage = claim_spec.resources.requests if claim_spec and claim_spec.resources else None
        if not storage or "storage" not in storage:
            yield Problem(f"{path}.persistentVolumeClaimSpec.resources.requests.storage", "is required")
        yield from claim("pv", pv.name, pv.mount_path, path)
    info = spec.config_map_info
    if info is not None:
        if info.config_map_name:
            yield from claim("cm", info.config_map_name, "/etc/doris", f"{base}.configMapInfo.configMapName")
        for i, cm in enumerate(info.config_maps or []):
            path = f"{base}.configMapInfo.configMaps[{i}]"
            if not cm.config_map_name:
                yield Problem(f"{path}.configMapName", "is required")
            yield from claim("cm", cm.config_map_name, cm.mount_path or "/etc/doris", path)
    for i, secret in enumerate(spec.secrets or []):
        path = f"{base}.secrets[{i}]"
        if not secret.secret_name:
            yield Problem(f"{path}.secretName", "is required")
        yield from claim("secret", secret.secret_name, secret.mount_path or "/etc/doris", path)
