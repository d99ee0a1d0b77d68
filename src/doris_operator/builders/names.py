"""Object names and labels.  They match the official operator's, so StatefulSet selectors (immutable)
stay valid when a cluster moves over, and they must never change between our own versions."""

from __future__ import annotations

from ..api.doriscluster import Component

LABEL_OWNER = "app.doris.ownerreference/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_CLUSTER = "app.doris.cluster"
LABEL_SERVICE_ROLE = "app.doris.service/role"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "doris-operator"

ANNOTATION_DEBUG_KEYS = ("selectdb.com.doris/runmode", "apache.org.doris/runmode")
CONFIG_HASH = "doris.apache.org/config-hash"


def restarted_at(comp: Component) -> str:
    """The DorisCluster annotation asking for a rolling restart (the official operator's key for FE/BE)."""
    return f"apache.doris.{comp}/restartedAt"


def statefulset(cluster: str, comp: Component) -> str:
    return f"{cluster}-{comp}"


def access_service(cluster: str, comp: Component) -> str:
    return f"{cluster}-{comp}-service"


def internal_service(cluster: str, comp: Component) -> str:
    return f"{cluster}-{comp}-internal"


AUTOSCALER_COMPONENT = "autoscaler"
"""The component label of the CN HorizontalPodAutoscaler (the official operator's)."""


def cn_autoscaler(cluster: str) -> str:
    return f"{cluster}-cn-autoscaler"


def pdb(cluster: str, comp: Component) -> str:
    return f"{cluster}-{comp}"


def admin_secret(cluster: str) -> str:
    return f"{cluster}-admin-user"


def selector_labels(cluster: str, comp: Component) -> dict[str, str]:
    """Pod selector of the StatefulSet and its Services."""
    return {LABEL_OWNER: f"{cluster}-{comp}", LABEL_COMPONENT: comp}


def object_labels(cluster: str, comp: Component | None = None) -> dict[str, str]:
    """Labels of every object the operator owns (not pods); pruning selects on these."""
    labels = {LABEL_OWNER: cluster, LABEL_MANAGED_BY: MANAGED_BY}
    if comp is not None:
        labels[LABEL_COMPONENT] = comp
    return labels


def pod_labels(cluster: str, comp: Component, user: dict[str, str] | None) -> dict[str, str]:
    return {**(user or {}), **selector_labels(cluster, comp), LABEL_CLUSTER: cluster}


def pod_fqdn(cluster: str, comp: Component, ordinal: int, namespace: str) -> str:
    pod = f"{statefulset(cluster, comp)}-{ordinal}"
    return f"{pod}.{internal_service(cluster, comp)}.{namespace}.svc.cluster.local"
