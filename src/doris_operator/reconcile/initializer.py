"""One reconcile of one DorisInitializer: observe -> plan -> act, over the FE client.

* **Observe** reads the DorisInitializer (live, as its status is the record of what ran, unless the
  watch still reports the version the controller last read or wrote), its DorisCluster
  (from the watch cache), the Secrets and ConfigMaps it names, and turns the spec into :class:`Step` s,
  each with a content hash.  Only when a step is pending does it ask Doris whether the FE answers and a
  BE is alive.
* **Plan** (:func:`plan`, pure) compares the steps with ``status.steps`` and returns what to do next: run
  one step (from the statement where it stopped), or wait; plus the status and Events.
* **Act** runs the step's statements one at a time, writing ``statementsApplied`` to the status after
  each, so an operator killed at any moment re-runs at most the one statement that was in flight.

Secret values exist only in memory, inside the statements (and there only as Doris's password hash,
``'*<sha1(sha1(password))>'``: the plain text never leaves the operator); every message that reaches
status, an Event or the log goes through :class:`Redactor` first.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api import dorisinitializer as di
from ..api.doriscluster import DorisCluster
from ..api.initializer_validation import parse_initializer
from ..api.validation import InvalidResource, parse_cluster
from ..builders.config import config_map_names
from ..builders.config import resolve as resolve_config
from ..doris.client import AccessDeniedError, Credentials, DorisError, UnreachableError
from ..k8s import DorisInitializerResource, Kube
from .membership import FeSession, credentials, fe_endpoint
from .queue import WorkQueue
from .status import without_times

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]
WAIT_REQUEUE = 10.0
"""Seconds between looks at a cluster that is not ready for the initializer yet."""
REDACTED = "<redacted>"
_FIELDS = ("apiVersion", "kind", "metadata", "spec")
_TRIED = ("Applied", "Running", "Failed")


# ---- steps ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    sql: str
    shown: str
    """What may be logged: the statement, or a description when it carries a password hash."""


@dataclass(frozen=True)
class Step:
    name: str
    kind: Literal["password", "database", "user", "sql"]
    hash: str
    statements: tuple[Statement, ...] = ()
    run_on_change: bool = True
    secrets: tuple[Obj, ...] = ()
    """SecretApplied entries (name, key, resourceVersion, hash)."""
    blocked: tuple[str, str] | None = None
    """(reason, message) when the step can't run as specified (a missing Secret, a refused password)."""

    def prefix_hash(self, n: int) -> str:
        return _digest([s.sql for s in self.statements[:n]])


def _digest(value: Any, salt: str = "") -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{salt}\x00{data}".encode()).hexdigest()[:16]


def native_password_hash(password: str) -> str:
    """Doris's (MySQL's) stored form of a mysql_native_password: ``*`` + hex SHA1(SHA1(password))."""
    if not password:
        return ""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


SPLIT_CACHE = 1024
"""Split SQL texts kept (least recently used dropped first), by their digest: every reconcile of a
DorisInitializer builds its steps again, and sqlparse took 8% of the operator's CPU doing so (50
clusters with all four kinds, docs/benchmarks.md).  Texts above :data:`SPLIT_CACHED_MAX` characters
are split each time, so the cache stays small."""
SPLIT_CACHED_MAX = 65536
_split: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()


def split_sql(text: str) -> list[str]:
    """Statements in order, split by sqlparse (quotes, comments, ``;`` inside strings); comment-only
    pieces are dropped, comments inside statements (hints) kept, trailing ``;`` removed."""
    key = hashlib.sha256(text.encode()).digest()
    hit = _split.get(key)
    if hit is not None:
        _split.move_to_end(key)
        return list(hit)
    import sqlparse  # only when a DorisInitializer has SQL to run (bench/memory.py: imports)

    out = []
    for piece in sqlparse.split(text):
        if not sqlparse.format(piece, strip_comments=True).strip().rstrip(";").strip():
            continue
        out.append(piece.strip().rstrip(";").rstrip())
    if len(text) <= SPLIT_CACHED_MAX:
        _split[key] = tuple(out)
        while len(_split) > SPLIT_CACHE:
            _split.popitem(last=False)
    return out


def _identity(name: str, host: str = "%") -> str:
    return f"'{name}'@'{host}'"


def _on(target: str) -> str:
    return ".".join(p if p == "*" else f"`{p}`" for p in target.split("."))


