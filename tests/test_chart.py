"""The Helm chart (deploy/helm/doris-operator) and the manifests generated from it: lint, rendering
checks (RBAC without wildcards, security context, namespaced mode, webhook on/off), generated files up
to date, and an install on the local control plane with the operator running under exactly the chart's
RBAC (as the chart's ServiceAccount) through create, scale-out and delete of the sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.images import ImageDriver
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
    ("doris.selectdb.com", "dorisclusters"): {"get", "list", "watch", "patch"},
    ("doris.selectdb.com", "dorisclusters/status"): {"patch"},
    ("doris.selectdb.com", "dorisclusterautoscalers"): {"list", "watch"},
    ("doris.selectdb.com", "dorisclusterautoscalers/status"): {"patch"},
    ("autoscaling", "horizontalpodautoscalers"): {"list", "watch", "create", "patch", "delete"},
    ("metrics.k8s.io", "pods"): {"list"},
    ("doris.selectdb.com", "dorisclusters/finalizers"): {"update"},
    ("doris.selectdb.com", "dorisinitializers"): {"get", "list", "watch"},
    ("doris.selectdb.com", "dorisinitializers/status"): {"patch"},
    ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "secrets"): {"get", "create", "patch"},
    ("", "pods"): {"get", "list", "watch", "patch", "delete"},
    ("", "pods/status"): {"patch"},
    ("", "persistentvolumeclaims"): {"get", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "events"): {"create", "patch"},
    # DorisMonitor
    ("doris.selectdb.com", "dorismonitors"): {"list", "watch"},
    ("doris.selectdb.com", "dorismonitors/status"): {"patch"},
    ("doris.selectdb.com", "dorismonitors/finalizers"): {"update"},
    ("monitoring.coreos.com", "podmonitors"): {"get", "list", "watch", "create", "patch", "delete"},
    ("monitoring.coreos.com", "prometheusrules"): {"get", "list", "watch", "create", "patch", "delete"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "serviceaccounts"): {"get", "list", "watch", "create", "patch", "delete"},
    ("rbac.authorization.k8s.io", "roles"): {"get", "list", "watch", "create", "patch", "delete"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"get", "list", "watch", "create", "patch", "delete"},
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
    # The only ClusterRoles left are failover's (cluster-scoped reads) and the webhook's (get and patch
    # of this release's two configurations).
    cluster_roles = of_kind(docs, "ClusterRole")
    assert [r["metadata"]["name"] for r in cluster_roles] == [
        "doris-operator-nodes",
        "doris-operator-webhook",
    ]
    assert granted(cluster_roles.pop(0)) == NODE_RULES
    assert {res for (_, res) in granted(cluster_roles[0])} == {
        "validatingwebhookconfigurations",
        "mutatingwebhookconfigurations",
    }
    assert all(r.get("resourceNames") == ["doris-operator"] for r in cluster_roles[0]["rules"])
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
    assert "--allow-fe-address-annotation" not in c["args"], "the annotation is off in the chart"
    assert "--allow-privileged-pod-templates" not in c["args"]
    allowed = container(render(helm, "podSecurity.allowPrivilegedPodTemplates=true"))["args"]
    assert "--allow-privileged-pod-templates" in allowed
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
        "--webhook-ca-bundle-only",
        "--webhook-no-policy",
    ):
        assert arg in c["args"]
    wh = one(on, "ClusterRole", "doris-operator-webhook")
    # No create of admission objects (the chart owns them), get/patch only by name.
    assert granted(wh) == {
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): {"get", "patch"},
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): {"get", "patch"},
    }
    assert all(r["resourceNames"] == ["doris-operator"] for r in wh["rules"])
    assert {d["kind"] for d in on if d["kind"].startswith(("Validating", "Mutating"))} == {
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
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
    assert "--webhook-no-install" in container(cm)["args"]
    assert not [r for r in of_kind(cm, "ClusterRole") if r["metadata"]["name"] == "doris-operator-webhook"]
    injected = one(cm, "ValidatingWebhookConfiguration")["metadata"]["annotations"]
    assert injected == {"cert-manager.io/inject-ca-from": "ops/doris-operator-webhook"}
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


def test_secret_write_policy(helm: Path) -> None:
    """Rendered where the apiserver has ValidatingAdmissionPolicy v1; it exempts nothing but the
    generated admin Secrets and the webhook certificate, for the release's ServiceAccount only."""
    assert not [d for d in render(helm) if "operator-secrets" in d["metadata"]["name"]]
    vap = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"
    args = ["template", "doris-operator", str(CHART), "--namespace", "ops", "--api-versions", vap,
            "--set", "watchNamespaces={a}"]  # fmt: skip
    docs = [d for d in yaml.safe_load_all(run_helm(helm, *args).stdout) if d]
    policy = one(docs, "ValidatingAdmissionPolicy", "doris-operator-operator-secrets")
    conditions = {c["name"]: c["expression"] for c in policy["spec"]["matchConditions"]}
    assert (
        conditions["the-operator"]
        == 'request.userInfo.username == "system:serviceaccount:ops:doris-operator"'
    )
    assert '"doris-operator-webhook-cert"' in conditions["not-the-webhook-certificate"]
    assert "endsWith('-admin-user')" in policy["spec"]["validations"][0]["expression"]
    binding = one(docs, "ValidatingAdmissionPolicyBinding", "doris-operator-operator-secrets")
    values = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert values == ["a"]
    off = [*args, "--set", "secretWritePolicy=false"]
    assert not [
        d for d in yaml.safe_load_all(run_helm(helm, *off).stdout) if d and "secrets" in d["metadata"]["name"]
    ]


