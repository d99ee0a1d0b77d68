"""Where a cluster's FE answers SQL and as whom: the one place the operator (reconcile) and
``kubectl doris`` both ask.

* The FE endpoint: the ``doris.apache.org/fe-address`` annotation (``host:port``, for a client that
  can't resolve cluster DNS) where allowed, else the first ``feAddress.endpoints`` address of a
  cluster without ``feSpec`` (an FE outside this resource), else the FE access Service's DNS name.
* The credentials: the ``authSecret`` (kubernetes.io/basic-auth: username, default root, and
  password), else the deprecated ``adminUser``, else root without a password.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .api.doriscluster import DorisCluster
from .builders import names
from .builders.config import ComponentConfig
from .doris.client import Credentials, resolve_credentials

FE_ADDRESS_ANNOTATION = "doris.apache.org/fe-address"
"""``host:port`` of an FE's MySQL port, for an operator that can't resolve cluster DNS (local runs); the
operator honours it only with ``run --allow-fe-address-annotation``, ``kubectl doris`` always."""
DEFAULT_QUERY_PORT = 9030


@dataclass(frozen=True)
class FeEndpoint:
    host: str
    port: int
    direct: bool
    """Reachable as given (the annotation or an external FE); otherwise an in-cluster DNS name."""


def fe_endpoint_at(
    dc: DorisCluster, query_port: int = DEFAULT_QUERY_PORT, allow_annotation: bool = False
) -> FeEndpoint:
    """The FE endpoint, with ``query_port`` the FE's query_port (from its conf file, or the status).
    The Service name carries no cluster domain (``<svc>.<ns>.svc`` resolves through the pod's DNS
    search path in any domain).  A malformed annotation is a ValueError naming it."""
    override = (dc.metadata.annotations or {}).get(FE_ADDRESS_ANNOTATION) if allow_annotation else None
    if override:
        host, _, port = override.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"annotation {FE_ADDRESS_ANNOTATION} must be host:port, got {override!r}")
        return FeEndpoint(host.strip("[]"), int(port), True)
    for _, spec in dc.components():
        endpoints = spec.fe_address.endpoints if spec.fe_address else None
        if dc.spec.fe_spec is None and endpoints is not None and endpoints.address:
            return FeEndpoint(endpoints.address[0], endpoints.port or query_port, True)
    service = f"{names.access_service(dc.name, 'fe')}.{dc.namespace}.svc"
    return FeEndpoint(service, query_port, False)


def fe_endpoint(
    dc: DorisCluster, fe_config: ComponentConfig, allow_annotation: bool = False
) -> tuple[str, int]:
    endpoint = fe_endpoint_at(dc, fe_config.port("query_port"), allow_annotation)
    return endpoint.host, endpoint.port


def credentials_from(dc: DorisCluster, secret_data: Mapping[str, str] | None) -> Credentials:
    """Credentials from the authSecret's data (base64, as the API returns it; None when there is no
    authSecret or it can't be read)."""
    decoded = {k: base64.b64decode(v) for k, v in secret_data.items()} if secret_data else None
    admin = dc.spec.admin_user
    return resolve_credentials(decoded, (admin.name, admin.password) if admin and admin.name else None)


async def credentials(
    dc: DorisCluster, secret_data: Callable[[str], Awaitable[dict[str, str] | None]]
) -> Credentials:
    data = await secret_data(dc.spec.auth_secret) if dc.spec.auth_secret else None
    return credentials_from(dc, data)


def credentials_refused(dc: DorisCluster, forget: Callable[[str, str], None]) -> Callable[[], None] | None:
    """What a login the FE denied calls: ``forget(name, namespace)`` of the authSecret, so the next read
    of it gets a rotated password (``Kube.secret_refused``); None when there is no authSecret."""
    secret = dc.spec.auth_secret
    return None if not secret else lambda: forget(secret, dc.namespace)
