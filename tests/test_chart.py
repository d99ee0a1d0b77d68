"""The Helm chart (deploy/helm/doris-operator) and the manifests generated from it: lint, rendering
checks (RBAC without wildcards, security context, namespaced mode, webhook on/off), generated files up
to date, and an install on the local control plane with the operator running under exactly the chart's
RBAC (as the chart's ServiceAccount) through create, scale-out and delete of the sample."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import ROOT, Kubectl, Operator, eventually, free_port, names_of, sample, status
from identity import ServiceAccountIdentity

sys.path.insert(0, str(ROOT / "hack"))
sys.path.insert(0, str(ROOT / "deploy"))
import generate

from helm import ensure_helm

CHART = ROOT / "deploy" / "helm" / "doris-operator"
Doc = dict[str, Any]

# The verbs the code uses, per (apiGroup, resource): the chart must grant exactly these (README table).
OPERATOR_RULES = {
    ("doris.selectdb.com", "dorisclusters"): {"get", "list", "watch"},
    ("doris.selectdb.com", "dorisclusters/status"): {"patch"},
    ("apps", "statefulsets"): {"list", "watch", "create", "patch", "delete"},
    ("", "services"): {"list", "watch", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"list", "watch", "create", "patch", "delete"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch", "delete", "patch"},
    ("", "pods/status"): {"patch"},
    ("", "persistentvolumeclaims"): {"get", "delete"},
    ("", "configmaps"): {"get"},
    ("", "events"): {"create"},
}
NODE_RULES = {("", "nodes"): {"get", "list", "watch"}, ("", "persistentvolumes"): {"get"}}
"""Failover's cluster-scoped reads: a ClusterRole in both modes."""


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_helm()


def run_helm(
    helm: Path, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def render(helm: Path, *sets: str, namespace: str = "ops", release: str = "doris-operator") -> list[Doc]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(run_helm(helm, *args).stdout) if d]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {[d['metadata']['name'] for d in of_kind(docs, kind)]}"
    return found[0]


def container(docs: list[Doc]) -> Doc:
    c: Doc = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return c


def granted(role: Doc) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                out.setdefault((group, res), set()).update(rule["verbs"])
    return out


VARIANTS = {
    "default": (),
    "namespaced": ("watchNamespaces={a,b}",),
    "webhook": ("webhook.enabled=true",),
    "cert-manager": ("webhook.enabled=true", "webhook.certManager.enabled=true"),
    "everything": (
        "watchNamespaces={a,b}",
        "webhook.enabled=true",
        "metrics.serviceMonitor.enabled=true",
        "webhook.certManager.enabled=true",
    ),
}


def test_chart_crds_are_config_crd() -> None:
    assert sorted(p.name for p in (CHART / "crds").glob("*")) == sorted(generate.expected_crds())
    for name, data in generate.expected_crds().items():
        assert (CHART / "crds" / name).read_bytes() == data, f"run deploy/generate.py crds ({name} differs)"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_strict(helm: Path, variant: str) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", "ops"]
    for s in VARIANTS[variant]:
        args += ["--set", s]
    proc = run_helm(helm, *args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_wildcards_in_rbac(helm: Path, variant: str) -> None:
    docs = render(helm, *VARIANTS[variant])
    roles = of_kind(docs, "Role") + of_kind(docs, "ClusterRole")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule, role["metadata"]["name"]
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in v for v in rule.get(field, [])), (role["metadata"]["name"], rule)


