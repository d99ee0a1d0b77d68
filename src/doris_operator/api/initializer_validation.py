"""Turning a manifest into a DorisInitializer, every problem as ``field.path: what is wrong``; the
webhook and the controller both call :func:`parse_initializer`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from .dorisinitializer import DorisInitializer, privilege_ok
from .validation import InvalidResource, Problem, schema_problems

LITERAL = "a literal password is not accepted: use secretKeyRef: {name: <Secret>, key: <key>}"


def literal_password_problems(obj: Any) -> Iterator[Problem]:
    """Passwords written into the spec itself, reported before the schema's generic type errors."""
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if not isinstance(spec, dict):
        return
    for field in ("rootPassword", "adminPassword"):
        value = spec.get(field)
        literal = not isinstance(value, dict) or "value" in value or "password" in value
        if value is not None and literal:
            yield Problem(f"spec.{field}", LITERAL)
    users = spec.get("users")
    for i, user in enumerate(users if isinstance(users, list) else []):
        if isinstance(user, dict) and ("password" in user or "passwordValue" in user):
            key = "password" if "password" in user else "passwordValue"
            yield Problem(
                f"spec.users[{i}].{key}",
                "a literal password is not accepted: use passwordSecretKeyRef: {name: <Secret>, key: <key>}",
            )


def duplicate_problems(obj: Any) -> Iterator[Problem]:
    """Step names, users and databases listed twice (checked on the raw object, so that they are
    reported along with schema errors)."""
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if not isinstance(spec, dict):
        return

    def items(field: str) -> list[Any]:
        value = spec.get(field)
        return value if isinstance(value, list) else []

    seen: dict[Any, int] = {}
    for i, step in enumerate(items("sql")):
        name = step.get("name") if isinstance(step, dict) else None
        if isinstance(name, str) and name in seen:
            yield Problem(f"spec.sql[{i}].name", f"{name!r} is already the name of spec.sql[{seen[name]}]")
        elif isinstance(name, str):
            seen[name] = i
    users: dict[Any, int] = {}
    for i, user in enumerate(items("users")):
        if not isinstance(user, dict) or not isinstance(user.get("name"), str):
            continue
        key = (user["name"], user.get("host") or "%")
        if key in users:
            yield Problem(f"spec.users[{i}]", f"{key[0]}@{key[1]} is already spec.users[{users[key]}]")
        else:
            users[key] = i
    dbs: dict[Any, int] = {}
    for i, db in enumerate(items("databases")):
        if isinstance(db, str) and db in dbs:
            yield Problem(f"spec.databases[{i}]", f"{db!r} is already spec.databases[{dbs[db]}]")
        elif isinstance(db, str):
            dbs[db] = i


def parse_initializer(obj: Any) -> DorisInitializer:
    if not isinstance(obj, dict):
        raise InvalidResource([Problem("(root)", f"expected a mapping, got {type(obj).__name__}")])
    literal = list(literal_password_problems(obj)) + list(duplicate_problems(obj))
    try:
        init = DorisInitializer.model_validate(obj)
    except ValidationError as err:
        shadowed = {p.path for p in literal}
        problems = literal + [
            _friendlier(p) for p in schema_problems(err) if not any(p.path.startswith(s) for s in shadowed)
        ]
        raise InvalidResource(problems) from None
    problems = literal + list(semantic_problems(init))
    if problems:
        raise InvalidResource(problems)
    return init


def _friendlier(problem: Problem) -> Problem:
    if problem.path.endswith(".passwordSecretKeyRef") and problem.message == "is required":
        return Problem(problem.path, "is required: the Secret key holding the user's password")
    if problem.path == "spec.cluster" and problem.message == "is required":
        return Problem(problem.path, "is required: the name of the DorisCluster to initialize")
    return problem


def semantic_problems(init: DorisInitializer) -> Iterator[Problem]:
    spec = init.spec
    for i, step in enumerate(spec.sql or []):
        if (step.statements is None) == (step.config_map_key_ref is None):
            yield Problem(f"spec.sql[{i}]", "set exactly one of statements and configMapKeyRef")
        elif step.statements is not None and not step.statements.strip():
            yield Problem(f"spec.sql[{i}].statements", "must not be empty")
    for i, user in enumerate(spec.users or []):
        if user.name in ("root", "admin"):
            yield Problem(
                f"spec.users[{i}].name", f"{user.name} exists already: set spec.{user.name}Password instead"
            )
        for j, grant in enumerate(user.grants or []):
            for k, privilege in enumerate(grant.privileges):
                if not privilege_ok(privilege):
                    yield Problem(
                        f"spec.users[{i}].grants[{j}].privileges[{k}]",
                        f"{privilege!r} is not a Doris privilege (SELECT_PRIV, LOAD_PRIV, ALTER_PRIV, "
                        "CREATE_PRIV, DROP_PRIV, USAGE_PRIV, SHOW_VIEW_PRIV, GRANT_PRIV, ADMIN_PRIV, "
                        "NODE_PRIV, ALL)",
                    )
    backoff = spec.effective_backoff()
    if backoff.initial_seconds > backoff.max_seconds:
        yield Problem("spec.backoff.initialSeconds", "must be <= maxSeconds")
