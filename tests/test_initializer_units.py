"""DorisInitializer without a cluster: validation, the SQL splitter, the steps and the pure plan."""

from __future__ import annotations

import asyncio
import base64
import copy
from typing import Any

import pytest

from doris_operator.api.initializer_validation import parse_initializer
from doris_operator.api.validation import InvalidResource, parse_cluster
from doris_operator.doris.client import Credentials
from doris_operator.reconcile.initializer import (
    FeView,
    Outcome,
    Snapshot,
    Statement,
    Step,
    build_steps,
    login_candidates,
    native_password_hash,
    plan,
    record,
    split_sql,
)
from doris_operator.webhook.admission import REGISTRY, Request


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "doris.selectdb.com/v1",
        "kind": "DorisInitializer",
        "metadata": {"name": "init", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {"cluster": "dc", **spec},
    }


def problems(obj: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidResource) as info:
        parse_initializer(obj)
    return {p.path: p.message for p in info.value.problems}


# ---- validation ----------------------------------------------------------------------------------------


def test_a_literal_password_is_rejected_without_echoing_it() -> None:
    found = problems(manifest(rootPassword="hunter2"))
    assert "spec.rootPassword" in found and "literal password" in found["spec.rootPassword"]
    assert "hunter2" not in str(found)
    found = problems(manifest(adminPassword={"value": "hunter2"}))
    assert "literal password" in found["spec.adminPassword"] and "hunter2" not in str(found)
    user = {"name": "jack", "password": "hunter2", "passwordSecretKeyRef": {"name": "s", "key": "k"}}
    found = problems(manifest(users=[user]))
    assert "literal password" in found["spec.users[0].password"] and "hunter2" not in str(found)


def test_missing_cluster_duplicate_steps_and_users_without_a_secret_are_named() -> None:
    obj = manifest()
    del obj["spec"]["cluster"]
    assert "the name of the DorisCluster" in problems(obj)["spec.cluster"]
    steps = [{"name": "a", "statements": "SELECT 1"}, {"name": "a", "statements": "SELECT 2"}]
    assert problems(manifest(sql=steps)) == {"spec.sql[1].name": "'a' is already the name of spec.sql[0]"}
    found = problems(manifest(users=[{"name": "jack"}]))
    assert "Secret key holding the user's password" in found["spec.users[0].passwordSecretKeyRef"]
    both = {"name": "a", "statements": "SELECT 1", "configMapKeyRef": {"name": "cm", "key": "k"}}
    assert "exactly one" in problems(manifest(sql=[both]))["spec.sql[0]"]
    grant = {"privileges": ["SELECT_PRIV", "FLY_PRIV"], "target": "db.*"}
    user = {"name": "jack", "passwordSecretKeyRef": {"name": "s", "key": "k"}, "grants": [grant]}
    assert (
        "not a Doris privilege" in problems(manifest(users=[user]))["spec.users[0].grants[0].privileges[1]"]
    )
    assert "spec.databases[1]" in problems(manifest(databases=["a", "a"]))


def test_webhook_validates_and_defaults_initializers() -> None:
    kind = REGISTRY.get("doris.selectdb.com", "dorisinitializers")
    assert kind is not None and kind.validate is not None and kind.default is not None
    bad = manifest(
        rootPassword="hunter2", sql=[{"name": "a", "statements": "x"}, {"name": "a", "statements": "y"}]
    )
    verdict = kind.validate(Request("u", "CREATE", bad))
    paths = {p.path for p in verdict.problems}
    assert {"spec.rootPassword", "spec.sql[1].name"} <= paths
    assert "hunter2" not in verdict.message
    good = manifest(
        users=[{"name": "jack", "passwordSecretKeyRef": {"name": "s", "key": "k"}}],
        sql=[{"name": "a", "statements": "x"}],
    )
    assert kind.validate(Request("u", "CREATE", good)).allowed
    patch = kind.default(Request("u", "CREATE", good))
    assert {"op": "add", "path": "/spec/users/0/host", "value": "%"} in patch
    assert {"op": "add", "path": "/spec/sql/0/runOnChange", "value": False} in patch
    assert {"op": "add", "path": "/spec/maxRetries", "value": 10} in patch
    assert {"op": "add", "path": "/spec/backoff", "value": {"initialSeconds": 5, "maxSeconds": 300}} in patch


# ---- SQL splitting and statements -----------------------------------------------------------------------


