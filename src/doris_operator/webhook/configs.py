"""The admission configuration objects: the Validating/MutatingWebhookConfigurations that send Doris
resources to the webhook, and the ValidatingAdmissionPolicy that keeps people (and ``kubectl scale``)
off the StatefulSets the operator manages.  Builders are pure; :func:`apply` and :func:`uninstall` talk
to the apiserver."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from lightkube import ApiError, AsyncClient
from lightkube.resources.admissionregistration_v1 import (
    MutatingWebhookConfiguration,
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
)
from lightkube.types import PatchType

from ..builders import names
from .admission import AdmissionKind, Registry

log = logging.getLogger(__name__)

Obj = dict[str, Any]
FailurePolicy = Literal["Fail", "Ignore"]
FIELD_MANAGER = "doris-operator-webhook"
CERT_MANAGER_INJECT = "cert-manager.io/inject-ca-from"

SYSTEM_USERS = (
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:serviceaccount:kube-system:statefulset-controller",
)
"""Never denied by the StatefulSet policy.  None of them changes replicas or the pod template (the
garbage collector edits ownerReferences, the StatefulSet controller writes status), so this only
guarantees that a future change in their behaviour can't wedge garbage collection or rollouts."""

SPEC_CHANGED = (
    "request.operation == 'CREATE' || !has(object.spec) || !has(oldObject.spec) || "
    "object.spec != oldObject.spec"
)
"""Webhook matchCondition, evaluated by the apiserver: updates that leave ``spec`` alone (labels,
annotations, finalizers, deletion) never reach the webhook, so they never depend on it being up."""


@dataclass
class ConfigOptions:
    """What the configuration objects look like; a subset of :class:`~.server.WebhookOptions`."""

    name: str = "doris-operator"
    """Name of the ValidatingWebhookConfiguration and of the MutatingWebhookConfiguration."""
    namespace: str = "default"
    service_name: str = "doris-operator-webhook"
    service_port: int = 443
    url: str | None = None
    """Base URL (``https://127.0.0.1:9443``) instead of a Service: local runs and tests."""
    validation_failure_policy: FailurePolicy = "Fail"
    mutation_failure_policy: FailurePolicy = "Ignore"
    timeout_seconds: int = 5
    cert_manager_certificate: str | None = None
    """cert-manager mode: the Certificate whose CA cert-manager's cainjector puts into caBundle."""
    policy_name: str = "doris-operator-managed-statefulsets"
    operator_users: list[str] = field(default_factory=list)
    """Usernames that may change managed StatefulSets: the operator's ServiceAccount
    (``system:serviceaccount:<namespace>:<name>``)."""
    exempt_users: list[str] = field(default_factory=lambda: list(SYSTEM_USERS))
    evictions: bool = False
    """Add the drain-safe eviction webhook (``pods/eviction``; always failurePolicy Ignore)."""


EVICTION_TIMEOUT_SECONDS = 10


def eviction_webhook(opts: ConfigOptions, ca_bundle: bytes | None) -> Obj:
    """``pods/eviction`` CREATE for every namespace: the webhook itself lets through what is not a
    DorisCluster's FE/BE/CN pod (an Eviction carries no pod labels to select on).  It fails open
    (Ignore): a drain never waits on a webhook that is down."""
    from .eviction import PATH, WEBHOOK_NAME

    return {
        "name": WEBHOOK_NAME,
        "clientConfig": _client_config(opts, PATH, ca_bundle),
        "failurePolicy": "Ignore",
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods/eviction"],
                "operations": ["CREATE"],
                "scope": "Namespaced",
            }
        ],
        "sideEffects": "NoneOnDryRun",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": EVICTION_TIMEOUT_SECONDS,
        "matchPolicy": "Equivalent",
    }


def _client_config(opts: ConfigOptions, path: str, ca_bundle: bytes | None) -> Obj:
    config: Obj
    if opts.url:
        config = {"url": opts.url.rstrip("/") + path}
    else:
        config = {
            "service": {
                "namespace": opts.namespace,
                "name": opts.service_name,
                "port": opts.service_port,
                "path": path,
            }
        }
    if ca_bundle:
        config["caBundle"] = base64.b64encode(ca_bundle).decode()
    return config


def _rules(kind: AdmissionKind) -> list[Obj]:
    return [
        {
            "apiGroups": [kind.group],
            "apiVersions": [kind.version],
            "resources": [kind.plural],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced" if kind.namespaced else "Cluster",
        }
    ]


