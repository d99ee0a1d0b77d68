"""DorisInitializer (doris.selectdb.com/v1, short name `dinit`): the desired initialization of a
DorisCluster: root and admin passwords, users with their roles and grants, databases, and named SQL
steps, applied once each and recorded in `status.steps` (docs/initializer.md).

Passwords are only ever references to Secrets: the spec has no field that can hold one.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from .base import Model
from .doriscluster import GROUP, VERSION, Condition, Named, ObjectMeta, StatusModel, cel, rule

KIND = "DorisInitializer"
PLURAL = "dorisinitializers"
SHORT_NAME = "dinit"
API_VERSION = f"{GROUP}/{VERSION}"

STEP_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"
USER_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]*$"
"""Doris user and role names: letters, digits, `_`, `.` and `-` (what needs no quoting rules of
our own; Doris allows a little more, which SQL steps can still use)."""
DATABASE_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]*$"
HOST_PATTERN = r"^[A-Za-z0-9%_.:\-]+$"
PRIVILEGE_PATTERN = r"^[A-Za-z_]+( [A-Za-z_]+)?$"
ON_PATTERN = r"^[A-Za-z0-9_*\-]+(\.[A-Za-z0-9_*\-]+){1,2}$"
"""`db.tbl` or `catalog.db.tbl`, each part a name or `*`: `*.*`, `sales.*`, `internal.sales.orders`."""
PRIVILEGES = frozenset(
    {
        "NODE_PRIV", "ADMIN_PRIV", "GRANT_PRIV", "SELECT_PRIV", "LOAD_PRIV", "ALTER_PRIV", "CREATE_PRIV",
        "DROP_PRIV", "USAGE_PRIV", "SHOW_VIEW_PRIV", "ALL", "ALL PRIVILEGES",
    }
)  # fmt: skip
"""Doris's privileges (docs: GRANT); `ALL` is every privilege but NODE_PRIV."""

_SECRET_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_KEY = r"^[-._a-zA-Z0-9]+$"


class KeySelector(Model):
    """A key of a Secret or ConfigMap in the DorisInitializer's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=_SECRET_NAME)
    key: str = Field(min_length=1, max_length=253, pattern=_KEY)


class PasswordSource(Model):
    """Where a password comes from: a Secret key.  Never a literal value."""

    secret_key_ref: KeySelector


Privilege = Annotated[str, Field(min_length=1, max_length=32, pattern=PRIVILEGE_PATTERN)]
RoleName = Annotated[str, Field(min_length=1, max_length=64, pattern=USER_NAME_PATTERN)]
DatabaseName = Annotated[str, Field(min_length=1, max_length=64, pattern=DATABASE_PATTERN)]


class Grant(Model):
    privileges: list[Privilege] = Field(min_length=1, max_length=16)
    """Doris privileges, e.g. `SELECT_PRIV`, `LOAD_PRIV`, `ALL`."""
    target: str = Field(max_length=256, pattern=ON_PATTERN)
    """What they apply to (GRANT ... ON `target`): `db.tbl` or `catalog.db.tbl`, `*` for any (`*.*`,
    `sales.*`).  Not called `on`: YAML reads an unquoted `on:` key as the boolean true."""


class User(Model):
    name: str = Field(min_length=1, max_length=64, pattern=USER_NAME_PATTERN)
    host: str = Field(default="%", min_length=1, max_length=255, pattern=HOST_PATTERN)
    """The host part of the user identity (default `%`: any host)."""
    password_secret_key_ref: KeySelector
    """The Secret key holding the user's password (required: no user is created without one)."""
    roles: list[RoleName] | None = Field(default=None, max_length=32)
    """Roles granted to the user; a role that does not exist yet is created (without privileges)."""
    grants: list[Grant] | None = Field(default=None, max_length=32)


class ConfigMapSql(Model):
    config_map_key_ref: KeySelector