def test_split_sql_understands_quotes_and_comments() -> None:
    text = """
    -- a comment; with a semicolon
    CREATE TABLE t (a INT COMMENT 'x;y');
    INSERT INTO t VALUES ('it''s; fine'), ("a;b");  /* block ; comment */
    /*+ SET_VAR(query_timeout = 10) */ SELECT 1;
    -- trailing comment only
    """
    assert split_sql(text) == [
        "-- a comment; with a semicolon\n    CREATE TABLE t (a INT COMMENT 'x;y')",
        "INSERT INTO t VALUES ('it''s; fine'), (\"a;b\")",
        "/* block ; comment */\n    /*+ SET_VAR(query_timeout = 10) */ SELECT 1",
    ]
    assert split_sql("-- nothing\n") == []


def _secret(value: str, rv: str = "1") -> dict[str, Any]:
    return {
        "metadata": {"resourceVersion": rv},
        "data": {"password": base64.b64encode(value.encode()).decode()},
    }


def _cluster(auth_secret: str | None = "root-auth") -> Any:
    spec: dict[str, Any] = {"feSpec": {"image": "selectdb/doris.fe-ubuntu:2.1.8"}}
    if auth_secret:
        spec["authSecret"] = auth_secret
    return parse_cluster(
        {
            "apiVersion": "doris.selectdb.com/v1",
            "kind": "DorisCluster",
            "metadata": {"name": "dc"},
            "spec": spec,
        }
    )


def _steps(spec: dict[str, Any], secrets: dict[str, str], dc: Any = None, auth_user: str = "root") -> Any:
    init = parse_initializer(manifest(**spec))

    async def read_secret(name: str) -> dict[str, Any] | None:
        return _secret(secrets[name]) if name in secrets else None

    async def read_cm(name: str) -> dict[str, str] | None:
        return None

    return asyncio.run(
        build_steps(init, dc if dc is not None else _cluster(), auth_user, read_secret, read_cm)
    )


def test_steps_carry_password_hashes_never_the_passwords() -> None:
    resolved = _steps(
        {
            "rootPassword": {"secretKeyRef": {"name": "root-auth", "key": "password"}},
            "users": [
                {"name": "jack", "passwordSecretKeyRef": {"name": "jack", "key": "password"}, "roles": ["r"]}
            ],
            "databases": ["sales"],
        },
        {"root-auth": "R00t!", "jack": "J4ck'; DROP"},
    )
    names = [s.name for s in resolved.steps]
    assert names == ["root-password", "database/sales", "user/jack@%"]
    everything = repr(resolved.steps)
    assert "R00t!" not in everything and "J4ck'; DROP" not in everything
    root = resolved.steps[0]
    assert root.statements[0].sql == f"SET PASSWORD FOR 'root'@'%' = '{native_password_hash('R00t!')}'"
    assert "hash from Secret root-auth" in root.statements[0].shown
    assert (
        root.secrets[0]["name"] == "root-auth" and root.secrets[0]["hash"] and "R00t" not in str(root.secrets)
    )
    jack = [s.sql for s in resolved.steps[2].statements]
    assert jack[0].startswith("CREATE USER IF NOT EXISTS 'jack'@'%' IDENTIFIED BY PASSWORD '*")
    assert "CREATE ROLE IF NOT EXISTS 'r'" in jack and "GRANT 'r' TO 'jack'@'%'" in jack
    redacted = resolved.redact(f"error near 'R00t!' and {native_password_hash('J4ck' + chr(39) + '; DROP')}")
    assert "R00t!" not in redacted and "<redacted>" in redacted


def test_a_rotated_secret_changes_the_password_step() -> None:
    spec = {"rootPassword": {"secretKeyRef": {"name": "root-auth", "key": "password"}}}
    first = _steps(spec, {"root-auth": "one"}).steps[0]
    again = _steps(spec, {"root-auth": "one"}).steps[0]
    rotated = _steps(spec, {"root-auth": "two"}).steps[0]
    assert first.hash == again.hash != rotated.hash
    assert first.secrets[0]["hash"] != rotated.secrets[0]["hash"]


