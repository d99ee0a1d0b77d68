"""Regenerate what is derived in deploy/: the chart's CRDs (copied from config/crd), its admission objects
(templates/admission.yaml, from doris_operator.webhook.configs) and the plain manifests (``helm template``
of the chart, cluster-wide, namespace ``doris-operator``).

    .venv/bin/python deploy/generate.py            # all
    .venv/bin/python deploy/generate.py crds       # only the CRDs
    .venv/bin/python deploy/generate.py admission  # only templates/admission.yaml
    .venv/bin/python deploy/generate.py --check    # exit 1 when something is stale (CI)

tests/test_chart.py fails when either is stale.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "doris-operator"
CRD_SOURCE = ROOT / "config" / "crd"
CRD_DEST = CHART / "crds"
MANIFESTS = ROOT / "deploy" / "manifests" / "doris-operator.yaml"
ADMISSION = CHART / "templates" / "admission.yaml"
RELEASE = "doris-operator"
NAMESPACE = "doris-operator"

sys.path.insert(0, str(ROOT / "hack"))
sys.path.insert(0, str(ROOT / "src"))
from doris_operator.webhook import configs  # noqa: E402
from doris_operator.webhook.admission import REGISTRY  # noqa: E402
from doris_operator.webhook.eviction import WEBHOOK_NAME as EVICTION_WEBHOOK  # noqa: E402
from helm import ensure_helm  # noqa: E402

# Values the chart fills in: placeholders in what configs builds, then Helm expressions.
_INLINE = {
    "@@CONFIG@@": '{{ include "doris-operator.webhookConfig" . }}',
    "@@POLICY@@": '{{ include "doris-operator.webhookPolicy" . }}',
    "@@OPERATOR_USER@@": '{{ include "doris-operator.operatorUser" . }}',
    "@@VALIDATION_FAILURE_POLICY@@": "{{ .Values.webhook.validationFailurePolicy }}",
    "@@MUTATION_FAILURE_POLICY@@": "{{ .Values.webhook.mutationFailurePolicy }}",
    "@@TIMEOUT@@": "{{ .Values.webhook.timeoutSeconds }}",
}
_BLOCKS = {  # a line `key: '@@X@@'` becomes the helper's output (which may be empty) at that indentation
    "@@LABELS@@": '{indent}labels:\n{indent}  {{{{- include "doris-operator.labels" . | nindent {inner} }}}}',
    "@@ANNOTATIONS@@": '{indent}{{{{- include "doris-operator.admissionAnnotations" . | nindent {outer} }}}}',
    "@@NAMESPACE_SELECTOR@@": (
        '{indent}{{{{- include "doris-operator.admissionNamespaceSelector" . | nindent {outer} }}}}'
    ),
    "@@MATCH_RESOURCES@@": (
        '{indent}{{{{- include "doris-operator.policyMatchResources" . | nindent {outer} }}}}'
    ),
}
_CLIENT = (
    '{indent}{{{{- include "doris-operator.webhookClientConfig" (dict "root" . "path" "{path}") '
    "| nindent {outer} }}}}"
)


def _placeholders() -> configs.ConfigOptions:
    return configs.ConfigOptions(
        name="@@CONFIG@@",
        policy_name="@@POLICY@@",
        operator_users=["@@OPERATOR_USER@@"],
        evictions=True,
    )


def admission_objects() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the operator's own `webhook` command applies, with placeholders for the chart's values."""
    opts = _placeholders()
    hooks = configs.webhook_configurations(opts, REGISTRY, None)
    for obj in hooks:
        obj["metadata"] = {"name": "@@CONFIG@@", "labels": "@@LABELS@@", "annotations": "@@ANNOTATIONS@@"}
        mutating = obj["kind"] == "MutatingWebhookConfiguration"
        for hook in obj["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = f"@@CLIENT:{path}@@"
            hook["namespaceSelector"] = "@@NAMESPACE_SELECTOR@@"
            if hook["name"] == EVICTION_WEBHOOK:
                continue  # fails open with its own timeout, whatever the values say (webhook/configs.py)
            hook["failurePolicy"] = (
                "@@MUTATION_FAILURE_POLICY@@" if mutating else "@@VALIDATION_FAILURE_POLICY@@"
            )
            hook["timeoutSeconds"] = "@@TIMEOUT@@"
    policy = configs.statefulset_policy(opts)
    for obj in policy:
        obj["metadata"] = {"name": "@@POLICY@@", "labels": "@@LABELS@@"}
    policy[1]["spec"]["matchResources"] = "@@MATCH_RESOURCES@@"
    return hooks, policy


def _to_template(objects: list[dict[str, Any]]) -> str:
    text = "---\n".join(yaml.safe_dump(o, sort_keys=False, width=1_000_000) for o in objects)
    out: list[str] = []
    for line in text.splitlines():
        match = re.fullmatch(r"(\s*)[A-Za-z]+: '(@@[A-Z_]+(?::[^@]*)?@@)'", line)
        if match and (match.group(2) in _BLOCKS or match.group(2).startswith("@@CLIENT:")):
            indent, marker = match.groups()
            fields = {"indent": indent, "outer": len(indent), "inner": len(indent) + 2}
            if marker.startswith("@@CLIENT:"):
                out.append(_CLIENT.format(path=marker[len("@@CLIENT:") : -2], **fields))
            else:
                out.append(_BLOCKS[marker].format(**fields))
            continue
        for marker, expression in _INLINE.items():
            line = line.replace(f"'{marker}'", expression).replace(marker, expression)
        out.append(line)
    return "\n".join(out) + "\n"


def _optional_evictions(template: str) -> str:
    """The eviction webhook's list item, only with ``webhook.evictions``."""
    lines = template.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip() == f"- name: {EVICTION_WEBHOOK}")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and len(lines[end]) - len(lines[end].lstrip()) > indent:
        end += 1
    out = [
        *lines[:start],
        "{{- if .Values.webhook.evictions }}",
        *lines[start:end],
        "{{- end }}",
        *lines[end:],
    ]
    return "\n".join(out) + "\n"