def test_service_monitor_is_optional(helm: Path) -> None:
    assert not of_kind(render(helm), "ServiceMonitor")
    sm = one(render(helm, "metrics.serviceMonitor.enabled=true"), "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/service"] == "metrics"


def test_readme_documents_every_permission() -> None:
    readme = (CHART / "README.md").read_text()
    for (group, resource), verbs in OPERATOR_RULES.items():
        shown = f"`{group}`" if group else "core"
        row = next(
            (
                line
                for line in readme.splitlines()
                if line.startswith(f"| `{resource}`") and line.split("|")[2].strip() == shown
            ),
            None,
        )
        assert row is not None, f"no README row for {resource} ({shown})"
        assert {v.strip("` ") for v in row.split("|")[3].split(",")} == verbs, row


def test_generated_manifests_are_up_to_date(helm: Path) -> None:
    want = generate.render_manifests(helm)
    have = generate.MANIFESTS.read_text() if generate.MANIFESTS.exists() else ""
    assert have == want, "deploy/manifests/doris-operator.yaml is stale: run deploy/generate.py"
    docs = [d for d in yaml.safe_load_all(have) if d]
    assert one(docs, "Namespace")["metadata"]["name"] == "doris-operator"
    crds = {d["metadata"]["name"] for d in of_kind(docs, "CustomResourceDefinition")}
    assert {
        "dorisclusters.doris.selectdb.com",
        "dorisinitializers.doris.selectdb.com",
        "dorismonitors.doris.selectdb.com",
    } <= crds
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


