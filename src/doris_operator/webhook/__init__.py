"""doris-admission-webhook: validation and defaulting of Doris resources over TLS, with a certificate the
operator rotates (or cert-manager's), and a ValidatingAdmissionPolicy guarding managed StatefulSets.

Public API::

    from doris_operator.webhook import WebhookOptions, serve
    await serve(WebhookOptions(namespace="doris", operator_users=[...]), client)

See docs/webhook.md.
"""

from .admission import REGISTRY, AdmissionKind, Registry, Request, Verdict
from .certs import KeyPair, RotationPolicy
from .configs import ConfigOptions, statefulset_policy, uninstall, webhook_configurations
from .server import WebhookOptions, WebhookServer, run, serve

__all__ = [
    "REGISTRY",
    "AdmissionKind",
    "ConfigOptions",
    "KeyPair",
    "Registry",
    "Request",
    "RotationPolicy",
    "Verdict",
    "WebhookOptions",
    "WebhookServer",
    "run",
    "serve",
    "statefulset_policy",
    "uninstall",
    "webhook_configurations",
]