def _metadata(opts: ConfigOptions) -> Obj:
    meta: Obj = {"name": opts.name, "labels": {"app.kubernetes.io/part-of": "doris-operator"}}
    if opts.cert_manager_certificate:
        meta["annotations"] = {CERT_MANAGER_INJECT: f"{opts.namespace}/{opts.cert_manager_certificate}"}
    return meta


def webhook_configurations(opts: ConfigOptions, registry: Registry, ca_bundle: bytes | None) -> list[Obj]:
    """ValidatingWebhookConfiguration and MutatingWebhookConfiguration, one webhook per registered kind.
    ``ca_bundle`` None leaves caBundle to cert-manager's cainjector."""
    validating: list[Obj] = []
    mutating: list[Obj] = []
    for kind in registry.kinds():
        common: Obj = {
            "rules": _rules(kind),
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": opts.timeout_seconds,
            "matchPolicy": "Equivalent",
            "matchConditions": [{"name": "spec-changed", "expression": SPEC_CHANGED}],
        }
        if kind.validate is not None:
            validating.append(
                {
                    "name": kind.webhook_name("validate"),
                    "clientConfig": _client_config(opts, kind.path("validate"), ca_bundle),
                    "failurePolicy": opts.validation_failure_policy,
                    **common,
                }
            )
        if kind.default is not None:
            mutating.append(
                {
                    "name": kind.webhook_name("mutate"),
                    "clientConfig": _client_config(opts, kind.path("mutate"), ca_bundle),
                    "failurePolicy": opts.mutation_failure_policy,
                    "reinvocationPolicy": "Never",
                    **common,
                }
            )
    if opts.evictions:
        validating.append(eviction_webhook(opts, ca_bundle))
    out: list[Obj] = []
    api = "admissionregistration.k8s.io/v1"
    if validating:
        out.append(
            {"apiVersion": api, "kind": "ValidatingWebhookConfiguration", "metadata": _metadata(opts),
             "webhooks": validating}
        )  # fmt: skip
    if mutating:
        out.append(
            {"apiVersion": api, "kind": "MutatingWebhookConfiguration", "metadata": _metadata(opts),
             "webhooks": mutating}
        )  # fmt: skip
    return out


def _cel_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def statefulset_policy(opts: ConfigOptions) -> list[Obj]:
    """A ValidatingAdmissionPolicy (CEL in the apiserver: no server, no certificate) and its binding:
    nobody but the operator changes ``spec.replicas`` or ``spec.template`` of a StatefulSet the operator
    manages, directly or through the ``scale`` subresource, or removes its managed-by label.

    The scale subresource's object is an ``autoscaling/v1`` Scale with no labels (so an objectSelector
    never matches it); it is recognised by its ``status.selector``, the StatefulSet's pod selector,
    which carries the operator's ``app.doris.ownerreference/name`` label.  The StatefulSet itself is
    recognised by its managed-by label, before or after the change (removing the label in the same
    update does not escape)."""
    scale = "request.?subResource.orValue('') == 'scale'"
    managed_by = f"metadata.?labels[?'{names.LABEL_MANAGED_BY}'].orValue('') == '{names.MANAGED_BY}'"
    exempt = sorted(set(opts.operator_users) | set(opts.exempt_users))
    policy: Obj = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": opts.policy_name, "labels": {"app.kubernetes.io/part-of": "doris-operator"}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["statefulsets", "statefulsets/scale"],
                    }
                ],
                "matchPolicy": "Equivalent",
            },
            "matchConditions": [
                {
                    "name": "managed-by-doris-operator",
                    "expression": f"{scale} ? object.?status.?selector.orValue('').contains("
                    f"'{names.LABEL_OWNER}=') : (object.{managed_by} || oldObject.{managed_by})",
                },
                {
                    "name": "not-the-operator",
                    "expression": f"!(request.userInfo.username in {_cel_list(exempt)})",
                },
            ],
            "variables": [
                {"name": "name", "expression": "object.metadata.name"},
                {
                    "name": "cluster",
                    "expression": f"object.metadata.?labels[?'{names.LABEL_OWNER}'].orValue("
                    "variables.name.substring(0, variables.name.lastIndexOf('-')))",
                },
                {
                    "name": "component",
                    "expression": f"object.metadata.?labels[?'{names.LABEL_COMPONENT}'].orValue("
                    "variables.name.substring(variables.name.lastIndexOf('-') + 1))",
                },
                {
                    "name": "edit",
                    "expression": "'edit the DorisCluster instead: kubectl -n ' + object.metadata.namespace "
                    "+ ' edit doriscluster ' + variables.cluster",
                },
                {
                    "name": "managed",
                    "expression": "'StatefulSet ' + variables.name + ' is managed by doris-operator for "
                    "DorisCluster ' + variables.cluster",
                },
            ],
            "validations": [
                {
                    "expression": "object.?spec.?replicas.orValue(0) == oldObject.?spec.?replicas.orValue(0)",
                    "messageExpression": "variables.managed + ': its replicas come from spec.' + "
                    "variables.component + 'Spec.replicas (the operator decommissions nodes before it scales "
                    "in); ' + variables.edit",
                    "reason": "Forbidden",
                },
                {
                    "expression": f"{scale} || object.spec.template == oldObject.spec.template",
                    "messageExpression": "variables.managed + ': its pod template comes from spec.' + "
                    "variables.component + 'Spec; ' + variables.edit",
                    "reason": "Forbidden",
                },
                {
                    "expression": f"{scale} || !(oldObject.{managed_by}) || object.{managed_by}",
                    "messageExpression": "variables.managed + ': the label "
                    + names.LABEL_MANAGED_BY
                    + " stays (to take a StatefulSet over, delete the DorisCluster with --cascade=orphan)'",
                    "reason": "Forbidden",
                },
            ],
        },
    }
    binding: Obj = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": opts.policy_name, "labels": {"app.kubernetes.io/part-of": "doris-operator"}},
        "spec": {"policyName": opts.policy_name, "validationActions": ["Deny"]},
    }
    return [policy, binding]