def test_admission_objects_are_the_operators_own(helm: Path) -> None:
    """templates/admission.yaml is generated from webhook.configs: the rendered objects are what
    `doris-operator webhook` applies (same rules, paths, CEL), plus this release's namespaces."""
    from doris_operator.webhook import configs
    from doris_operator.webhook.admission import REGISTRY

    assert generate.ADMISSION.read_text() == generate.admission_template(), "run deploy/generate.py"
    docs = render(helm, "webhook.enabled=true", "watchNamespaces={a,b}", "webhook.url=https://127.0.0.1:1")
    # webhook.evictions=false: the same configuration without the eviction webhook
    without = render(helm, "webhook.enabled=true", "webhook.evictions=false")
    names_without = [h["name"] for h in one(without, "ValidatingWebhookConfiguration")["webhooks"]]
    assert names_without and "evictions.pods.doris.apache.org" not in names_without
    opts = configs.ConfigOptions(
        name="doris-operator",
        namespace="ops",
        url="https://127.0.0.1:1",
        policy_name="doris-operator-managed-statefulsets",
        operator_users=["system:serviceaccount:ops:doris-operator"],
        evictions=True,
    )
    selector = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}]
    }
    for want in configs.webhook_configurations(opts, REGISTRY, None) + configs.statefulset_policy(opts):
        have = one(docs, want["kind"], want["metadata"]["name"])
        assert have["metadata"]["labels"]["app.kubernetes.io/instance"] == "doris-operator"
        if want["kind"].endswith("WebhookConfiguration"):
            for hook in have["webhooks"]:
                assert hook.pop("namespaceSelector") == selector
        if want["kind"] == "ValidatingAdmissionPolicy":  # the exempt users, in any order
            for doc in (have, want):
                for cond in doc["spec"]["matchConditions"]:
                    if cond["name"] == "not-the-operator":
                        users = json.loads(cond["expression"].split(" in ", 1)[1].rstrip(")"))
                        cond["expression"] = sorted(users)
        if want["kind"] == "ValidatingAdmissionPolicyBinding":
            assert have["spec"].pop("matchResources") == {"namespaceSelector": selector}
        assert {k: v for k, v in have.items() if k != "metadata"} == {
            k: v for k, v in want.items() if k != "metadata"
        }, want["kind"]
    wide = render(helm, "webhook.enabled=true")
    hook = one(wide, "ValidatingWebhookConfiguration")["webhooks"][0]
    assert "namespaceSelector" not in hook
    assert hook["clientConfig"]["service"] == {
        "namespace": "ops",
        "name": "doris-operator-webhook",
        "port": 443,
        "path": "/validate/doris.selectdb.com/dorisclusters",
    }
    assert not [d for d in render(helm, "webhook.enabled=true", "webhook.statefulSetPolicy=false")
                if d["kind"].startswith("ValidatingAdmissionPolicy")]  # fmt: skip


ADMISSION_KINDS = (
    "validatingwebhookconfiguration",
    "mutatingwebhookconfiguration",
    "validatingadmissionpolicy",
    "validatingadmissionpolicybinding",
)


def _admission_left(kubectl: Kubectl, release: str) -> str:
    return kubectl(
        "get", ",".join(ADMISSION_KINDS), "-o", "name", "-l", f"app.kubernetes.io/instance={release}"
    ).strip()


