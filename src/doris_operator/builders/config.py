"""Doris conf files (fe.conf, be.conf, apache_hdfs_broker.conf) read from the referenced ConfigMaps.

The operator reads ports, storage paths and a few switches from them, as the official one does; keys
are case-insensitive Java-properties style."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..api.doriscluster import BaseSpec, Component

ConfigMaps = Mapping[str, Mapping[str, str]]
"""ConfigMap name -> its data, for the ConfigMaps the caller could read."""

DORIS_ROOT = "/opt/apache-doris"
DORIS_HOME: dict[Component, str] = {
    "fe": f"{DORIS_ROOT}/fe",
    "be": f"{DORIS_ROOT}/be",
    "cn": f"{DORIS_ROOT}/be",
    "broker": f"{DORIS_ROOT}/apache_hdfs_broker",
}
CONF_KEY: dict[Component, str] = {
    "fe": "fe.conf",
    "be": "be.conf",
    "cn": "be.conf",
    "broker": "apache_hdfs_broker.conf",
}
CONFIG_MOUNT_PATH = "/etc/doris"

# (conf key, Kubernetes port name, default); order is the order of the Service ports.
_FE_PORTS = (
    ("http_port", "http-port", 8030),
    ("rpc_port", "rpc-port", 9020),
    ("query_port", "query-port", 9030),
    ("edit_log_port", "edit-log-port", 9010),
)
_BE_PORTS = (
    ("be_port", "be-port", 9060),
    ("webserver_port", "webserver-port", 8040),
    ("heartbeat_service_port", "heartbeat-port", 9050),
    ("brpc_port", "brpc-port", 8060),
)
PORTS: dict[Component, tuple[tuple[str, str, int], ...]] = {
    "fe": _FE_PORTS,
    "be": _BE_PORTS,
    "cn": _BE_PORTS,
    "broker": (("broker_ipc_port", "broker-ipc-port", 8000),),
}
ARROW_FLIGHT = ("arrow_flight_sql_port", "arrow-flight")
# The port of the headless Service, probed for liveness.
LIVENESS_PORT_KEY: dict[Component, str] = {
    "fe": "query_port",
    "be": "heartbeat_service_port",
    "cn": "heartbeat_service_port",
    "broker": "broker_ipc_port",
}
HEALTH_PORT_KEY: dict[Component, str] = {"fe": "http_port", "be": "webserver_port", "cn": "webserver_port"}
DEFAULT_GRACE_SECONDS: dict[Component, int | None] = {"fe": 330, "be": 200, "cn": 200, "broker": None}


def parse_properties(text: str, doris_home: str) -> dict[str, str]:
    """Parse a Doris conf file: ``key = value`` lines, ``#`` comments, keys lower-cased, optional quotes
    around values stripped, ``${DORIS_HOME}`` / ``$DORIS_HOME`` expanded."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        match = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if match is None:
            continue
        key, value = match.group(1).lower(), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value.replace("${DORIS_HOME}", doris_home).replace("$DORIS_HOME", doris_home)
    return values


@dataclass(frozen=True)
class Port:
    key: str
    name: str
    number: int


@dataclass(frozen=True)
class ComponentConfig:
    comp: Component
    values: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    """The ConfigMap the conf file came from, if any."""

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def flag(self, key: str) -> bool:
        return (self.values.get(key) or "").strip().lower() == "true"

    def port(self, key: str) -> int:
        for conf_key, _, default in PORTS[self.comp]:
            if conf_key == key:
                raw = self.values.get(key)
                if raw is None and key == "be_port":
                    raw = self.values.get("thrift_port")
                return int(raw) if raw and raw.strip().isdigit() else default
        raise KeyError(key)

    def ports(self) -> list[Port]:
        out = [Port(key, name, self.port(key)) for key, name, _ in PORTS[self.comp]]
        arrow = self.values.get(ARROW_FLIGHT[0], "-1").strip()
        if self.comp != "broker" and arrow.isdigit() and int(arrow) > 0:
            out.append(Port(ARROW_FLIGHT[0], ARROW_FLIGHT[1], int(arrow)))
        return out

    @property
    def liveness_port(self) -> int:
        return self.port(LIVENESS_PORT_KEY[self.comp])

    @property
    def grace_seconds(self) -> int | None:
        raw = (self.values.get("grace_shutdown_wait_seconds") or "").strip()
        return int(raw) if raw.isdigit() else DEFAULT_GRACE_SECONDS[self.comp]

    def data_paths(self) -> list[str]:
        """meta_dir (FE) or the storage_root_path entries (BE, CN) without their medium suffixes."""
        home = DORIS_HOME[self.comp]
        if self.comp == "fe":
            return [self.values.get("meta_dir") or f"{home}/doris-meta"]
        raw = self.values.get("storage_root_path") or f"{home}/storage"
        paths: list[str] = []
        for entry in raw.split(";"):
            path = entry.split(",")[0].strip()
            path = re.sub(r"\.(hdd|ssd)$", "", path, flags=re.IGNORECASE)
            if path and path not in paths:
                paths.append(path)
        return paths


def config_map_names(spec: BaseSpec) -> list[str]:
    info = spec.config_map_info
    if info is None:
        return []
    names = [info.config_map_name] if info.config_map_name else []
    names += [m.config_map_name for m in info.config_maps or [] if m.config_map_name]
    return names


def resolve(comp: Component, spec: BaseSpec | None, config_maps: ConfigMaps) -> ComponentConfig:
    """The component's conf file from the first referenced ConfigMap that holds it; defaults otherwise."""
    if spec is None:
        return ComponentConfig(comp)
    key = CONF_KEY[comp]
    for name in config_map_names(spec):
        data = config_maps.get(name)
        if data is not None and key in data:
            return ComponentConfig(comp, parse_properties(data[key], DORIS_HOME[comp]), name)
    return ComponentConfig(comp)