def admission_template() -> str:
    hooks, policy = admission_objects()
    return (
        "# The chart's admission objects, per release: helm uninstall removes them. Generated by\n"
        "# deploy/generate.py from doris_operator.webhook.configs (what `doris-operator webhook` applies);\n"
        "# do not edit. In self-signed mode the operator patches caBundle into these two configurations by\n"
        "# name (RBAC: get and patch with resourceNames); with cert-manager, cainjector does.\n"
        "{{- if .Values.webhook.enabled }}\n"
        + _optional_evictions(_to_template(hooks))
        + "{{- if .Values.webhook.statefulSetPolicy }}\n---\n"
        + _to_template(policy)
        + "{{- end }}\n{{- end }}\n"
    )


def write_admission() -> list[str]:
    text = admission_template()
    if ADMISSION.exists() and ADMISSION.read_text() == text:
        return []
    ADMISSION.write_text(text)
    return [str(ADMISSION.relative_to(ROOT))]


def expected_crds() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(CRD_SOURCE.glob("*.yaml"))}


def render_manifests(helm: Path | None = None) -> str:
    helm = helm or ensure_helm()
    rendered = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    header = (
        "# doris-operator: CRDs, RBAC (cluster-wide), Deployment and Services in namespace "
        f"{NAMESPACE}.\n"
        "# Generated by `deploy/generate.py` (helm template of deploy/helm/doris-operator); do not edit.\n"
        "# kubectl apply --server-side -f deploy/manifests/doris-operator.yaml\n"
        "---\n"
        "apiVersion: v1\n"
        "kind: Namespace\n"
        "metadata:\n"
        f"  name: {NAMESPACE}\n"
        "  labels:\n"
        f"    pod-security.kubernetes.io/enforce: restricted\n"
    )
    return header + rendered


def sync_crds() -> list[str]:
    CRD_DEST.mkdir(parents=True, exist_ok=True)
    want = expected_crds()
    changed = []
    for old in CRD_DEST.glob("*.yaml"):
        if old.name not in want:
            old.unlink()
            changed.append(str(old.relative_to(ROOT)))
    for name, data in want.items():
        dest = CRD_DEST / name
        if not dest.exists() or dest.read_bytes() != data:
            dest.write_bytes(data)
            changed.append(str(dest.relative_to(ROOT)))
    return changed


def write_manifests() -> list[str]:
    text = render_manifests()
    if MANIFESTS.exists() and MANIFESTS.read_text() == text:
        return []
    MANIFESTS.parent.mkdir(parents=True, exist_ok=True)
    MANIFESTS.write_text(text)
    return [str(MANIFESTS.relative_to(ROOT))]


def stale() -> list[str]:
    out = []
    have = {p.name: p.read_bytes() for p in sorted(CRD_DEST.glob("*.yaml"))}
    if have != expected_crds():
        out.append(str(CRD_DEST.relative_to(ROOT)))
    if not ADMISSION.exists() or ADMISSION.read_text() != admission_template():
        out.append(str(ADMISSION.relative_to(ROOT)))
    if not MANIFESTS.exists() or MANIFESTS.read_text() != render_manifests():
        out.append(str(MANIFESTS.relative_to(ROOT)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", nargs="?", choices=("all", "crds", "admission", "manifests"), default="all")
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for path in bad:
            print(f"stale: {path} (run deploy/generate.py)", file=sys.stderr)
        return 1 if bad else 0
    changed = []
    if args.what in ("all", "crds"):
        changed += sync_crds()
    if args.what in ("all", "admission"):
        changed += write_admission()
    if args.what in ("all", "manifests"):
        changed += write_manifests()
    for path in changed:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