class Release:
    """One `helm install` of the chart, and its operator run as a local process under exactly the chart's
    ServiceAccount with the Deployment's own arguments (pod IPs are fake here, so only where the
    webhook listens differs, and the webhook URL is the chart's webhook.url)."""

    def __init__(
        self, kube_cluster: Any, kubectl: Kubectl, helm: Path, tmp_path: Path, *sets: str, watch: str = ""
    ) -> None:
        self.cluster, self.kubectl, self.helm = kube_cluster, kubectl, helm
        self.namespace = kubectl.new_namespace("dop")
        self.name = f"chart-{self.namespace}"  # cluster-scoped objects (ClusterRoles...) are unique
        self.port = free_port()
        self.kc = str(kube_cluster.kubeconfig)
        self.tmp_path = tmp_path
        self.sets = [
            f"fullnameOverride={self.name}",
            "webhook.enabled=true",
            f"webhook.port={self.port}",
            f"webhook.url=https://127.0.0.1:{self.port}",
            "extraArgs={--allow-fe-address-annotation}",
            *([f"watchNamespaces={{{watch}}}"] if watch else []),
            *sets,
        ]
        self.operator: Operator | None = None
        self.identity: ServiceAccountIdentity | None = None
        self.installed = False

    def install(self) -> list[Doc]:
        args = [a for s in self.sets for a in ("--set", s)]
        run_helm(
            self.helm, "install", self.name, str(CHART), "-n", self.namespace, "--kubeconfig", self.kc, *args
        )
        self.installed = True
        out = run_helm(self.helm, "get", "manifest", self.name, "-n", self.namespace, "--kubeconfig", self.kc)
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    def start(self, manifest: list[Doc]) -> Operator:
        deploy = one(manifest, "Deployment")
        sa = deploy["spec"]["template"]["spec"]["serviceAccountName"]
        assert sa == self.name and self.kubectl.json("serviceaccount", sa, "-n", self.namespace)
        # The binding ServiceAccountIdentity adds is to system:basic-user, which every authenticated user
        # has anyway: the operator holds exactly the chart's RBAC.
        self.identity = ServiceAccountIdentity(
            self.cluster, self.namespace, sa, self.tmp_path, cluster_role="system:basic-user"
        )
        self.identity.create()
        denied = self.identity.kubectl("auth", "can-i", "list", "secrets", "-A", check=False)
        assert denied.stdout.strip() == "no", denied.stdout + denied.stderr
        # failover reads nodes; it never writes them
        denied = self.identity.kubectl("auth", "can-i", "delete", "nodes", check=False)
        assert denied.stdout.strip() == "no", denied.stdout + denied.stderr
        args = deploy["spec"]["template"]["spec"]["containers"][0]["args"][1:]
        args = [a for a in args if not a.startswith("--metrics-port")]
        runner = _AsServiceAccount(self.cluster, self.identity.kubeconfig)
        self.operator = Operator(
            runner, self.tmp_path, *args, "--resync", "5", "--webhook-host", "127.0.0.1", name=self.name
        )
        self.operator.start()
        eventually(self.operator.ready, 90, what=f"{self.name}: ready (lease taken, webhook listening)")

        def ca_bundle_patched() -> bool:
            hooks = self.kubectl.json("validatingwebhookconfiguration", self.name)["webhooks"]
            return all(h["clientConfig"].get("caBundle") for h in hooks)

        eventually(
            ca_bundle_patched, 30, what="the operator patching caBundle into the chart's configuration"
        )
        return self.operator

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        if self.identity is not None:
            self.identity.delete()

    def uninstall(self) -> None:
        if self.installed:
            run_helm(self.helm, "uninstall", self.name, "-n", self.namespace, "--kubeconfig", self.kc,
                     "--wait", check=False)  # fmt: skip
            self.installed = False

    def assert_no_forbidden(self) -> None:
        assert self.operator is not None
        log = self.operator.log_path.read_text(errors="replace")
        # RBAC's refusals ("... is forbidden: User ... cannot ..."), not a write into a namespace that
        # another test is deleting (also a 403, from the NamespaceLifecycle admission plugin)
        refused = [line for line in log.splitlines() if "forbidden" in line.lower() and " cannot " in line]
        assert not refused, refused[:10]
        assert " 403" not in log and "Traceback" not in log, self.operator.log_tail(80)

    def assert_gone(self) -> None:
        assert not _admission_left(self.kubectl, self.name), "admission objects left by helm uninstall"
        left = self.kubectl(
            "get",
            "clusterrole,clusterrolebinding",
            "-o",
            "name",
            "-l",
            f"app.kubernetes.io/instance={self.name}",
        )
        assert not left.strip(), f"left behind by helm uninstall: {left}"


def _be_ready(kubectl: Kubectl, ns: str, want: str) -> bool:
    st = status(kubectl, ns)
    return st.get("phase") == "Ready" and st.get("beStatus", {}).get("ready") == want


def _cluster(driver: ImageDriver, be: int = 3) -> Doc:
    dc = _strip_resources(sample())
    dc["metadata"].setdefault("annotations", {})[FE_ADDRESS_ANNOTATION] = f"{driver.host}:{driver.port}"
    dc["spec"]["beSpec"]["replicas"] = be
    return dc


def _refused_by_the_webhook(kube_cluster: Any, ns: str) -> str:
    """A DorisCluster only the webhook refuses (two entries for one port; a targetPort that is no port of
    the BE is only a warning since admission knows the ConfigMap's ports)."""
    bad = _strip_resources(sample())
    bad["spec"]["beSpec"]["service"] = {
        "type": "NodePort",
        "servicePorts": [{"nodePort": 31005, "targetPort": 8040}, {"nodePort": 31006, "targetPort": 8040}],
    }
    refused = kube_cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(bad), check=False)
    return str(refused.stderr) if refused.returncode != 0 else ""


