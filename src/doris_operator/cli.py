"""``doris-operator``: render what the operator would create, print the CRDs, run the operator."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import yaml

from .api.doriscluster import API_VERSION, KIND
from .api.validation import InvalidResource, parse_cluster
from .builders import build
from .builders.config import config_map_names
from .builders.config import resolve as resolve_config


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump(objects: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        doc = objects[0] if len(objects) == 1 else {"apiVersion": "v1", "kind": "List", "items": objects}
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        out.write(yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=110))


def _documents(path: str) -> list[Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    docs: list[Any] = []
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict) and doc.get("kind") == "List":
            docs.extend(doc.get("items") or [])
        elif doc is not None:
            docs.append(doc)
    return docs


def _redact(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("kind") == "Secret":
        obj = dict(obj)
        obj["data"] = dict.fromkeys(obj.get("data", {}), "<redacted: use --show-secrets>")
    return obj


def render(path: str, fmt: str, show_secrets: bool, out: TextIO, err: TextIO) -> int:
    try:
        docs = _documents(path)
    except OSError as exc:
        err.write(f"{path}: {exc.strerror or exc}\n")
        return 1
    except yaml.YAMLError as exc:
        err.write(f"{path}: not valid YAML: {exc}\n".replace("\n\n", "\n"))
        return 1
    config_maps = {
        (d.get("metadata") or {}).get("name", ""): d.get("data") or {}
        for d in docs
        if isinstance(d, dict) and d.get("kind") == "ConfigMap"
    }
    objects: list[dict[str, Any]] = []
    failed = False
    clusters = 0
    for index, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            continue
        clusters += 1
        label = f"{path}: document {index}"
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        if name:
            label += f" ({KIND} {name})"
        if doc.get("apiVersion") != API_VERSION:
            err.write(f"{label}: apiVersion: must be {API_VERSION}, got {doc.get('apiVersion')!r}\n")
            failed = True
            continue
        try:
            cluster = parse_cluster(doc)
        except InvalidResource as exc:
            for problem in exc.problems:
                err.write(f"{label}: {problem}\n")
            failed = True
            continue
        for comp, spec in cluster.components():
            missing = [cm for cm in config_map_names(spec) if cm not in config_maps]
            if missing and resolve_config(comp, spec, config_maps).source is None:
                err.write(
                    f"{label}: note: spec.{comp}Spec.configMapInfo names ConfigMap {missing[0]!r}, which is "
                    f"not in {path}; ports and paths use Doris defaults\n"
                )
        objects.extend(build(cluster, config_maps))
    if clusters == 0:
        err.write(f"{path}: no {KIND} ({API_VERSION}) found\n")
        return 1
    if failed:
        return 1
    dump(objects if show_secrets else [_redact(o) for o in objects], fmt, out)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="doris-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_render = sub.add_parser(
        "render", help="print every object the operator would create for the DorisClusters in a file"
    )
    p_render.add_argument(
        "-f", "--filename", required=True, help="YAML file ('-' for stdin); ConfigMaps in it are read"
    )
    p_render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p_render.add_argument(
        "--show-secrets", action="store_true", help="print Secret data instead of redacting it"
    )
    p_run = sub.add_parser("run", help="run the controller manager against the cluster of KUBECONFIG")
    p_run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable); default all",
    )
    p_run.add_argument("--workers", type=int, default=4, help="clusters reconciled in parallel")
    p_run.add_argument("--resync", type=float, default=60.0, help="seconds between resyncs of every cluster")
    p_run.add_argument(
        "--autoscaler-interval",
        type=float,
        default=15.0,
        help="seconds between evaluations of each DorisClusterAutoscaler (default 15, as the HPA controller)",
    )
    p_run.add_argument("--metrics-port", type=int, default=8080, help="/metrics, /healthz and /readyz")
    p_run.add_argument("--metrics-host", default="0.0.0.0")
    p_run.add_argument("--leader-elect", action="store_true", help="run as one of several replicas")
    p_run.add_argument("--lease-namespace", default="", help="default: $POD_NAMESPACE or 'default'")
    p_run.add_argument("--lease-name", default="doris-operator")
    p_run.add_argument("--identity", default="", help="this replica's name in the Lease (default host-pid)")
    p_run.add_argument("--lease-duration", type=float, default=15.0, help="seconds a standby waits")
    p_run.add_argument(
        "--renew-deadline", type=float, default=10.0, help="seconds the leader may fail to renew (< duration)"
    )
    p_run.add_argument("--retry-period", type=float, default=2.0, help="seconds between lease attempts")
    p_run.add_argument(
        "--allow-fe-address-annotation",
        action="store_true",
        help="honour the doris.apache.org/fe-address annotation (local runs, where cluster DNS doesn't "
        "resolve; off by default: anyone who may edit a DorisCluster could point the operator at a server "
        "of their choice)",
    )
    _pod_security_arg(p_run)
    p_run.add_argument(
        "--webhook", action="store_true", help="also serve the admission webhook (options: --webhook-*)"
    )
    _webhook_args(p_run, prefix="webhook-")
    _webhook_parser(sub)
    p_crds = sub.add_parser("crds", help="print the CustomResourceDefinitions")
    p_crds.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    return parser


def _duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``90d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (90s, 15m, 12h, 90d)") from None


def _pod_security_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-privileged-pod-templates",
        action="store_true",
        help="let spec.*.podTemplate overlays add privileged containers, host namespaces or hostPath "
        "volumes (refused by default)",
    )


def _webhook_parser(sub: Any) -> None:
    p = sub.add_parser(
        "webhook",
        help="serve the admission webhook; install its configurations and the StatefulSet policy",
    )
    _webhook_args(p)
    _pod_security_arg(p)
    p.add_argument(
        "--allow-fe-address-annotation",
        action="store_true",
        help="the eviction webhook honours the doris.apache.org/fe-address annotation (local runs only)",
    )
    p.add_argument(
        "--uninstall-on-exit",
        action="store_true",
        help="delete the configurations and the policy on exit (local runs only)",
    )


def _webhook_args(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The webhook's options, for `webhook` and (prefixed with `webhook-`) for `run`."""

    def arg(name: str, **kwargs: Any) -> None:
        parser.add_argument(f"--{prefix}{name}", dest=f"{prefix}{name}".replace("-", "_"), **kwargs)

    arg("host", default="0.0.0.0")
    arg("port", type=int, default=9443)
    arg(
        "namespace",
        default="",
        help="of the certificate Secret and the Service (default: $POD_NAMESPACE or 'default')",
    )
    arg("service-name", default="doris-operator-webhook", help="Service in clientConfig")
    arg("service-port", type=int, default=443)
    arg(
        "url",
        default=None,
        help="base URL in clientConfig instead of a Service, e.g. https://127.0.0.1:9443 (local runs)",
    )
    arg(
        "cert-dir",
        type=Path,
        default=None,
        help="cert-manager mode: read tls.crt/tls.key "
        "from here and reload them on change; caBundle comes from cert-manager's cainjector",
    )
    arg(
        "cert-manager-certificate",
        default="doris-operator-webhook",
        help="cert-manager mode: the Certificate named in cert-manager.io/inject-ca-from",
    )
    arg(
        "secret-name",
        default="doris-operator-webhook-cert",
        help="self-signed mode: the Secret holding the CA bundle and serving certificate",
    )
    arg("cert-validity", type=_duration, default=90 * 86400.0, help="e.g. 90d; renewed with a third left")
    arg(
        "ca-propagation",
        type=_duration,
        default=30.0,
        help="how long a new CA is published before its certificate is served",
    )
    arg("check-interval", type=_duration, default=None)
    arg("config-name", default="doris-operator", help="name of the Validating/MutatingWebhookConfiguration")
    arg("policy-name", default="doris-operator-managed-statefulsets")
    arg("validation-failure-policy", choices=("Fail", "Ignore"), default="Fail")
    arg("mutation-failure-policy", choices=("Fail", "Ignore"), default="Ignore")
    arg("timeout-seconds", type=int, default=5)
    arg(
        "operator-user",
        action="append",
        default=[],
        help="may change managed StatefulSets (repeatable; default: this process's ServiceAccount)",
    )
    arg(
        "exempt-user",
        action="append",
        default=None,
        help="replaces the default system users exempt from the StatefulSet policy",
    )
    arg(
        "no-install",
        action="store_true",
        help="cert-manager mode: leave the configurations to the installer",
    )
    arg("no-policy", action="store_true", help="don't apply the StatefulSet policy")
    arg(
        "ca-bundle-only",
        action="store_true",
        help="self-signed mode with configurations the installer owns (the Helm chart): only patch "
        "caBundle into the named configurations, create nothing",
    )
    arg(
        "no-evictions",
        action="store_true",
        help="don't serve or register the drain-safe eviction webhook (pods/eviction)",
    )