def test_cluster_wide_rbac_is_exactly_what_the_code_uses(helm: Path) -> None:
    docs = render(helm)
    role = one(docs, "ClusterRole", "doris-operator")
    assert granted(role) == OPERATOR_RULES
    binding = one(docs, "ClusterRoleBinding", "doris-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "doris-operator", "namespace": "ops"}]
    lease = one(docs, "Role", "doris-operator-leader-election")
    assert lease["metadata"]["namespace"] == "ops"
    assert granted(lease) == {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
    assert [r.get("resourceNames") for r in lease["rules"] if "get" in r["verbs"]] == [["doris-operator"]]
    assert not of_kind(docs, "Role")[1:], "only the Lease Role in cluster-wide mode"
    assert "--leader-elect" in container(docs)["args"]
    assert not any(a.startswith("--namespace") for a in container(docs)["args"])


def test_namespaced_mode_renders_roles_per_namespace(helm: Path) -> None:
    docs = render(helm, "watchNamespaces={a,b}", "webhook.enabled=true")
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in of_kind(docs, "Role")}
    for ns in ("a", "b"):
        assert granted(roles[(ns, "doris-operator")]) == OPERATOR_RULES
        binding = one(
            [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == ns], "RoleBinding"
        )
        assert binding["roleRef"]["name"] == "doris-operator"
        assert binding["subjects"][0]["namespace"] == "ops"
    assert ("ops", "doris-operator-leader-election") in roles
    # The only ClusterRoles left are failover's and the webhook's; they hold cluster-scoped resources only.
    cluster_roles = of_kind(docs, "ClusterRole")
    assert [r["metadata"]["name"] for r in cluster_roles] == [
        "doris-operator-nodes",
        "doris-operator-webhook",
    ]
    assert granted(cluster_roles.pop(0)) == NODE_RULES
    assert {res for (_, res) in granted(cluster_roles[0])} == {
        "validatingwebhookconfigurations",
        "mutatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "selfsubjectreviews",
    }
    args = container(docs)["args"]
    assert "--namespace=a" in args and "--namespace=b" in args
    assert [r["metadata"]["name"] for r in of_kind(render(helm, "watchNamespaces={a,b}"), "ClusterRole")] == [
        "doris-operator-nodes"
    ]


def test_deployment_security_and_probes(helm: Path) -> None:
    docs = render(helm)
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "doris-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    assert c["resources"]["requests"] and c["resources"]["limits"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert c["image"] == "doris-operator:0.1.0" and c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"][:2] == ["run", "--metrics-port=8080"]
    assert "--lease-namespace=ops" in c["args"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    image = container(render(helm, "image.repository=r.example/doris-operator", "image.tag=1.2.3"))["image"]
    assert image == "r.example/doris-operator:1.2.3"


def test_single_replica_without_leader_election_only(helm: Path) -> None:
    proc = run_helm(helm, "template", "x", str(CHART), "--set", "leaderElection.enabled=false", check=False)
    assert proc.returncode != 0 and "leaderElection" in proc.stderr
    docs = render(helm, "leaderElection.enabled=false", "replicas=1")
    assert "--leader-elect" not in container(docs)["args"]
    assert not of_kind(docs, "Role")
    assert not of_kind(docs, "PodDisruptionBudget"), "a PDB of one replica would block node drains"


def test_webhook_off_and_on(helm: Path) -> None:
    off = render(helm)
    assert [s["metadata"]["name"] for s in of_kind(off, "Service")] == ["doris-operator-metrics"]
    assert not any(a.startswith("--webhook") for a in container(off)["args"])
    assert [r["metadata"]["name"] for r in of_kind(off, "ClusterRole")] == [
        "doris-operator",
        "doris-operator-nodes",
    ]

    on = render(helm, "webhook.enabled=true")
    svc = one(on, "Service", "doris-operator-webhook")
    assert svc["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    c = container(on)
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in c["ports"]
    for arg in (
        "--webhook",
        "--webhook-namespace=ops",
        "--webhook-service-name=doris-operator-webhook",
        "--webhook-config-name=doris-operator",
        "--webhook-policy-name=doris-operator-managed-statefulsets",
        "--webhook-secret-name=doris-operator-webhook-cert",
    ):
        assert arg in c["args"]
    wh = one(on, "ClusterRole", "doris-operator-webhook")
    assert granted(wh) == {
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): {"create", "get", "patch"},
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): {"create", "get", "patch"},
        ("admissionregistration.k8s.io", "validatingadmissionpolicies"): {"create", "patch"},
        ("admissionregistration.k8s.io", "validatingadmissionpolicybindings"): {"create", "patch"},
        ("authentication.k8s.io", "selfsubjectreviews"): {"create"},
    }
    secret_role = one(on, "Role", "doris-operator-webhook")
    assert granted(secret_role) == {("", "secrets"): {"create", "get", "update"}}
    assert [r["resourceNames"] for r in secret_role["rules"] if "resourceNames" in r] == [
        ["doris-operator-webhook-cert"]
    ]

    cm = render(helm, "webhook.enabled=true", "webhook.certManager.enabled=true")
    cert = one(cm, "Certificate")
    assert cert["spec"]["secretName"] == "doris-operator-webhook-cert"
    assert "doris-operator-webhook.ops.svc" in cert["spec"]["dnsNames"]
    assert one(cm, "Issuer")["spec"] == {"selfSigned": {}}
    assert "--webhook-cert-dir=/etc/webhook/tls" in container(cm)["args"]
    assert {"name": "webhook-tls", "mountPath": "/etc/webhook/tls", "readOnly": True} in container(cm)[
        "volumeMounts"
    ]
    assert not [r for r in of_kind(cm, "Role") if r["metadata"]["name"] == "doris-operator-webhook"]
    issuer = render(
        helm,
        "webhook.enabled=true",
        "webhook.certManager.enabled=true",
        "webhook.certManager.issuerRef.name=ca",
        "webhook.certManager.issuerRef.kind=ClusterIssuer",
    )
    assert not of_kind(issuer, "Issuer")
    assert one(issuer, "Certificate")["spec"]["issuerRef"] == {"name": "ca", "kind": "ClusterIssuer"}


