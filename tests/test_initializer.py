"""DorisInitializer on the local control plane, against the simulated FE (real logins, statement log)."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from doris_operator import kubectl_plugin as kp
from doris_operator.reconcile.membership import FE_ADDRESS_ANNOTATION
from doris_sim.images import ImageDriver
from harness import ROOT, Kubectl, Operator, eventually, sample

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("clean_namespaces")]

INIT_CRD = ROOT / "config" / "crd" / "doris.selectdb.com_dorisinitializers.yaml"
ROOT_PW = "R00t-Secret-9f3a"
ADMIN_PW = "Adm1n-Secret-77c1"
JACK_PW = "J4ck-Secret-e2d0"
PASSWORDS = (ROOT_PW, ADMIN_PW, JACK_PW)


@pytest.fixture(scope="module")
def operator(
    kube_cluster: Any, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    kubectl("apply", "-f", str(INIT_CRD))
    eventually(lambda: "dorisinitializers" in kubectl("api-resources", "--api-group=doris.selectdb.com"), 30)
    before = os.environ.get("LOG_LEVEL")
    os.environ["LOG_LEVEL"] = "DEBUG"  # the grep for passwords reads everything the operator logs
    try:
        op = Operator(kube_cluster, tmp_path_factory.mktemp("operator"), "--resync", "3").start()
    finally:
        if before is None:
            os.environ.pop("LOG_LEVEL")
        else:
            os.environ["LOG_LEVEL"] = before
    yield op
    op.stop()


def secret(name: str, data: dict[str, str], basic_auth: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": data,
    }
    if basic_auth:
        out["type"] = "kubernetes.io/basic-auth"
    return out


def small_cluster(driver: ImageDriver) -> dict[str, Any]:
    dc = sample()
    dc["metadata"]["annotations"] = {FE_ADDRESS_ANNOTATION: f"{driver.host}:{driver.port}"}
    dc["spec"]["feSpec"]["replicas"] = 1
    dc["spec"]["beSpec"]["replicas"] = 1
    dc["spec"]["authSecret"] = "root-auth"
    return dc


def initializer(sql: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "cluster": "doriscluster-sample",
        "backoff": {"initialSeconds": 1, "maxSeconds": 2},
    }
    if sql is not None:
        body["sql"] = sql
    body.update(spec)
    return {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisInitializer",
        "metadata": {"name": "init"},
        "spec": body,
    }


def init_status(kubectl: Kubectl, ns: str) -> dict[str, Any]:
    return dict(kubectl.json("dinit", "init", "-n", ns).get("status") or {})


def condition(st: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == ctype), {})


def steps(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in st.get("steps") or []}


def wait_phase(kubectl: Kubectl, ns: str, phase: str, timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        st = init_status(kubectl, ns)
        return st if st.get("phase") == phase and st.get("observedGeneration") == generation() else None

    def generation() -> int:
        return int(kubectl.json("dinit", "init", "-n", ns)["metadata"]["generation"])

    return eventually(check, timeout, what=f"DorisInitializer {ns}/init {phase}")


def operator_statements(driver: ImageDriver) -> list[str]:
    """What the operator ran (the images' statements run in-process, as user None)."""
    return [s.sql for s in driver.cluster.statement_log() if s.user is not None and not _noise(s.sql)]


def _noise(sql: str) -> bool:
    """Session setup (the FE client asks for the master's answers on every session) and reads."""
    return sql.upper().startswith(
        ("SET AUTOCOMMIT", "SET NAMES", "SET FORWARD_TO_MASTER", "SHOW ", "SELECT ")
    )


def login(driver: ImageDriver, user: str, password: str) -> None:
    pymysql.connect(host=driver.host, port=driver.port, user=user, password=password).close()


def refused(driver: ImageDriver, user: str, password: str) -> bool:
    try:
        login(driver, user, password)
    except pymysql.err.OperationalError as err:
        return bool(err.args[0] == 1045)
    return False


@pytest.fixture
def env(kube_cluster: Any, kubectl: Kubectl, operator: Operator) -> Iterator[tuple[str, ImageDriver]]:
    ns = kubectl.new_namespace("init")
    driver = ImageDriver(kube_cluster.kubeconfig, ns, "doriscluster-sample").start()
    try:
        yield ns, driver
    finally:
        driver.stop()


def _secrets(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(secret("root-auth", {"username": "root", "password": ROOT_PW}, basic_auth=True), ns)
    kubectl.apply(secret("admin-pw", {"password": ADMIN_PW}), ns)
    kubectl.apply(secret("jack-pw", {"pw": JACK_PW}), ns)


def _full(sql: list[dict[str, Any]]) -> dict[str, Any]:
    return initializer(
        sql,
        rootPassword={"secretKeyRef": {"name": "root-auth", "key": "password"}},
        adminPassword={"secretKeyRef": {"name": "admin-pw", "key": "password"}},
        databases=["sales"],
        users=[
            {
                "name": "jack",
                "passwordSecretKeyRef": {"name": "jack-pw", "key": "pw"},
                "roles": ["analyst"],
                "grants": [{"privileges": ["SELECT_PRIV", "LOAD_PRIV"], "target": "sales.*"}],
            }
        ],
    )


TABLES = [
    {
        "name": "tables",
        "statements": "-- the schema; a ';' in a comment\n"
        "CREATE TABLE sales.orders (id BIGINT, note VARCHAR(20) COMMENT 'a;b') "
        "DISTRIBUTED BY HASH(id) BUCKETS 1;\n"
        "CREATE TABLE sales.items (id BIGINT) DISTRIBUTED BY HASH(id) BUCKETS 1;",
    }
]


def test_waits_for_the_cluster_then_applies_every_step_once(
    kube_cluster: Any,
    kubectl: Kubectl,
    operator: Operator,
    env: tuple[str, ImageDriver],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ns, driver = env
    _secrets(kubectl, ns)
    kubectl.apply(_full(TABLES), ns)

    # no DorisCluster yet: it waits, and says for what
    def waiting_for_cluster() -> dict[str, Any] | None:
        st = init_status(kubectl, ns)
        return st if condition(st, "Progressing").get("reason") == "WaitingForCluster" else None

    st = eventually(waiting_for_cluster, 60, what="WaitingForCluster")
    assert st["phase"] == "Waiting" and condition(st, "Ready")["status"] == "False"
    assert "doriscluster-sample" in condition(st, "Progressing")["message"]
    assert operator_statements(driver) == []

    kubectl.apply(small_cluster(driver), ns)
    st = wait_phase(kubectl, ns, "Applied", 180)
    assert condition(st, "Ready")["status"] == "True" and condition(st, "Degraded")["status"] == "False"
    assert st["applied"] == "5/5"
    by_name = steps(st)
    assert list(by_name) == ["root-password", "admin-password", "database/sales", "user/jack@%", "sql/tables"]
    assert all(s["result"] == "Applied" and s["appliedAt"] for s in by_name.values())
    assert by_name["sql/tables"]["statementsApplied"] == 2
    applied_secret = by_name["root-password"]["secrets"][0]
    assert applied_secret["name"] == "root-auth" and applied_secret["key"] == "password"
    assert applied_secret["resourceVersion"] and applied_secret["hash"]

    # Doris now refuses the old root password and accepts the new one; the users log in
    assert refused(driver, "root", "")
    login(driver, "root", ROOT_PW)
    assert refused(driver, "admin", "")
    login(driver, "admin", ADMIN_PW)
    login(driver, "jack", JACK_PW)
    accounts = driver.cluster.accounts
    assert accounts.roles_of("jack") == {"analyst"}
    assert accounts.privileges("jack")["internal.sales.*"] == {"SELECT_PRIV", "LOAD_PRIV"}
    assert set(accounts.databases["sales"]) == {"orders", "items"}

    # every statement ran exactly once (the split respected the comment and the quoted ';')
    ran = operator_statements(driver)
    assert len(ran) == len(set(ran)), ran
    tables = [s for s in ran if "CREATE TABLE" in s]
    assert tables == [
        "-- the schema; a ';' in a comment\nCREATE TABLE sales.orders (id BIGINT, note VARCHAR(20) "
        "COMMENT 'a;b') DISTRIBUTED BY HASH(id) BUCKETS 1",
        "CREATE TABLE sales.items (id BIGINT) DISTRIBUTED BY HASH(id) BUCKETS 1",
    ], tables
    events = [e for e in kubectl.items("events", ns) if e["involvedObject"]["kind"] == "DorisInitializer"]
    applied = sorted(e["message"] for e in events if e["reason"] == "StepApplied")
    assert len(applied) == 5 and any("step sql/tables: 2 statements applied" in m for m in applied), applied

    # kubectl get shows it at a glance
    table = kubectl("get", "dinit", "-n", ns).splitlines()
    assert table[0].split()[:4] == ["NAME", "CLUSTER", "PHASE", "STEPS"]
    assert table[1].split()[:4] == ["init", "doriscluster-sample", "Applied", "5/5"]

    # kubectl doris status lists the steps
    capsys.readouterr()
    code = kp.main(["status", "doriscluster-sample", "--kubeconfig", str(kube_cluster.kubeconfig), "-n", ns])
    out = capsys.readouterr().out
    assert code == 0 and "DorisInitializer init: Applied (5/5 steps)" in out, out
    assert any(line.split()[:2] == ["user/jack@%", "Applied"] for line in out.splitlines()), out

    _no_password_anywhere(kubectl, ns, operator)


def _no_password_anywhere(kubectl: Kubectl, ns: str, operator: Operator) -> None:
    """No password, nor its base64 or its Doris hash, in the operator's log (DEBUG), Events, the
    DorisInitializer (status included), the DorisCluster or any pod (env included)."""
    import hashlib

    haystacks = {
        "operator log": Path(operator.log_path).read_text(errors="replace"),
        "events": json.dumps(kubectl.json("events", "-n", ns)),
        "initializer": json.dumps(kubectl.json("dinit", "init", "-n", ns)),
        "cluster": json.dumps(kubectl.json("dcr", "doriscluster-sample", "-n", ns)),
        "pods": json.dumps(kubectl.json("pods", "-n", ns)),
    }
    for password in PASSWORDS:
        sha = hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest()
        forms = [password, base64.b64encode(password.encode()).decode(), sha, sha.upper()]
        for where, text in haystacks.items():
            for form in forms:
                assert form not in text, f"a password ({form[:3]}...) appears in the {where}"
    assert "StepApplied" in haystacks["events"]  # the haystacks are not empty


def test_restart_reruns_nothing(
    kube_cluster: Any, kubectl: Kubectl, operator: Operator, env: tuple[str, ImageDriver], tmp_path: Path
) -> None:
    ns, driver = env
    _secrets(kubectl, ns)
    kubectl.apply(small_cluster(driver), ns)
    kubectl.apply(_full(TABLES), ns)
    wait_phase(kubectl, ns, "Applied", 180)
    before = operator_statements(driver)
    assert before

    operator.kill()  # SIGKILL: no chance to clean up
    restarted = Operator(kube_cluster, tmp_path, "--resync", "3", name="restarted").start()
    try:
        # a new step proves the restarted operator reconciled this initializer (event-driven wait)
        later = [*TABLES, {"name": "after-restart", "statements": "CREATE DATABASE IF NOT EXISTS later"}]
        kubectl.patch(ns, json.dumps({"spec": {"sql": later}}), target="dinit/init")
        st = wait_phase(kubectl, ns, "Applied", 120)
        assert steps(st)["sql/after-restart"]["result"] == "Applied"
        after = operator_statements(driver)
        assert after[: len(before)] == before
        assert after[len(before) :] == ["CREATE DATABASE IF NOT EXISTS later"], after[len(before) :]
    finally:
        restarted.stop()
        operator.start()  # the module's operator, for the next tests


def test_killed_mid_step_reruns_at_most_the_statement_in_flight(
    kube_cluster: Any, kubectl: Kubectl, operator: Operator, env: tuple[str, ImageDriver], tmp_path: Path
) -> None:
    ns, driver = env
    _secrets(kubectl, ns)
    kubectl.apply(small_cluster(driver), ns)
    cluster = driver.cluster
    run = cluster._execute

    def slow(sql: str, *args: Any) -> Any:
        if sql.startswith("CREATE DATABASE IF NOT EXISTS many_"):
            time.sleep(0.3)  # long enough to be killed in the middle of the step
        return run(sql, *args)

    cluster._execute = slow  # type: ignore[method-assign]
    many = [f"CREATE DATABASE IF NOT EXISTS many_{i}" for i in range(20)]
    kubectl.apply(initializer([{"name": "many", "statements": ";\n".join(many)}]), ns)

    def midway() -> bool:
        step = steps(init_status(kubectl, ns)).get("sql/many", {})
        return step.get("result") == "Running" and int(step.get("statementsApplied") or 0) >= 5

    eventually(midway, 180, interval=0.1, what="sql/many half done")
    operator.kill()
    killed_at = len([s for s in operator_statements(driver) if s in many])
    assert 5 <= killed_at < len(many)
    restarted = Operator(kube_cluster, tmp_path, "--resync", "3", name="restarted").start()
    try:
        wait_phase(kubectl, ns, "Applied", 120)
    finally:
        restarted.stop()
        operator.start()
    ran = [s for s in operator_statements(driver) if s in many]
    assert set(ran) == set(many)
    repeated = [s for s in many if ran.count(s) > 1]
    assert len(ran) - len(many) <= 1 and len(repeated) <= 1, repeated
    # statements are never re-run out of order: the log is the step's order, with at most one repeat
    assert [s for i, s in enumerate(ran) if i == 0 or s != ran[i - 1]] == many


def test_editing_a_run_on_change_step_reruns_only_that_step(
    kubectl: Kubectl, operator: Operator, env: tuple[str, ImageDriver]
) -> None:
    ns, driver = env
    _secrets(kubectl, ns)
    kubectl.apply(small_cluster(driver), ns)
    sql = [
        {"name": "db", "statements": "CREATE DATABASE IF NOT EXISTS app"},
        {"name": "views", "runOnChange": True, "statements": "CREATE TABLE app.v1 (a INT)"},
        {"name": "once", "statements": "CREATE TABLE app.t1 (a INT)"},
    ]
    kubectl.apply(initializer(sql), ns)
    first = wait_phase(kubectl, ns, "Applied", 180)
    before = operator_statements(driver)
    assert before == [
        "CREATE DATABASE IF NOT EXISTS app",
        "CREATE TABLE app.v1 (a INT)",
        "CREATE TABLE app.t1 (a INT)",
    ]

    sql[1]["statements"] = "CREATE TABLE app.v2 (a INT)"  # runOnChange: runs again
    sql[2]["statements"] = "CREATE TABLE app.t2 (a INT)"  # not runOnChange: stays done
    kubectl.patch(ns, json.dumps({"spec": {"sql": sql}}), target="dinit/init")

    def rerun() -> dict[str, Any] | None:
        st = init_status(kubectl, ns)
        views = steps(st).get("sql/views", {})
        moved = views.get("hash") != steps(first)["sql/views"]["hash"] and views.get("result") == "Applied"
        return st if moved and st.get("phase") == "Applied" else None

    st = eventually(rerun, 120, what="sql/views re-applied")
    assert operator_statements(driver) == [*before, "CREATE TABLE app.v2 (a INT)"]
    once = steps(st)["sql/once"]
    assert once["hash"] == steps(first)["sql/once"]["hash"] and once["result"] == "Applied"
    assert "runOnChange is false" in once["message"]
    assert steps(st)["sql/db"] == steps(first)["sql/db"]
    assert "t2" not in driver.cluster.accounts.databases["app"]


def test_a_failing_statement_degrades_stops_later_steps_and_carries_on_when_fixed(
    kubectl: Kubectl, operator: Operator, env: tuple[str, ImageDriver]
) -> None:
    ns, driver = env
    _secrets(kubectl, ns)
    kubectl.apply(small_cluster(driver), ns)
    sql = [
        {"name": "schema", "statements": "CREATE DATABASE IF NOT EXISTS shop; CREATE TABLE nope.t (a INT)"},
        {"name": "later", "statements": "CREATE TABLE shop.later (a INT)"},
    ]
    kubectl.apply(initializer(sql, maxRetries=2), ns)

    def degraded() -> dict[str, Any] | None:
        st = init_status(kubectl, ns)
        cond = condition(st, "Degraded")
        exhausted = cond.get("reason") == "RetriesExhausted"
        return st if cond.get("status") == "True" and exhausted else None

    st = eventually(degraded, 180, what="Degraded")
    cond = condition(st, "Degraded")
    assert "sql/schema" in cond["message"] and "Unknown database 'nope'" in cond["message"], cond
    assert "(1049)" in cond["message"]
    schema = steps(st)["sql/schema"]
    assert schema["result"] == "Failed" and schema["attempts"] == 2 and schema["statementsApplied"] == 1
    assert steps(st)["sql/later"]["result"] == "Pending"
    ran = operator_statements(driver)
    assert "CREATE TABLE shop.later (a INT)" not in ran
    # the statement that succeeded is not re-run by the retries
    assert ran.count("CREATE DATABASE IF NOT EXISTS shop") == 1
    assert ran.count("CREATE TABLE nope.t (a INT)") == 2
    events = [e for e in kubectl.items("events", ns) if e["reason"] == "StepFailed"]
    assert any("Unknown database 'nope'" in e["message"] and e["type"] == "Warning" for e in events)

    # fixed: the statements before the failing one are kept, the step and the later ones run
    sql[0]["statements"] = "CREATE DATABASE IF NOT EXISTS shop; CREATE TABLE shop.t (a INT)"
    kubectl.patch(ns, json.dumps({"spec": {"sql": sql}}), target="dinit/init")
    st = wait_phase(kubectl, ns, "Applied", 120)
    assert condition(st, "Degraded")["status"] == "False"
    ran = operator_statements(driver)
    assert ran.count("CREATE DATABASE IF NOT EXISTS shop") == 1
    assert ran[-2:] == ["CREATE TABLE shop.t (a INT)", "CREATE TABLE shop.later (a INT)"]


def test_a_password_for_the_operators_own_user_needs_its_auth_secret(
    kubectl: Kubectl, operator: Operator, env: tuple[str, ImageDriver]
) -> None:
    ns, driver = env
    _secrets(kubectl, ns)
    kubectl.apply(small_cluster(driver), ns)
    kubectl.apply(secret("other-root", {"password": "Some-Other-Pw-5"}), ns)
    spec = initializer(
        [{"name": "x", "statements": "CREATE DATABASE IF NOT EXISTS x"}],
        rootPassword={"secretKeyRef": {"name": "other-root", "key": "password"}},
    )
    kubectl.apply(spec, ns)

    def refused_step() -> dict[str, Any] | None:
        st = init_status(kubectl, ns)
        return st if condition(st, "Degraded").get("reason") == "PasswordRefused" else None

    st = eventually(refused_step, 120, what="PasswordRefused")
    message = condition(st, "Degraded")["message"]
    assert "root" in message and "root-auth" in message, message
    assert steps(st)["root-password"]["result"] == "Refused"
    assert steps(st)["sql/x"]["result"] == "Pending"
    assert operator_statements(driver) == []
    assert not refused(driver, "root", "")  # root's password is untouched


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"rootPassword": "hunter2"}, "spec.rootPassword"),
        ({"cluster": None}, "spec.cluster"),
        (
            {"sql": [{"name": "a", "statements": "SELECT 1"}, {"name": "a", "statements": "SELECT 2"}]},
            "spec.sql",
        ),
        ({"users": [{"name": "jack"}]}, "spec.users[0].passwordSecretKeyRef"),
    ],
)
def test_bad_specs_are_rejected_by_the_apiserver_naming_the_field(
    kubectl: Kubectl, operator: Operator, patch: dict[str, Any], field: str
) -> None:
    ns = kubectl.new_namespace("bad")
    body = initializer()
    for key, value in patch.items():
        if value is None:
            body["spec"].pop(key)
        else:
            body["spec"][key] = value
    result = kubectl.cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