def _webhook_options(args: argparse.Namespace, prefix: str = "") -> Any:
    import datetime as dt

    from .webhook.configs import SYSTEM_USERS
    from .webhook.server import WebhookOptions

    def v(name: str) -> Any:
        return getattr(args, prefix + name)

    options = WebhookOptions(
        host=v("host"),
        port=v("port"),
        service_name=v("service_name"),
        service_port=v("service_port"),
        url=v("url"),
        secret_name=v("secret_name"),
        cert_dir=v("cert_dir"),
        cert_manager_certificate=v("cert_manager_certificate"),
        cert_validity=dt.timedelta(seconds=v("cert_validity")),
        ca_propagation=dt.timedelta(seconds=v("ca_propagation")),
        check_interval=v("check_interval"),
        install=not v("no_install") and not v("ca_bundle_only"),
        ca_bundle_only=v("ca_bundle_only"),
        install_policy=not v("no_policy"),
        evictions=not v("no_evictions"),
        allow_fe_address_annotation=bool(getattr(args, "allow_fe_address_annotation", False)),
        config_name=v("config_name"),
        policy_name=v("policy_name"),
        validation_failure_policy=v("validation_failure_policy"),
        mutation_failure_policy=v("mutation_failure_policy"),
        timeout_seconds=v("timeout_seconds"),
        operator_users=v("operator_user"),
        exempt_users=list(SYSTEM_USERS) if v("exempt_user") is None else v("exempt_user"),
    )
    if v("namespace"):
        options.namespace = v("namespace")
    return options