def test_a_password_for_the_operators_user_needs_the_auth_secret() -> None:
    spec = {"rootPassword": {"secretKeyRef": {"name": "other", "key": "password"}}}
    step = _steps(spec, {"other": "x1"}).steps[0]
    assert step.blocked is not None and step.blocked[0] == "PasswordRefused"
    assert "root-auth" in step.blocked[1]
    step = _steps(spec, {"other": "x1"}, dc=_cluster(None)).steps[0]
    assert step.blocked is not None and "no authSecret" in step.blocked[1]
    # root is not the operator's user: allowed
    assert _steps(spec, {"other": "x1"}, auth_user="opr").steps[0].blocked is None
    # the same Secret, key password: allowed
    same = {"rootPassword": {"secretKeyRef": {"name": "root-auth", "key": "password"}}}
    assert _steps(same, {"root-auth": "x1"}).steps[0].blocked is None
    # a missing Secret blocks the step with a reason
    missing = _steps(same, {}).steps[0]
    assert missing.blocked == ("SecretMissing", "Secret root-auth (spec.rootPassword) does not exist")


def test_login_candidates_start_with_the_clusters_credentials() -> None:
    auth = Credentials("root", "new")
    got = login_candidates(auth, {"root": "new", "admin": "adm"}, applied=["root"])
    assert got[0] == auth and Credentials("root", "") in got and Credentials("admin", "adm") in got
    assert len(got) == len(set(got))


# ---- the plan ------------------------------------------------------------------------------------------


def _step(name: str, *sql: str, run_on_change: bool = False) -> Step:
    return Step(name, "sql", "h-" + "|".join(sql), tuple(Statement(s, s) for s in sql), run_on_change)


def _snap(
    steps: list[Step], status: dict[str, Any] | None = None, fe: FeView | None = None, **kw: Any
) -> Snapshot:
    return Snapshot("ns", "init", 1, steps, status or {}, 1000.0, fe=fe, cluster="dc", **kw)


UP = FeView(True, 1, 1)


def test_plan_waits_for_cluster_fe_and_backend() -> None:
    steps = [_step("sql/a", "SELECT 1")]
    out = plan(_snap(steps, cluster_problem=("WaitingForCluster", "waiting for DorisCluster dc to exist")))
    assert out.run is None and out.status["phase"] == "Waiting"
    progressing = next(c for c in out.status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "WaitingForCluster")
    out = plan(_snap(steps, fe=FeView(False, error="connection refused")))
    assert out.run is None and "connection refused" in out.status["conditions"][1]["message"]
    out = plan(_snap(steps, fe=FeView(False, error="refused", denied=True)))
    assert out.run is None and out.status["conditions"][2]["reason"] == "AccessDenied"
    out = plan(_snap(steps, fe=FeView(True, 0, 3)))
    assert out.run is None and out.status["conditions"][1]["reason"] == "WaitingForBackend"
    assert "0 of 3 alive" in out.status["conditions"][1]["message"]
    assert plan(_snap(steps, fe=UP)).run == steps[0]


def test_plan_runs_steps_in_order_and_records_them() -> None:
    a, b = _step("sql/a", "S1", "S2"), _step("sql/b", "S3")
    out = plan(_snap([a, b], fe=UP))
    assert out.run == a and out.start_at == 0
    assert out.status["steps"][0]["result"] == "Running" and out.status["steps"][1]["result"] == "Pending"
    status, event = record(out.status, Outcome(a, 2), 1001.0)
    assert event is not None and event["reason"] == "StepApplied"
    out = plan(_snap([a, b], status, fe=UP))
    assert out.run == b
    status, _ = record(out.status, Outcome(b, 1), 1002.0)
    out = plan(_snap([a, b], status))  # nothing pending: the FE isn't even asked
    assert out.run is None and out.status["phase"] == "Applied" and out.status["applied"] == "2/2"
    ready = out.status["conditions"][0]
    assert (ready["type"], ready["status"]) == ("Ready", "True")


def test_plan_resumes_after_the_statements_that_ran() -> None:
    a = _step("sql/a", "S1", "S2", "S3")
    out = plan(_snap([a], fe=UP))
    progress, _ = record(out.status, Outcome(a, 2), 1001.0, progress_only=True)  # killed here
    out = plan(_snap([a], progress, fe=UP))
    assert out.run == a and out.start_at == 2


