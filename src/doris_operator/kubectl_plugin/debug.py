"""``kubectl doris debug on|off``: the images' debug mode for a crash-looping pod."""

from __future__ import annotations

import argparse
import sys

from ..builders import names
from .common import (
    DEBUG_ANNOTATION,
    Kube,
    PluginError,
    UsageError,
)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question}: pass --yes to confirm")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise PluginError("cancelled")


def cmd_debug(args: argparse.Namespace, kube: Kube) -> int:
    pod = kube.get("pod", args.pod)
    labels = pod["metadata"].get("labels") or {}
    if names.LABEL_CLUSTER not in labels:
        print(
            f"warning: pod {args.pod} has no {names.LABEL_CLUSTER} label: not a Doris pod?", file=sys.stderr
        )
    annotations = pod["metadata"].get("annotations") or {}
    if args.mode == "on":
        kube.patch("pod", args.pod, {"metadata": {"annotations": {DEBUG_ANNOTATION: "debug"}}})
        print(f"pod/{args.pod} annotated {DEBUG_ANNOTATION}=debug")
        comp = labels.get(names.LABEL_COMPONENT, "be")
        home = "fe" if comp == "fe" else ("apache_hdfs_broker" if comp == "broker" else "be")
        ports = "query_port and http_port" if comp == "fe" else "heartbeat_service_port and webserver_port"
        print(
            "The image's entrypoint reads it (through /etc/podinfo) when the container next starts, e.g. "
            "after the next crash of a crash-looping pod: it then runs a debug process on the probe port "
            "instead of Doris, so the pod shows Running and stays up. A running Doris is not affected; "
            "don't delete the pod to force it (the new pod would not carry the annotation)."
        )
        print(f"Get a shell: kubectl exec -it -n {kube.ns} {args.pod} -- bash")
        print(
            f"To start {comp} by hand inside, first change {ports} in /opt/apache-doris/{home}/conf "
            f"(so the Services don't route to it), then run /opt/apache-doris/{home}/bin/start_{comp}.sh."
        )
        print(f"Turn it off with: kubectl doris debug off {args.pod} -n {kube.ns}")
        return 0
    present = [k for k in names.ANNOTATION_DEBUG_KEYS if k in annotations]
    _confirm(f"remove the debug annotation and delete pod {args.pod} so it restarts normally", args.yes)
    if present:
        kube.patch("pod", args.pod, {"metadata": {"annotations": dict.fromkeys(present)}})
    kube.delete("pod", args.pod)
    print(f"pod/{args.pod}: debug annotation removed; pod deleted, its StatefulSet recreates it")
    return 0


# ---------------------------------------------------------------------------------------------