def test_service_monitor_is_optional(helm: Path) -> None:
    assert not of_kind(render(helm), "ServiceMonitor")
    sm = one(render(helm, "metrics.serviceMonitor.enabled=true"), "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/service"] == "metrics"


def test_readme_documents_every_permission() -> None:
    readme = (CHART / "README.md").read_text()
    for (_, resource), verbs in OPERATOR_RULES.items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{resource}`")), None)
        assert row is not None, f"no README row for {resource}"
        assert {v.strip("` ") for v in row.split("|")[3].split(",")} == verbs, row


def test_generated_manifests_are_up_to_date(helm: Path) -> None:
    want = generate.render_manifests(helm)
    have = generate.MANIFESTS.read_text() if generate.MANIFESTS.exists() else ""
    assert have == want, "deploy/manifests/doris-operator.yaml is stale: run deploy/generate.py"
    docs = [d for d in yaml.safe_load_all(have) if d]
    assert one(docs, "Namespace")["metadata"]["name"] == "doris-operator"
    assert one(docs, "CustomResourceDefinition")["metadata"]["name"] == "dorisclusters.doris.selectdb.com"
    assert one(docs, "Deployment")["metadata"]["namespace"] == "doris-operator"
    assert one(docs, "ClusterRole", "doris-operator")


# --- on the local control plane ------------------------------------------------------------------


class _AsServiceAccount:
    """What harness.Operator needs of a cluster (``env()``), with the ServiceAccount's kubeconfig."""

    def __init__(self, cluster: Any, kubeconfig: Path) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig

    def env(self) -> dict[str, str]:
        env = dict(self.cluster.env())
        env["KUBECONFIG"] = str(self.kubeconfig)
        env.pop("POD_NAMESPACE", None)
        return env


def _strip_resources(doc: Doc) -> Doc:
    for key, spec in doc["spec"].items():
        if key.endswith("Spec") and isinstance(spec, dict):
            spec.pop("requests", None)
            spec.pop("limits", None)
    return doc


@pytest.fixture
def release(kube_cluster: Any, kubectl: Kubectl, helm: Path) -> Iterator[tuple[str, str]]:
    namespace = kubectl.new_namespace("dop")
    name = f"chart-{namespace}"  # cluster-scoped objects (ClusterRoles, webhook configurations) are unique
    kc = str(kube_cluster.kubeconfig)
    try:
        yield namespace, name
    finally:
        for kind, obj in (
            ("validatingwebhookconfiguration", name),
            ("mutatingwebhookconfiguration", name),
            ("validatingadmissionpolicybinding", f"{name}-managed-statefulsets"),
            ("validatingadmissionpolicy", f"{name}-managed-statefulsets"),
        ):
            kubectl("delete", kind, obj, "--ignore-not-found", check=False)
        run_helm(helm, "uninstall", name, "--namespace", namespace, "--kubeconfig", kc, check=False)
        kubectl.delete_created_namespaces()
        left = kubectl(
            "get", "clusterrole,clusterrolebinding", "-o", "name", "-l", f"app.kubernetes.io/instance={name}"
        )
        assert not left.strip(), f"left behind by helm uninstall: {left}"


def _be_ready(kubectl: Kubectl, ns: str, want: str) -> bool:
    st = status(kubectl, ns)
    return st.get("phase") == "Ready" and st.get("beStatus", {}).get("ready") == want