def test_plan_reruns_a_changed_step_only_with_run_on_change() -> None:
    a, b = _step("sql/a", "S1", run_on_change=True), _step("sql/b", "S2")
    status: dict[str, Any] = {}
    for step in (a, b):
        status, _ = record(status, Outcome(step, 1), 1000.0)
    a2, b2 = _step("sql/a", "S1-new", run_on_change=True), _step("sql/b", "S2-new")
    out = plan(_snap([a2, b2], status, fe=UP))
    assert out.run == a2
    status, _ = record(out.status, Outcome(a2, 1), 1001.0)
    out = plan(_snap([a2, b2], status, fe=UP))
    assert out.run is None and out.status["phase"] == "Applied"
    assert "runOnChange is false" in out.status["steps"][1]["message"]


def test_plan_retries_with_backoff_stops_later_steps_and_gives_up() -> None:
    a, b = _step("sql/a", "S1", "BAD"), _step("sql/b", "S3")
    out = plan(_snap([a, b], fe=UP, max_retries=2, backoff=(10, 60)))
    status, event = record(
        out.status, Outcome(a, 1, "statement 2 of 2 failed: (1049) Unknown database 'x'"), 1000.0
    )
    assert event is not None and event["reason"] == "StepFailed" and "Unknown database" in event["message"]
    out = plan(_snap([a, b], status, fe=UP, max_retries=2, backoff=(10, 60)))
    assert out.run is None and out.requeue_after == pytest.approx(10.0)
    degraded = out.status["conditions"][2]
    assert (
        degraded["status"] == "True"
        and "sql/a" in degraded["message"]
        and "Unknown database" in degraded["message"]
    )
    assert out.status["steps"][1]["result"] == "Pending"
    later = _snap([a, b], status, fe=UP, max_retries=2, backoff=(10, 60))
    later.now = 1011.0
    out = plan(later)
    assert out.run == a and out.start_at == 1  # the statement that succeeded is not re-run
    status, _ = record(out.status, Outcome(a, 1, "again"), 1011.0)
    out = plan(_snap([a, b], status, fe=UP, max_retries=2, backoff=(10, 60)))
    assert out.run is None and out.status["conditions"][2]["reason"] == "RetriesExhausted"
    assert out.status["phase"] == "Failed"
    fixed = _step("sql/a", "S1", "GOOD")
    out = plan(_snap([fixed, b], status, fe=UP, max_retries=2))
    assert out.run == fixed and out.start_at == 1  # changed after the statement that ran


def test_plan_blocks_on_a_refused_password() -> None:
    refused = Step("root-password", "password", "h", blocked=("PasswordRefused", "refusing ..."))
    out = plan(_snap([refused, _step("sql/a", "S1")], fe=UP))
    assert out.run is None
    assert out.status["conditions"][2]["reason"] == "PasswordRefused"
    assert [s["result"] for s in out.status["steps"]] == ["Refused", "Pending"]
    assert out.events and out.events[0][1] == "PasswordRefused"


# ---- the example and kubectl doris status -----------------------------------------------------------------


def test_the_example_is_valid() -> None:
    import yaml

    from harness import ROOT

    docs = list(yaml.safe_load_all((ROOT / "examples" / "dorisinitializer.yaml").read_text()))
    (init,) = [d for d in docs if d.get("kind") == "DorisInitializer"]
    parsed = parse_initializer(init)
    assert parsed.spec.cluster == "doriscluster-sample"
    assert [s.name for s in parsed.spec.sql or []] == ["schema", "reader-grants"]
    assert len(split_sql(next(d for d in docs if d.get("kind") == "ConfigMap")["data"]["schema.sql"])) == 2


def test_kubectl_doris_status_shows_the_steps() -> None:
    from doris_operator import kubectl_plugin as kp

    dinit = {
        "metadata": {"name": "init"},
        "spec": {"cluster": "dc"},
        "status": {
            "phase": "Failed",
            "applied": "1/2",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "NotApplied", "message": "1/2 steps applied"},
                {
                    "type": "Degraded",
                    "status": "True",
                    "reason": "StepFailed",
                    "message": "step sql/b failed",
                },
            ],
            "steps": [
                {
                    "name": "sql/a",
                    "result": "Applied",
                    "appliedAt": "2026-12-01T10:00:00Z",
                    "message": "1 statement applied",
                },
                {
                    "name": "sql/b",
                    "result": "Failed",
                    "attempts": 3,
                    "message": "(1049) Unknown database 'x'",
                },
            ],
        },
    }
    other = {"metadata": {"name": "other"}, "spec": {"cluster": "elsewhere"}}

    class Fake(kp.Kube):
        def list(
            self, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None
        ) -> list[Any]:
            return [dinit, other] if kind == "dinit" else []

    kube = Fake(None, None, "ns")
    dc = {"metadata": {"name": "dc", "namespace": "ns"}, "spec": {"feSpec": {"replicas": 1}}}
    st = kp.cluster_status(kube, dc, {}, with_members=False)
    assert [i["name"] for i in st["initializers"]] == ["init"]
    text = kp.render_status(st)
    assert "DorisInitializer init: Failed (1/2 steps)" in text
    assert "Degraded=True StepFailed: step sql/b failed" in text
    lines = text.splitlines()
    assert any(line.split()[:3] == ["sql/a", "Applied", "2026-12-01T10:00:00Z"] for line in lines)
    assert any(
        line.split()[:4] == ["sql/b", "Failed", "-", "3"] and "Unknown database" in line for line in lines
    )