class SqlStep(Model):
    """A named step: its statements run in order, split by a SQL parser (quotes, comments and `;`
    inside strings are understood).  A step that succeeded is not run again unless `runOnChange`."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "has(self.statements) != has(self.configMapKeyRef)",
                "set exactly one of statements and configMapKeyRef",
            )
        )
    )

    name: str = Field(min_length=1, max_length=63, pattern=STEP_NAME_PATTERN)
    statements: str | None = Field(default=None, max_length=262144)
    """The SQL, inline."""
    config_map_key_ref: KeySelector | None = None
    """The SQL, from a ConfigMap key."""
    run_on_change: bool = False
    """Run the step again when its SQL changes (default false: a step that ran stays done)."""


class Backoff(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.initialSeconds) || !has(self.maxSeconds) || "
                "self.initialSeconds <= self.maxSeconds",
                "backoff.initialSeconds must be <= maxSeconds",
                ".initialSeconds",
            )
        )
    )

    initial_seconds: int = Field(default=5, ge=1, le=3600)
    """Wait before the first retry of a failed step; it doubles with each further failure."""
    max_seconds: int = Field(default=300, ge=1, le=86400)
    """The longest wait between retries."""


def _unique(field: str, what: str, key: str = "name") -> dict[str, str]:
    return rule(
        f"!has(self.{field}) || self.{field}.all(a, self.{field}.exists_one(b, b.{key} == a.{key}))",
        f"{field}[].{key}: each {what} can be listed once",
        f".{field}",
    )


class DorisInitializerSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            _unique("sql", "step name"),
            rule(
                "!has(self.databases) || self.databases.all(a, self.databases.exists_one(b, b == a))",
                "databases: each database can be listed once",
                ".databases",
            ),
            rule(
                "!has(self.users) || self.users.all(a, self.users.exists_one(b, b.name == a.name && "
                "(has(b.host) ? b.host : '%') == (has(a.host) ? a.host : '%')))",
                "users: each user (name and host) can be listed once",
                ".users",
            ),
        )
    )

    cluster: str = Field(min_length=1, max_length=63, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    """The DorisCluster to initialize, in the same namespace."""
    root_password: PasswordSource | None = None
    """root's password.  If the DorisCluster's authSecret names root, this must be that Secret
    (key `password`), so that the operator keeps its access."""
    admin_password: PasswordSource | None = None
    """admin's password (left as it is when unset)."""
    users: list[User] | None = Field(default=None, max_length=100)
    databases: list[DatabaseName] | None = Field(default=None, max_length=100)
    """Databases created if absent."""
    sql: list[SqlStep] | None = Field(default=None, max_length=100)
    """SQL steps, run in order after the passwords, databases and users."""
    max_retries: int = Field(default=10, ge=0, le=1000)
    """How often a failed step is retried before the initializer waits for a change of the spec."""
    backoff: Backoff | None = None
    """Wait between retries (default 5s doubling up to 300s)."""

    def effective_backoff(self) -> Backoff:
        return self.backoff or Backoff()


# ---- status -------------------------------------------------------------------------------------------

StepResult = Literal["Applied", "Running", "Failed", "Refused", "Pending"]


class SecretApplied(StatusModel):
    """Which Secret version a password step applied: never the value, only a salted hash of it."""

    name: str
    key: str
    resource_version: str | None = None
    hash: str


class StepStatus(StatusModel):
    name: str
    """`root-password`, `admin-password`, `database/<db>`, `user/<name>@<host>`, `sql/<step>`."""
    hash: str
    """Hash of what the step runs (its statements; for passwords, of the Secret's value)."""
    result: StepResult
    applied_at: str | None = None
    message: str = ""
    """Doris's answer: its error message when the step failed."""
    attempts: int = 0
    """Failed attempts of this content (reset when it changes)."""
    last_attempt_at: str | None = None
    statements_applied: int | None = None
    """How many of the step's statements have run (a restart carries on after them)."""
    statements: int | None = None
    prefix_hash: str | None = None
    """Hash of the statements that have run: a step changed after them carries on after them."""
    secrets: list[SecretApplied] | None = None


class DorisInitializerStatus(StatusModel):
    phase: str | None = None
    """Waiting, Applying, Applied or Failed."""
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    steps: list[StepStatus] | None = None
    applied: str | None = None
    """`applied/total` steps, for kubectl get."""


class DorisInitializer(Named, Model):
    api_version: Literal["doris.selectdb.com/v1"] = "doris.selectdb.com/v1"
    kind: Literal["DorisInitializer"] = "DorisInitializer"
    metadata: ObjectMeta
    spec: DorisInitializerSpec
    status: DorisInitializerStatus | None = None

    crd_plural: ClassVar[str] = PLURAL


def privilege_ok(privilege: str) -> bool:
    return re.sub(r"\s+", " ", privilege.strip()).upper() in PRIVILEGES