@pytest.mark.cluster
def test_operator_runs_with_exactly_the_chart_rbac(
    kube_cluster: Any, kubectl: Kubectl, helm: Path, tmp_path: Path
) -> None:
    """Cluster-wide, on an apiserver with OwnerReferencesPermissionEnforcement: create (with the
    generated admin Secret and a conf ConfigMap), scale out, scale in with decommission, a rolling image
    upgrade and delete, with not one Forbidden."""
    release = Release(kube_cluster, kubectl, helm, tmp_path)
    ns = kubectl.new_namespace("dc")
    driver = ImageDriver(kube_cluster.kubeconfig, ns, "doriscluster-sample", tablets_per_be=20,
                         decommission_rate=10.0).start()  # fmt: skip
    try:
        manifest = release.install()
        assert kubectl.json("clusterrole", release.name)["rules"]
        assert not [
            r for r in kubectl.json("clusterrole", release.name)["rules"]
            if "secrets" in r["resources"] and {"list", "watch"} & set(r["verbs"])
        ]  # fmt: skip
        op = release.start(manifest)
        lease = kubectl.json("lease", "doris-operator", "-n", release.namespace)
        assert lease["spec"]["holderIdentity"]
        cert = kubectl.json("secret", f"{release.name}-webhook-cert", "-n", release.namespace)
        assert cert["type"] == "kubernetes.io/tls"
        assert "targetPort" in _refused_by_the_webhook(kube_cluster, ns)
        # RBAC lets the operator create Secrets; the chart's policy lets it write no other than its own
        assert release.identity is not None
        other = release.identity.kubectl("create", "secret", "generic", "not-ours", "-n", ns, check=False)
        assert other.returncode != 0 and "admin-user" in other.stderr, other.stderr

        kubectl("create", "configmap", "fe-conf", "-n", ns, "--from-literal=fe.conf=http_port = 18030\n")
        dc = _cluster(driver)
        dc["spec"]["adminUser"] = {"name": "root", "password": ""}
        dc["spec"]["feSpec"]["configMapInfo"] = {"configMapName": "fe-conf"}
        kubectl.apply(dc, ns)
        eventually(lambda: _be_ready(kubectl, ns, "3/3"), 120, what="Ready with 3/3 BE")
        driver.wait_registered(3, 3)
        fe_ports = kubectl.json("svc", "doriscluster-sample-fe-service", "-n", ns)["spec"]["ports"]
        assert 18030 in [p["port"] for p in fe_ports], fe_ports
        secret = kubectl.json("secret", "doriscluster-sample-admin-user", "-n", ns)
        (ref,) = secret["metadata"]["ownerReferences"]
        assert ref["blockOwnerDeletion"] is True and ref["kind"] == "DorisCluster"
        for sts in kubectl.items("statefulsets", ns):
            assert sts["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True

        # a bundled DorisMonitor: its children watched by label (never Secrets), its generated Grafana
        # Secret read by name and created once, through the chart's Secret write policy
        monitor = {"apiVersion": "doris.selectdb.com/v1", "kind": "DorisMonitor", "metadata": {"name": "mon"},
                   "spec": {"cluster": "doriscluster-sample", "mode": "bundled"}}  # fmt: skip
        kubectl.apply(monitor, ns)

        def monitor_ready() -> bool:
            status = kubectl.json("dorismonitor", "mon", "-n", ns).get("status") or {}
            return status.get("phase") == "Ready"

        eventually(monitor_ready, 120, what="the bundled DorisMonitor Ready under the chart's RBAC")
        grafana = kubectl.json("secret", "mon-grafana-admin", "-n", ns)
        assert grafana["metadata"]["ownerReferences"][0]["kind"] == "DorisMonitor"
        kubectl("delete", "dorismonitor", "mon", "-n", ns)

        kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":4}}}')
        eventually(lambda: _be_ready(kubectl, ns, "4/4"), 120, what="Ready with 4/4 BE")
        driver.wait_registered(3, 4)

        kubectl.patch(ns, '{"spec":{"beSpec":{"replicas":3}}}')  # scale in: decommission first
        eventually(lambda: kubectl.json("sts", "doriscluster-sample-be", "-n", ns)["spec"]["replicas"] == 3,
                   120, what="BE scaled in after its decommission")  # fmt: skip
        eventually(lambda: _be_ready(kubectl, ns, "3/3"), 120, what="Ready with 3/3 BE again")
        reasons = {e["reason"] for e in kubectl.items("events", ns)}
        assert {"Decommissioning", "ScaledIn"} <= reasons, reasons

        kubectl.patch(ns, '{"spec":{"beSpec":{"image":"selectdb/doris.be-ubuntu:2.0.3"}}}')  # rollout

        def rolled() -> bool:
            pods = kubectl.items("pods", ns, "app.kubernetes.io/component=be")
            images = [p["spec"]["containers"][0]["image"] for p in pods]
            return (
                len(pods) == 3 and all(i.endswith("2.0.3") for i in images) and _be_ready(kubectl, ns, "3/3")
            )

        eventually(rolled, 180, what="every BE pod on the new image, Ready")

        kubectl("delete", "dcr", "doriscluster-sample", "-n", ns, "--wait=true", "--timeout=60s")
        eventually(lambda: not names_of(kubectl, "statefulsets", ns), 60, what="StatefulSets collected")
        eventually(lambda: not kubectl.items("services", ns), 60, what="Services collected")
        assert op.proc is not None and op.proc.poll() is None, op.log_tail()
    except AssertionError as err:
        tail = release.operator.log_tail(60) if release.operator else ""
        raise AssertionError(f"{err}\n--- operator log ---\n{tail}") from None
    finally:
        release.stop()
        driver.stop()
        release.uninstall()
        kubectl.delete_created_namespaces()
    release.assert_no_forbidden()
    release.assert_gone()


@pytest.mark.cluster
def test_two_namespaced_releases_and_uninstalling_one(
    kube_cluster: Any, kubectl: Kubectl, helm: Path, tmp_path: Path
) -> None:
    """Two releases, each watching its own namespace: both reconcile and validate theirs, neither judges
    the other's; `helm uninstall` of one leaves none of its admission objects and the other working."""
    watched = [kubectl.new_namespace("na"), kubectl.new_namespace("nb")]
    releases = [
        Release(kube_cluster, kubectl, helm, tmp_path / "a", watch=watched[0]),
        Release(kube_cluster, kubectl, helm, tmp_path / "b", watch=watched[1]),
    ]
    drivers = [ImageDriver(kube_cluster.kubeconfig, ns, "doriscluster-sample").start() for ns in watched]
    try:
        for release in releases:
            release.tmp_path.mkdir()
            manifest = release.install()
            assert [r["metadata"]["name"] for r in of_kind(manifest, "ClusterRole")] == [
                f"{release.name}-nodes",
                f"{release.name}-webhook",
            ], "only failover's and the webhook's ClusterRoles"
            release.start(manifest)
        for ns, driver in zip(watched, drivers, strict=True):
            assert "targetPort" in _refused_by_the_webhook(kube_cluster, ns)
            kubectl.apply(_cluster(driver), ns)
        for ns in watched:
            eventually(lambda ns=ns: _be_ready(kubectl, ns, "3/3"), 120, what=f"{ns} Ready")
        a, b = releases
        hook = kubectl.json("validatingwebhookconfiguration", a.name)["webhooks"][0]
        assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == [watched[0]]

        a.stop()
        a.uninstall()
        a.assert_gone()
        # b still works: it validates and reconciles in its namespace
        assert "targetPort" in _refused_by_the_webhook(kube_cluster, watched[1])
        kubectl.patch(watched[1], '{"spec":{"beSpec":{"replicas":4}}}')
        eventually(lambda: _be_ready(kubectl, watched[1], "4/4"), 120, what="b's cluster scaled out")
        # a's webhook server is gone: had its configurations (failurePolicy Fail) been left behind, every
        # DorisCluster write in its former namespace would now fail
        other = _strip_resources(sample())
        other["metadata"]["name"] = "after-uninstall"
        dry = kube_cluster.kubectl(
            "apply", "-n", watched[0], "--dry-run=server", "-f", "-", input=yaml.safe_dump(other), check=False
        )
        assert dry.returncode == 0, dry.stderr
        assert _admission_left(kubectl, b.name)
    except AssertionError as err:
        tails = "\n".join(r.operator.log_tail(40) for r in releases if r.operator)
        raise AssertionError(f"{err}\n--- operator logs ---\n{tails}") from None
    finally:
        for release in releases:
            release.stop()
            release.uninstall()
        for driver in drivers:
            driver.stop()
        kubectl.delete_created_namespaces()
    for release in releases:
        release.assert_no_forbidden()
        release.assert_gone()