RESOURCES: dict[str, Any] = {
    "ValidatingWebhookConfiguration": ValidatingWebhookConfiguration,
    "MutatingWebhookConfiguration": MutatingWebhookConfiguration,
    "ValidatingAdmissionPolicy": ValidatingAdmissionPolicy,
    "ValidatingAdmissionPolicyBinding": ValidatingAdmissionPolicyBinding,
}


async def apply(client: AsyncClient, objects: list[Obj]) -> None:
    """Server-side apply, field manager ``doris-operator-webhook``.  In cert-manager mode the objects
    carry no caBundle, so the one cainjector owns is left alone."""
    for obj in objects:
        await client.patch(
            RESOURCES[obj["kind"]],
            obj["metadata"]["name"],
            obj,
            patch_type=PatchType.APPLY,
            field_manager=FIELD_MANAGER,
            force=True,
        )


async def uninstall(client: AsyncClient, opts: ConfigOptions) -> None:
    """Delete the webhook configurations and the StatefulSet policy (absent ones are fine)."""
    for kind, name in (
        ("ValidatingWebhookConfiguration", opts.name),
        ("MutatingWebhookConfiguration", opts.name),
        ("ValidatingAdmissionPolicyBinding", opts.policy_name),
        ("ValidatingAdmissionPolicy", opts.policy_name),
    ):
        try:
            await client.delete(RESOURCES[kind], name)
        except ApiError as err:
            if err.status.code != 404:
                raise


async def patch_ca_bundle(
    client: AsyncClient, opts: ConfigOptions, registry: Registry, bundle: bytes
) -> None:
    """Set caBundle in every webhook of the named configurations, which the installer owns (a strategic
    merge patch: webhooks merge by name; nothing else is touched, nothing is created).  Only the webhooks
    the installed configuration has: a merge by name would add one it lacks (the chart's
    ``webhook.evictions: false`` leaves out the eviction webhook), half-made and refused."""
    encoded = base64.b64encode(bundle).decode()
    for obj in webhook_configurations(opts, registry, None):
        live = await client.get(RESOURCES[obj["kind"]], obj["metadata"]["name"])
        present = {h.name for h in live.webhooks or []}
        hooks = [
            {"name": hook["name"], "clientConfig": {"caBundle": encoded}}
            for hook in obj["webhooks"]
            if hook["name"] in present
        ]
        if not hooks:
            continue
        patch = {"webhooks": hooks}
        await client.patch(
            RESOURCES[obj["kind"]],
            obj["metadata"]["name"],
            patch,
            patch_type=PatchType.STRATEGIC,
            field_manager=FIELD_MANAGER,
        )