class Redactor:
    """Replaces every secret value (and its password hash) in a text with <redacted>."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, value: str) -> None:
        if value:
            self.values.add(value)
            self.values.add(native_password_hash(value))
            self.values.add(native_password_hash(value)[1:])

    def __call__(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text


# ---- snapshot ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeView:
    """What the FE said: it answers (as ``user``), and how many BEs are alive; or why it doesn't."""

    answers: bool
    alive_backends: int = 0
    backends: int = 0
    error: str = ""
    user: str = ""
    denied: bool = False
    """The FE answers but refuses every credentials the operator knows."""


@dataclass
class Snapshot:
    namespace: str
    name: str
    generation: int | None
    steps: list[Step]
    status: Obj
    """The DorisInitializer's current status."""
    now: float
    max_retries: int = 10
    backoff: tuple[int, int] = (5, 300)
    invalid: str | None = None
    cluster: str = ""
    cluster_problem: tuple[str, str] | None = None
    """(reason, message) when the DorisCluster is missing or invalid."""
    fe: FeView | None = None
    """None: not asked (nothing pending, or the cluster is missing)."""


@dataclass
class Outcome:
    """The result of running a step (or part of it), for :func:`record`."""

    step: Step
    applied: int
    """Statements done, in total (those of earlier attempts included)."""
    error: str | None = None


@dataclass
class Plan:
    run: Step | None = None
    start_at: int = 0
    status: Obj = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: float | None = None


