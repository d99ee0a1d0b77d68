"""Pure functions from a DorisCluster to the Kubernetes objects that run it.  No I/O."""

from __future__ import annotations

from typing import Any

from ..api.doriscluster import DorisCluster
from . import config as _config
from .config import ConfigMaps
from .resources import (
    access_service,
    admin_user_secret,
    cn_autoscaler,
    disruption_budget,
    internal_service,
    statefulset,
)

Obj = dict[str, Any]


def credentials_secret_name(dc: DorisCluster) -> str | None:
    """The Secret mounted at /etc/basic_auth: authSecret, else the one made from adminUser."""
    if dc.spec.auth_secret:
        return dc.spec.auth_secret
    secret = admin_user_secret(dc)
    return secret["metadata"]["name"] if secret else None


def build(dc: DorisCluster, config_maps: ConfigMaps | None = None) -> list[Obj]:
    """Every object that runs ``dc``, given the data of the ConfigMaps it references (missing ones fall
    back to Doris's defaults).  Order: credentials, then per component (FE, BE, CN, Broker) the headless
    Service, the access Service, the PodDisruptionBudget and the StatefulSet (and CN's
    HorizontalPodAutoscaler)."""
    config_maps = config_maps or {}
    fe_config = _config.resolve("fe", dc.spec.fe_spec, config_maps)
    objects: list[Obj] = []
    secret = admin_user_secret(dc)
    if secret is not None:
        objects.append(secret)
    credentials = credentials_secret_name(dc)
    for comp, spec in dc.components():
        cfg = fe_config if comp == "fe" else _config.resolve(comp, spec, config_maps)
        objects.append(internal_service(dc, comp, cfg))
        if comp != "broker":
            objects.append(access_service(dc, comp, spec, cfg))
        objects.append(disruption_budget(dc, comp))
        objects.append(statefulset(dc, comp, spec, cfg, fe_config, credentials))
        if comp == "cn" and (hpa := cn_autoscaler(dc)) is not None:
            objects.append(hpa)
    return objects