@pytest.mark.cluster
@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_operator_runs_with_exactly_the_chart_rbac(
    kube_cluster: Any, kubectl: Kubectl, helm: Path, release: tuple[str, str], tmp_path: Path, mode: str
) -> None:
    release_ns, name = release
    ns = kubectl.new_namespace("dc")
    kc = str(kube_cluster.kubeconfig)
    sets = [f"fullnameOverride={name}", "webhook.enabled=true"]
    if mode == "namespaced":
        sets.append(f"watchNamespaces={{{ns}}}")
    run_helm(
        helm, "install", name, str(CHART), "--namespace", release_ns, "--kubeconfig", kc,
        *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip
    out = run_helm(helm, "get", "manifest", name, "-n", release_ns, "--kubeconfig", kc).stdout
    manifest = [d for d in yaml.safe_load_all(out) if d]
    deploy = one(manifest, "Deployment")
    assert deploy["metadata"]["namespace"] == release_ns
    sa = deploy["spec"]["template"]["spec"]["serviceAccountName"]
    assert sa == name and kubectl.json("serviceaccount", sa, "-n", release_ns)
    if mode == "namespaced":
        assert kubectl.json("role", name, "-n", ns)["rules"]
        assert not kubectl("get", "clusterrole", name, "--ignore-not-found").strip()
    else:
        assert kubectl.json("clusterrole", name)["rules"]

    # The chart's ServiceAccount. The binding ServiceAccountIdentity adds is to system:basic-user, which
    # every authenticated user has anyway: the operator holds exactly the chart's RBAC.
    identity = ServiceAccountIdentity(
        kube_cluster, release_ns, sa, tmp_path, cluster_role="system:basic-user"
    )
    identity.create()
    denied = identity.kubectl("auth", "can-i", "delete", "nodes", check=False)
    assert denied.stdout.strip() == "no", denied.stdout + denied.stderr
    port = free_port()
    # The Deployment's own arguments; only where to listen differs (pod IPs are fake here).
    chart_args = [a for a in deploy["spec"]["template"]["spec"]["containers"][0]["args"][1:]]
    chart_args = [a for a in chart_args if not a.startswith("--metrics-port")]
    local = [
        "--webhook-host",
        "127.0.0.1",
        "--webhook-port",
        str(port),
        "--webhook-url",
        f"https://127.0.0.1:{port}",
    ]
    runner = _AsServiceAccount(kube_cluster, identity.kubeconfig)
    op = Operator(runner, tmp_path, *chart_args, "--resync", "5", *local, name=f"operator-{mode}")
    try:
        op.start()
        eventually(op.ready, 90, what="operator ready (lease taken, webhook listening)")
        lease = kubectl.json("lease", "doris-operator", "-n", release_ns)
        assert lease["spec"]["holderIdentity"]
        assert kubectl.json("secret", f"{name}-webhook-cert", "-n", release_ns)["type"] == "kubernetes.io/tls"
        eventually(lambda: kubectl.json("validatingwebhookconfiguration", name), 30, what="webhook config")
        eventually(lambda: kubectl.json("validatingadmissionpolicy", f"{name}-managed-statefulsets"), 30)

        bad = _strip_resources(sample())
        bad["spec"]["beSpec"]["service"] = {
            "type": "NodePort",
            "servicePorts": [{"nodePort": 31005, "targetPort": 9999}],
        }
        refused = kube_cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(bad), check=False)
        assert refused.returncode != 0 and "targetPort" in refused.stderr, refused.stderr

        # A conf ConfigMap and an authSecret: the operator reads both (configmaps get, secrets get).
        kubectl("create", "configmap", "fe-conf", "-n", ns, "--from-literal=fe.conf=http_port = 18030\n")
        kubectl(
            "create", "secret", "generic", "dc-auth", "-n", ns, "--type=kubernetes.io/basic-auth",
            "--from-literal=username=root", "--from-literal=password=",
        )  # fmt: skip
        dc = _strip_resources(sample())
        dc["spec"]["authSecret"] = "dc-auth"
        dc["spec"]["feSpec"]["configMapInfo"] = {"configMapName": "fe-conf"}
        kubectl.apply(dc, ns)
        eventually(lambda: _be_ready(kubectl, ns, "3/3"), 120, what="Ready with 3/3 BE")
        fe_ports = kubectl.json("svc", "doriscluster-sample-fe-service", "-n", ns)["spec"]["ports"]
        assert 18030 in [p["port"] for p in fe_ports], fe_ports
        assert names_of(kubectl, "statefulsets", ns) == {"doriscluster-sample-fe", "doriscluster-sample-be"}
        assert len(kubectl.items("poddisruptionbudgets", ns)) == 2

        kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":4}}}')
        eventually(lambda: _be_ready(kubectl, ns, "4/4"), 120, what="Ready with 4/4 BE")
        assert kubectl.json("sts", "doriscluster-sample-be", "-n", ns)["spec"]["replicas"] == 4

        kubectl("delete", "dcr", "doriscluster-sample", "-n", ns, "--wait=true", "--timeout=60s")
        eventually(lambda: not names_of(kubectl, "statefulsets", ns), 60, what="StatefulSets collected")
        eventually(lambda: not kubectl.items("services", ns), 60, what="Services collected")
        assert op.proc is not None and op.proc.poll() is None, op.log_tail()
    except AssertionError as err:
        raise AssertionError(f"{err}\n--- operator log ---\n{op.log_tail(60)}") from None
    finally:
        op.stop()
        identity.delete()
    log = op.log_path.read_text(errors="replace")
    assert "forbidden" not in log.lower(), [line for line in log.splitlines() if "orbidden" in line][:10]
    assert " 403" not in log and "Traceback" not in log, op.log_tail(80)