def main(argv: Iterable[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    if getattr(args, "allow_privileged_pod_templates", False):
        from .api import podsecurity

        podsecurity.POLICY.allow_privileged = True
    if args.command == "render":
        return render(args.filename, args.output, args.show_secrets, sys.stdout, sys.stderr)
    if args.command == "run":
        from .operator import Options, run

        return run(
            Options(
                namespaces=args.namespace,
                workers=args.workers,
                resync=args.resync,
                autoscaler_interval=args.autoscaler_interval,
                metrics_host=args.metrics_host,
                metrics_port=args.metrics_port,
                leader_elect=args.leader_elect,
                lease_namespace=args.lease_namespace,
                lease_name=args.lease_name,
                identity=args.identity,
                lease_duration=args.lease_duration,
                renew_deadline=args.renew_deadline,
                retry_period=args.retry_period,
                webhook=_webhook_options(args, "webhook_") if args.webhook else None,
                allow_fe_address_annotation=args.allow_fe_address_annotation,
            )
        )
    if args.command == "webhook":
        from .webhook.server import run as run_webhook

        return run_webhook(_webhook_options(args), uninstall_on_exit=args.uninstall_on_exit)
    if args.command == "crds":
        from .api import crdgen  # not loaded by `run`

        dump(crdgen.all_crds(), args.output, sys.stdout)
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