def _now_text(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def retry_delay(attempts: int, backoff: tuple[int, int]) -> float:
    initial, most = backoff
    return float(min(most, initial * 2 ** max(0, attempts - 1)))


# ---- plan ----------------------------------------------------------------------------------------------

StepState = Literal["done", "run", "resume", "wait", "exhausted", "blocked", "stale"]


def step_state(step: Step, entry: Obj | None, snap: Snapshot) -> tuple[StepState, int, float]:
    """What to do with one step given its status entry: (state, statement to start at, seconds to wait)."""
    if step.blocked is not None:
        return "blocked", 0, 0.0
    if entry is None:
        return "run", 0, 0.0
    same = entry.get("hash") == step.hash
    applied = int(entry.get("statementsApplied") or 0)
    result = entry.get("result")
    if result == "Applied":
        if same:
            return "done", 0, 0.0
        return ("run", 0, 0.0) if step.run_on_change else ("stale", 0, 0.0)
    if result in ("Running", "Failed"):
        if same:
            start = min(applied, len(step.statements))
        elif applied and entry.get("prefixHash") == step.prefix_hash(applied):
            start = applied  # changed after the statements that ran: carry on after them
        else:
            start = 0
        if result == "Failed" and same:
            attempts = int(entry.get("attempts") or 0)
            if attempts >= snap.max_retries:
                return "exhausted", start, 0.0
            last = _parse_time(entry.get("lastAttemptAt")) or 0.0
            wait = last + retry_delay(attempts, snap.backoff) - snap.now
            if wait > 0:
                return "wait", start, wait
        return ("resume" if start else "run"), start, 0.0
    return "run", 0, 0.0  # Pending, Refused, or something unknown: run it


def pending(snap: Snapshot) -> bool:
    """Whether any step would run now (and so whether Doris needs to be asked)."""
    entries = _entries(snap.status)
    for step in snap.steps:
        state, _, _ = step_state(step, entries.get(step.name), snap)
        if state in ("run", "resume"):
            return True
        if state not in ("done", "stale"):
            return False
    return False


def _entries(status: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in status.get("steps") or [] if isinstance(e, dict) and "name" in e}


def _condition(ctype: str, ok: bool, reason: str, message: str, generation: int | None) -> Obj:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def plan(snap: Snapshot) -> Plan:
    """The next action for the DorisInitializer, and the status as it stands before it."""
    entries = _entries(snap.status)
    out = Plan()
    gen = snap.generation
    steps_status: list[Obj] = []
    progressing: tuple[str, str] | None = None
    degraded: tuple[str, str] | None = None
    blocked_at: str | None = None
    done = 0
    for step in snap.steps:
        entry = dict(entries.get(step.name) or {"name": step.name, "hash": step.hash, "result": "Pending"})
        if blocked_at is not None:
            if entry.get("result") != "Applied":
                entry["result"] = "Pending"
                entry["message"] = f"waits for {blocked_at}"
            steps_status.append(entry)
            continue
        state, start, wait = step_state(step, entries.get(step.name), snap)
        if state == "done":
            done += 1
        elif state == "stale":
            done += 1
            entry["message"] = "changed since it ran; runOnChange is false, so it is not run again"
        elif state == "blocked":
            assert step.blocked is not None
            reason, message = step.blocked
            entry.update(result="Refused" if reason == "PasswordRefused" else "Pending", message=message)
            entry["hash"] = entry.get("hash") or step.hash
            degraded = degraded or (reason, f"step {step.name}: {message}")
            out.events.append(("Warning", reason, f"step {step.name}: {message}"))
            blocked_at = step.name
        elif state == "exhausted":
            msg = entry.get("message", "")
            degraded = degraded or (
                "RetriesExhausted",
                f"step {step.name} failed {entry.get('attempts')} times, the last: {msg}; change the step "
                "(or raise spec.maxRetries) to try again",
            )
            blocked_at = step.name
        elif state == "wait":
            degraded = degraded or ("StepFailed", f"step {step.name} failed: {entry.get('message', '')}")
            progressing = progressing or ("RetryScheduled", f"step {step.name} is retried in {wait:.0f}s")
            out.requeue_after = wait
            blocked_at = step.name
        else:  # run / resume
            if (
                snap.invalid
                or snap.cluster_problem
                or snap.fe is None
                or not snap.fe.answers
                or snap.fe.alive_backends < 1
            ):
                blocked_at = step.name
            else:
                if entry.get("result") == "Failed":
                    failed = f"step {step.name} failed: {entry.get('message', '')}"
                    degraded = degraded or ("StepFailed", failed)
                out.run, out.start_at = step, start
                entry.update(
                    hash=step.hash,
                    result="Running",
                    statementsApplied=start,
                    statements=len(step.statements),
                    prefixHash=step.prefix_hash(start),
                )
                if entry.get("hash") != (entries.get(step.name) or {}).get("hash"):
                    entry["attempts"] = 0
                progressing = progressing or ("Applying", f"running step {step.name}")
                blocked_at = step.name
        steps_status.append(entry)

    waiting = _waiting(snap)
    if snap.fe is not None and snap.fe.denied:
        degraded = degraded or (
            "AccessDenied",
            f"can't log in to DorisCluster {snap.cluster}: {snap.fe.error}",
        )
    if snap.invalid:
        degraded = ("InvalidSpec", snap.invalid)
    if waiting is not None and out.run is None and progressing is None and done < len(snap.steps):
        progressing = waiting
    total = len(snap.steps)
    ready = done == total and degraded is None and not snap.invalid
    if ready:
        phase = "Applied"
    elif degraded is not None and progressing is None:
        phase = "Failed"
    elif out.run is not None or (progressing and progressing[0] in ("Applying", "RetryScheduled")):
        phase = "Applying"
    else:
        phase = "Waiting"
    if progressing is None and not ready and degraded is None:
        progressing = ("Pending", "steps are pending")
    conditions = [
        _condition(
            "Ready",
            ready,
            "Applied" if ready else "NotApplied",
            f"{done}/{total} steps applied",
            gen,
        ),
        _condition(
            "Progressing",
            progressing is not None,
            progressing[0] if progressing else ("Complete" if ready else "Stopped"),
            progressing[1] if progressing else "",
            gen,
        ),
        _condition(
            "Degraded",
            degraded is not None,
            degraded[0] if degraded else "AsExpected",
            degraded[1] if degraded else "",
            gen,
        ),
    ]
    out.status = {
        "phase": phase,
        "observedGeneration": gen,
        "conditions": _carry_times(conditions, snap.status.get("conditions"), snap.now),
        "steps": steps_status,
        "applied": f"{done}/{total}",
    }
    if waiting is not None and out.run is None and done < total and out.requeue_after is None:
        out.requeue_after = WAIT_REQUEUE
    return out


def _waiting(snap: Snapshot) -> tuple[str, str] | None:
    if snap.cluster_problem is not None:
        return snap.cluster_problem
    if snap.fe is None:
        return None
    if not snap.fe.answers:
        return "WaitingForFE", f"waiting for the FE of DorisCluster {snap.cluster} to answer: {snap.fe.error}"
    if snap.fe.alive_backends < 1:
        return (
            "WaitingForBackend",
            f"waiting for a BE of DorisCluster {snap.cluster} to be alive "
            f"({snap.fe.alive_backends} of {snap.fe.backends} alive)",
        )
    return None


def _carry_times(new: list[Obj], old: list[Obj] | None, now: float) -> list[Obj]:
    previous = {c.get("type"): c for c in old or []}
    stamp = _now_text(now)
    for cond in new:
        before = previous.get(cond["type"])
        same = before is not None and before.get("status") == cond["status"]
        cond["lastTransitionTime"] = before.get("lastTransitionTime", stamp) if same and before else stamp
    return new


def record(status: Obj, outcome: Outcome, now: float, progress_only: bool = False) -> tuple[Obj, Obj | None]:
    """The status after (part of) a step ran, and the Event to record (None for progress)."""
    step = outcome.step
    steps = [dict(e) for e in status.get("steps") or []]
    entry = next((e for e in steps if e.get("name") == step.name), None)
    if entry is None:
        entry = {"name": step.name}
        steps.append(entry)
    stamp = _now_text(now)
    entry.update(
        hash=step.hash,
        statementsApplied=outcome.applied,
        statements=len(step.statements),
        prefixHash=step.prefix_hash(outcome.applied),
    )
    if step.secrets:
        entry["secrets"] = [dict(s) for s in step.secrets]
    event: Obj | None = None
    if progress_only:
        entry["result"] = "Running"
    elif outcome.error is None:
        entry.update(result="Applied", appliedAt=stamp, attempts=0, lastAttemptAt=stamp)
        entry["message"] = f"{outcome.applied} statement{'s' if outcome.applied != 1 else ''} applied"
        message = f"step {step.name}: {entry['message']}"
        event = {"type": "Normal", "reason": "StepApplied", "message": message}
    else:
        entry.update(
            result="Failed",
            attempts=int(entry.get("attempts") or 0) + 1,
            lastAttemptAt=stamp,
            message=outcome.error,
        )
        entry.pop("appliedAt", None)
        event = {"type": "Warning", "reason": "StepFailed", "message": f"step {step.name}: {outcome.error}"}
    return {**status, "steps": steps}, event


# ---- observe -------------------------------------------------------------------------------------------


SecretReader = Callable[[str], Awaitable[Obj | None]]
"""name -> the Secret (metadata.resourceVersion, data), or None."""


@dataclass
class Resolved:
    steps: list[Step]
    redact: Redactor
    passwords: dict[str, str]
    """user -> the password a step sets (to log in with once it is applied)."""


def operator_user(dc: DorisCluster | None, auth: Credentials | None) -> str:
    if auth is not None:
        return auth.user
    return "root"


async def build_steps(
    init: di.DorisInitializer,
    dc: DorisCluster | None,
    auth_user: str,
    read_secret: SecretReader,
    read_config_map: Callable[[str], Awaitable[dict[str, str] | None]],
) -> Resolved:
    """The steps of the spec, in order: root password, admin password, databases, users, SQL."""
    spec = init.spec
    salt = init.metadata.uid or f"{init.namespace}/{init.name}"
    redact = Redactor()
    passwords: dict[str, str] = {}
    secrets: dict[str, Obj | None] = {}

    async def secret_value(ref: di.KeySelector, path: str) -> tuple[str | None, Obj, str | None]:
        if ref.name not in secrets:
            secrets[ref.name] = await read_secret(ref.name)
        secret = secrets[ref.name]
        if secret is None:
            return None, {}, f"Secret {ref.name} ({path}) does not exist"
        data = secret.get("data") or {}
        if ref.key not in data:
            return None, {}, f"Secret {ref.name} has no key {ref.key} ({path})"
        value = base64.b64decode(data[ref.key]).decode()
        value = value.rstrip("\r\n")
        redact.add(value)
        if not value:
            return None, {}, f"Secret {ref.name} key {ref.key} ({path}) is empty"
        applied = {
            "name": ref.name,
            "key": ref.key,
            "resourceVersion": (secret.get("metadata") or {}).get("resourceVersion"),
            "hash": _digest(value, salt),
        }
        return value, applied, None

    def guard(user: str, ref: di.KeySelector, path: str) -> str | None:
        """Refuse a password for the operator's own user unless it comes from the DorisCluster's
        authSecret (key password): anything else would lock the operator out of the cluster."""
        if dc is None or user != auth_user:
            return None
        if dc.spec.auth_secret and ref.name == dc.spec.auth_secret and ref.key == "password":
            return None
        how = (
            f"its authSecret {dc.spec.auth_secret}"
            if dc.spec.auth_secret
            else "spec.adminUser"
            if dc.spec.admin_user and dc.spec.admin_user.name
            else "no authSecret, so as root without a password"
        )
        want = (
            f"secretKeyRef {{name: {dc.spec.auth_secret}, key: password}}"
            if dc.spec.auth_secret
            else "the Secret the DorisCluster's spec.authSecret names (key password), once it has one"
        )
        return (
            f"refusing to set the password of {user}: the operator manages DorisCluster {dc.name} as {user} "
            f"({how}) and would lose its access; set {path}.secretKeyRef to {want}"
            if path.endswith("Password")
            else f"refusing to set the password of {user}: the operator manages DorisCluster {dc.name} as "
            f"{user} ({how}) and would lose its access; use {want} as {path}"
        )

    steps: list[Step] = []
    for who, source, path in (
        ("root", spec.root_password, "spec.rootPassword"),
        ("admin", spec.admin_password, "spec.adminPassword"),
    ):
        if source is None:
            continue
        ref = source.secret_key_ref
        name = f"{who}-password"
        value, applied, missing = await secret_value(ref, path)
        refused = guard(who, ref, path)
        if refused is not None:
            steps.append(_blocked(name, "password", "refused", salt, ("PasswordRefused", refused)))
            continue
        if value is None:
            steps.append(_blocked(name, "password", "missing", salt, ("SecretMissing", str(missing))))
            continue
        passwords[who] = value
        hashed = native_password_hash(value)
        stmt = Statement(
            f"SET PASSWORD FOR {_identity(who)} = '{hashed}'",
            f"SET PASSWORD FOR {_identity(who)} = <password hash from Secret {ref.name}>",
        )
        digest = _digest([name, applied["hash"]], salt)
        steps.append(Step(name, "password", digest, (stmt,), secrets=(applied,)))

    for db in spec.databases or []:
        create = f"CREATE DATABASE IF NOT EXISTS `{db}`"
        steps.append(
            Step(f"database/{db}", "database", _digest([create], salt), (Statement(create, create),))
        )

    for i, user in enumerate(spec.users or []):
        name = f"user/{user.name}@{user.host}"
        path = f"spec.users[{i}].passwordSecretKeyRef"
        ref = user.password_secret_key_ref
        value, applied, missing = await secret_value(ref, path)
        refused = guard(user.name, ref, path)
        if refused is not None:
            steps.append(_blocked(name, "user", "refused", salt, ("PasswordRefused", refused)))
            continue
        if value is None:
            steps.append(_blocked(name, "user", "missing", salt, ("SecretMissing", str(missing))))
            continue
        ident = _identity(user.name, user.host)
        hashed = native_password_hash(value)
        shown_pw = f"<password hash from Secret {ref.name}>"
        stmts = [
            Statement(
                f"CREATE USER IF NOT EXISTS {ident} IDENTIFIED BY PASSWORD '{hashed}'",
                f"CREATE USER IF NOT EXISTS {ident} IDENTIFIED BY PASSWORD {shown_pw}",
            ),
            Statement(f"SET PASSWORD FOR {ident} = '{hashed}'", f"SET PASSWORD FOR {ident} = {shown_pw}"),
        ]
        for role in user.roles or []:
            for text in (f"CREATE ROLE IF NOT EXISTS '{role}'", f"GRANT '{role}' TO {ident}"):
                stmts.append(Statement(text, text))
        for grant in user.grants or []:
            privs = ", ".join(" ".join(p.split()).upper() for p in grant.privileges)
            text = f"GRANT {privs} ON {_on(grant.target)} TO {ident}"
            stmts.append(Statement(text, text))
        passwords.setdefault(user.name, value)
        steps.append(
            Step(name, "user", _digest([s.sql for s in stmts], salt), tuple(stmts), secrets=(applied,))
        )

    for i, sql in enumerate(spec.sql or []):
        name = f"sql/{sql.name}"
        if sql.config_map_key_ref is not None:
            ref = sql.config_map_key_ref
            data = await read_config_map(ref.name)
            if data is None or ref.key not in data:
                gone = " does not exist" if data is None else f" has no key {ref.key}"
                what = f"ConfigMap {ref.name}{gone}"
                steps.append(
                    Step(name, "sql", _digest([name, "missing"], salt), run_on_change=sql.run_on_change,
                         blocked=("ConfigMapMissing", f"{what} (spec.sql[{i}].configMapKeyRef)"))
                )  # fmt: skip
                continue
            text = data[ref.key]
        else:
            text = sql.statements or ""
        statements = split_sql(text)
        if not statements:
            steps.append(
                Step(name, "sql", _digest([name, "empty"], salt), run_on_change=sql.run_on_change,
                     blocked=("EmptyStep", f"spec.sql[{i}] has no statement"))
            )  # fmt: skip
            continue
        steps.append(
            Step(
                name,
                "sql",
                _digest(statements, salt),
                tuple(Statement(s, _short(s)) for s in statements),
                run_on_change=sql.run_on_change,
            )
        )
    return Resolved(steps, redact, passwords)


def _blocked(name: str, kind: Any, why: str, salt: str, blocked: tuple[str, str]) -> Step:
    return Step(name, kind, _digest([name, why], salt), blocked=blocked)


def _short(sql: str, limit: int = 200) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def login_candidates(
    auth: Credentials, passwords: Mapping[str, str], applied: Iterable[str]
) -> list[Credentials]:
    """Whom to log in as, in order: the DorisCluster's credentials; then root/admin with the password a
    step of this initializer set (``applied``: those whose step ran) or is about to set; then root and
    admin without a password (a new cluster)."""
    out = [auth]
    applied = set(applied)
    for user in ("root", "admin"):
        if user in passwords and user in applied:
            out.append(Credentials(user, passwords[user]))
    if auth.user in passwords and auth.user in applied:
        out.append(Credentials(auth.user, passwords[auth.user]))
    out += [Credentials("root", ""), Credentials("admin", "")]
    for user in ("root", "admin"):
        if user in passwords:
            out.append(Credentials(user, passwords[user]))
    unique: list[Credentials] = []
    for cred in out:
        if cred not in unique:
            unique.append(cred)
    return unique


# ---- the controller ------------------------------------------------------------------------------------


class InitializerController:
    """Work loop for DorisInitializers: a key per initializer, one reconcile of it at a time."""

    def __init__(self, kube: Kube, workers: int = 2, resync: float = 60.0) -> None:
        self.kube = kube
        self.queue: WorkQueue[Key] = WorkQueue()
        self.workers = workers
        self.resync = resync
        self.indexes: Mapping[str, Any] | None = None
        self.synced = asyncio.Event()
        self._failures: dict[Key, int] = {}
        self._events: dict[tuple[str, str, str], str] = {}
        self._bodies: dict[Key, Obj] = {}
        """Per DorisInitializer, its body as last read live or written (status and resourceVersion):
        while the watch reports that resourceVersion, a reconcile needs no read.  The watch lags
        only behind changes whose own events will reconcile again, and the status is the
        operator's alone."""
        self.allow_fe_address_annotation = False
        """Honour ``doris.apache.org/fe-address`` (``run --allow-fe-address-annotation``)."""

    def attach(self, indexes: Mapping[str, Any]) -> None:
        if self.indexes is None:
            self.indexes = indexes
            self.synced.set()

    def enqueue(self, key: Key) -> None:
        self.queue.add(key)

    def forget(self, key: Key) -> None:
        self.queue.forget(key)
        self._failures.pop(key, None)
        self._bodies.pop(key, None)
        for k in [k for k in self._events if k[:2] == key]:
            del self._events[k]

    def wake_cluster(self, key: Key) -> None:
        """A DorisCluster changed: reconcile the initializers that name it."""
        if self.indexes is None:
            return
        for name in self.indexes["dc_initializers"].get(key, ()):
            self.enqueue((key[0], name))

    async def run(self) -> None:
        await self.synced.wait()
        tasks = [asyncio.create_task(self._work(), name=f"init-worker-{i}") for i in range(self.workers)]
        tasks.append(asyncio.create_task(self._resync(), name="initializer-resync"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            assert self.indexes is not None
            for (namespace, _), names in list(self.indexes["dc_initializers"].items()):
                for name in names:
                    self.queue.add((namespace, name), urgent=False)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                delay = await self._reconcile_safely(key)
                if delay is not None:
                    self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    async def _reconcile_safely(self, key: Key) -> float | None:
        try:
            delay = await self.reconcile(key)
        except Exception as err:  # one initializer's failure must not stop the others
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            delay = min(60.0, 2.0**failures)
            log.warning("reconcile of DorisInitializer %s/%s failed (retry in %ss): %s", *key, delay, err)
            return delay
        self._failures.pop(key, None)
        return delay

    async def _event(self, body: Obj, event_type: str, reason: str, message: str, dedupe: bool) -> None:
        meta = body["metadata"]
        k = (meta["namespace"], meta["name"], reason)
        if dedupe and self._events.get(k) == message:
            return
        self._events[k] = message
        await self.kube.event(body, event_type, reason, message)

    async def _write(self, key: Key, body: Obj, status: Obj) -> None:
        clean = {k: v for k, v in status.items() if v is not None}
        if without_times(clean) == without_times(body.get("status") or {}):
            return
        version = await self.kube.patch_status(key[1], key[0], clean, resource=DorisInitializerResource)
        body["status"] = clean
        if version:
            body["metadata"]["resourceVersion"] = version
            self._bodies[key] = copy.deepcopy(body)
        else:  # which version holds this status is unknown: the next reconcile reads it live
            self._bodies.pop(key, None)

    async def _body(self, key: Key) -> Obj | None:
        """The DorisInitializer: the one last read or written while the watch reports its version
        (no request: an idle resync reads nothing), else a live read."""
        kept = self._bodies.get(key)
        watched = (self.indexes or {}).get("di_versions", {}).get(key) or [None]
        if kept is not None and watched[0] == kept["metadata"].get("resourceVersion"):
            return copy.deepcopy(kept)
        body = await self.kube.get_object(DorisInitializerResource, key[1], key[0])
        if body is None:
            self._bodies.pop(key, None)
        else:
            self._bodies[key] = body
        return copy.deepcopy(body)

    async def reconcile(self, key: Key) -> float | None:
        body = await self._body(key)
        if body is None:
            self.forget(key)
            return None
        session: FeSession | None = None
        try:
            snap, resolved, session = await self._observe(body)
            return await self._act(key, body, snap, resolved, session)
        finally:
            if session is not None:
                await session.close()

    async def _observe(self, body: Obj) -> tuple[Snapshot, Resolved, FeSession | None]:
        meta = body["metadata"]
        namespace = meta["namespace"]
        status = dict(body.get("status") or {})
        now = time.time()
        try:
            init = parse_initializer({k: body[k] for k in _FIELDS if k in body})
        except InvalidResource as err:
            gen = meta.get("generation")
            snap = Snapshot(namespace, meta["name"], gen, [], status, now, invalid=str(err))
            return snap, Resolved([], Redactor(), {}), None
        spec = init.spec
        snap = Snapshot(
            namespace,
            init.name,
            init.metadata.generation,
            [],
            status,
            now,
            max_retries=spec.max_retries,
            backoff=(spec.effective_backoff().initial_seconds, spec.effective_backoff().max_seconds),
            cluster=spec.cluster,
        )
        dc, problem = self._cluster(namespace, spec.cluster)
        snap.cluster_problem = problem
        auth: Credentials | None = None
        if dc is not None:
            try:
                auth = await credentials(dc, lambda n: self.kube.secret_data(n, namespace))
            except Exception as err:  # an unreadable authSecret
                unreadable = f"can't read the DorisCluster's credentials: {err}"
                snap.cluster_problem = ("WaitingForCluster", unreadable)

        async def read_secret(secret: str) -> Obj | None:
            return await self.kube.secret(secret, namespace)

        async def read_config_map(cm: str) -> dict[str, str] | None:
            return await self.kube.config_map(cm, namespace)

        resolved = await build_steps(init, dc, operator_user(dc, auth), read_secret, read_config_map)
        snap.steps = resolved.steps
        if dc is None or auth is None or snap.cluster_problem is not None or not pending(snap):
            return snap, resolved, None
        fe, session = await self._probe(dc, auth, resolved, status)
        snap.fe = fe
        return snap, resolved, session

    def _cluster(self, namespace: str, name: str) -> tuple[DorisCluster | None, tuple[str, str] | None]:
        assert self.indexes is not None
        bodies = list(self.indexes["dc_clusters"].get((namespace, name), ()))
        if not bodies:
            return None, ("WaitingForCluster", f"waiting for DorisCluster {name} to exist")
        body = bodies[0]
        try:
            dc = parse_cluster({k: body[k] for k in _FIELDS if k in body})
        except InvalidResource as err:
            return None, ("WaitingForCluster", f"DorisCluster {name} is invalid: {err}")
        if dc.spec.fe_spec is None and not any(
            s.fe_address and s.fe_address.endpoints and s.fe_address.endpoints.address
            for _, s in dc.components()
        ):
            return None, ("WaitingForCluster", f"DorisCluster {name} has no FE")
        return dc, None

    async def _probe(
        self, dc: DorisCluster, auth: Credentials, resolved: Resolved, status: Obj
    ) -> tuple[FeView, FeSession | None]:
        config_maps: dict[str, dict[str, str]] = {}
        if dc.spec.fe_spec is not None:
            for cm in config_map_names(dc.spec.fe_spec):
                data = await self.kube.config_map(cm, dc.namespace)
                if data is not None:
                    config_maps[cm] = data
        fe_config = resolve_config("fe", dc.spec.fe_spec, config_maps)
        host, port = fe_endpoint(dc, fe_config, self.allow_fe_address_annotation)
        applied = [
            user
            for user in ("root", "admin")
            if (_entries(status).get(f"{user}-password") or {}).get("result") in _TRIED
        ]
        applied += [
            e["name"][5:].split("@")[0]
            for e in status.get("steps") or []
            if str(e.get("name", "")).startswith("user/") and e.get("result") in _TRIED
        ]
        last_error = ""
        for cred in login_candidates(auth, resolved.passwords, applied):

            async def fixed(c: Credentials = cred) -> Credentials:
                return c

            session = FeSession(host, port, fixed, tls=fe_config.flag("enable_ssl"))
            try:
                backends = await session.call(lambda c: c.show_backends())
            except AccessDeniedError as err:
                await session.close()
                last_error = resolved.redact(err.detail)
                continue
            except (DorisError, OSError) as err:
                await session.close()
                detail = err.detail if isinstance(err, DorisError) else str(err)
                return FeView(False, error=f"{host}:{port}: {resolved.redact(detail)}"), None
            alive = sum(1 for b in backends if b.alive and not b.is_compute_node)
            log.info("initializer of %s/%s: logged in to the FE as %s", dc.namespace, dc.name, cred.user)
            return FeView(True, alive, len(backends), user=cred.user), session
        if dc.spec.auth_secret:  # the next probe reads the authSecret again (it may have been rotated)
            self.kube.secret_refused(dc.spec.auth_secret, dc.namespace)
        message = f"{host}:{port}: none of the credentials the operator knows is accepted ({last_error})"
        return FeView(False, error=message, denied=True), None

    async def _act(
        self, key: Key, body: Obj, snap: Snapshot, resolved: Resolved, session: FeSession | None
    ) -> float | None:
        redact = resolved.redact
        for _ in range(len(snap.steps) + 2):
            decided = plan(snap)
            for event_type, reason, message in decided.events:
                await self._event(body, event_type, reason, redact(message), dedupe=True)
            await self._write(key, body, decided.status)
            snap.status = decided.status
            if decided.run is None or session is None:
                return decided.requeue_after
            outcome = await self._run(key, body, snap, decided.run, decided.start_at, session, redact)
            snap.status, event = record(snap.status, outcome, time.time())
            snap.now = time.time()
            if event is not None:
                text = redact(event["message"])
                await self._event(body, event["type"], event["reason"], text, dedupe=False)
            if outcome.error is not None:
                log.warning("DorisInitializer %s/%s: %s", *key, redact(event["message"] if event else ""))
        return None

    async def _run(
        self,
        key: Key,
        body: Obj,
        snap: Snapshot,
        step: Step,
        start: int,
        session: FeSession,
        redact: Redactor,
    ) -> Outcome:
        applied = start
        total = len(step.statements)
        for index in range(start, total):
            statement = step.statements[index]
            log.info("DorisInitializer %s/%s step %s [%d/%d]: %s", *key, step.name, index + 1, total,
                     redact(statement.shown))  # fmt: skip
            try:
                await session.call(lambda c, s=statement: c.execute(s.sql, shown=redact(s.shown)))  # type: ignore[misc]
            except UnreachableError:
                raise  # not the step's fault: the reconcile is retried, the step resumes here
            except DorisError as err:
                message = f"statement {index + 1} of {total} failed: ({err.code}) {redact(err.detail)}"
                return Outcome(step, applied, message)
            applied += 1
            if applied < total:
                progress, _ = record(snap.status, Outcome(step, applied), time.time(), progress_only=True)
                await self._write(key, body, progress)
                snap.status = progress
        return Outcome(step, applied)


__all__ = [
    "FeView",
    "InitializerController",
    "Outcome",
    "Plan",
    "Snapshot",
    "Step",
    "build_steps",
    "login_candidates",
    "native_password_hash",
    "plan",
    "record",
    "split_sql",
]