def test_an_idle_reconcile_reads_nothing_while_the_watch_reports_the_version_last_written() -> None:
    """The controller reads a DorisInitializer live (its status is the record of what ran) unless the
    watch still reports the resourceVersion it last read or wrote: a resync of an unchanged one sends
    no request, a change anyone else made (a new version) is read live, and so is one whose write
    answered no version."""
    from doris_operator.informers import Index
    from doris_operator.reconcile.initializer import InitializerController

    class Kube:
        def __init__(self) -> None:
            self.gets = 0
            self.version = 1
            self.stored = {**manifest(), "status": {}}
            self.stored["metadata"]["resourceVersion"] = "1"
            self.answer_versions = True

        async def get_object(self, kind: Any, name: str, namespace: str) -> dict[str, Any]:
            self.gets += 1
            return copy.deepcopy(self.stored)

        async def patch_status(self, name: str, namespace: str, status: Any, **kw: Any) -> str | None:
            self.version += 1
            self.stored["status"] = copy.deepcopy(status)
            self.stored["metadata"]["resourceVersion"] = str(self.version)
            return str(self.version) if self.answer_versions else None

        async def event(self, *args: Any) -> None:
            pass

    kube = Kube()
    ctl = InitializerController(kube)  # type: ignore[arg-type]
    versions = Index()
    ctl.attach({"dc_clusters": Index(), "dc_initializers": Index(), "di_versions": versions})
    key = ("ns", "init")

    def watched() -> None:  # the watch delivers the stored object's version
        versions.put(key, {key: kube.stored["metadata"]["resourceVersion"]})

    async def main() -> None:
        watched()
        await ctl.reconcile(key)  # first sight: read live, then its status written
        assert kube.gets == 1
        assert kube.stored["status"]["phase"] == "Applied", kube.stored["status"]
        await ctl.reconcile(key)  # the watch has not delivered the write yet: live
        assert kube.gets == 2
        watched()
        for _ in range(3):  # resyncs of an unchanged initializer
            await ctl.reconcile(key)
        assert kube.gets == 2
        kube.stored["metadata"]["resourceVersion"] = "99"  # a hand edit, as the watch reports it
        watched()
        await ctl.reconcile(key)
        assert kube.gets == 3
        kube.answer_versions = False  # a write whose answer has no version: the next read is live
        kube.stored["status"] = {}
        kube.stored["metadata"]["resourceVersion"] = "100"
        watched()
        await ctl.reconcile(key)
        assert kube.gets == 4
        watched()
        await ctl.reconcile(key)
        assert kube.gets == 5
        await ctl.reconcile(key)  # that read, at the version the watch reports, serves again
        assert kube.gets == 5

    asyncio.run(main())


def test_split_sql_is_kept_by_digest_and_a_copy_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reconcile builds the steps again: the same text is split once (sqlparse is slow), and what
    a caller does to the list it gets does not reach the next one."""
    import sqlparse

    from doris_operator.reconcile import initializer as ri

    calls: list[str] = []
    real = sqlparse.split
    monkeypatch.setattr(sqlparse, "split", lambda text: calls.append(text) or real(text))
    text = "CREATE DATABASE a_unique_db_for_this_test; -- note\nSELECT 1;"
    first = split_sql(text)
    expected = list(first)
    assert len(expected) == 2
    first.append("mutated")
    assert split_sql(text) == expected
    assert calls == [text]
    big = "SELECT 1;" * (ri.SPLIT_CACHED_MAX // 9 + 1)
    split_sql(big)
    split_sql(big)
    assert calls[1:] == [big, big]  # a large script is not kept
