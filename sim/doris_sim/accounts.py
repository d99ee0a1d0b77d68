"""Users, roles, privileges, databases and tables of the simulated FE, and the statements that change
them: CREATE/DROP USER, SET PASSWORD, ALTER USER, GRANT, CREATE ROLE, CREATE DATABASE and a minimal
CREATE TABLE, with Doris's error codes and texts (fe-core ErrorCode.java, Auth.java, UserManager.java,
RoleManager.java, InternalCatalog.java).

Passwords are kept as Doris keeps them: the mysql_native_password hash SHA1(SHA1(password)), never the
plain text.  A new cluster has Doris's two built-in users, ``root`` (operator role: every privilege) and
``admin`` (admin role: ADMIN_PRIV), both without a password.
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .model import SimSqlError, _ddl_error

if TYPE_CHECKING:
    from .sql import _Parser

ERR_DB_CREATE_EXISTS = 1007
ERR_DBACCESS_DENIED_ERROR = 1044
ERR_NO_DB_ERROR = 1046
ERR_BAD_DB_ERROR = 1049
ERR_TABLE_EXISTS_ERROR = 1050
ERR_SPECIFIC_ACCESS_DENIED_ERROR = 1227
ERR_CANNOT_USER = 1396
ERR_PASSWD_LENGTH = 1372

PRIVILEGES = (
    "NODE_PRIV", "ADMIN_PRIV", "GRANT_PRIV", "SELECT_PRIV", "LOAD_PRIV", "ALTER_PRIV", "CREATE_PRIV",
    "DROP_PRIV", "USAGE_PRIV", "SHOW_VIEW_PRIV",
)  # fmt: skip
_ALL = frozenset(PRIVILEGES) - {"NODE_PRIV"}
_BUILTIN_ROLES = {"operator": frozenset(PRIVILEGES), "admin": frozenset(_ALL)}


def auth_string(password: str) -> str:
    """What mysql-mimic and Doris compare a scramble with: hex SHA1(SHA1(password)); "" for none."""
    if not password:
        return ""
    return hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest()


@dataclass
class _User:
    name: str
    host: str
    auth: str = ""
    """hex SHA1(SHA1(password)), "" without a password."""
    roles: set[str] = field(default_factory=set)
    grants: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    """(catalog, db, table) -> privileges."""

    def ident(self) -> str:
        return f"'{self.name}'@'{self.host}'"


@dataclass
class _Role:
    name: str
    grants: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)


class Accounts:
    """The FE's users, roles and catalog (databases with their tables), thread-safe."""

    def __init__(self, users: Mapping[str, str] | None = None) -> None:
        self._lock = threading.RLock()
        self.users: dict[tuple[str, str], _User] = {}
        self.roles: dict[str, _Role] = {name: _Role(name) for name in _BUILTIN_ROLES}
        self.databases: dict[str, dict[str, list[str]]] = {"information_schema": {}, "mysql": {}}
        """database -> table -> column names."""
        for name, password in (users if users is not None else {"root": "", "admin": ""}).items():
            self.set_password(name, "%", password, create=True)
        if ("root", "%") in self.users:
            self.users[("root", "%")].roles.add("operator")
        if ("admin", "%") in self.users:
            self.users[("admin", "%")].roles.add("admin")

    # -- Python API (tests and images) ---------------------------------------------------------

    def set_password(self, name: str, host: str, password: str, create: bool = True) -> None:
        with self._lock:
            user = self.users.get((name, host))
            if user is None:
                if not create:
                    raise KeyError(name)
                user = self.users[(name, host)] = _User(name, host)
            user.auth = auth_string(password)

    def auth_string_of(self, name: str, peer: str = "127.0.0.1") -> str | None:
        """The hash a login as ``name`` from ``peer`` is checked against; None for an unknown user."""
        with self._lock:
            user = self._match(name, peer)
            return None if user is None else user.auth

    def exists(self, name: str, host: str = "%") -> bool:
        with self._lock:
            return (name, host) in self.users

    def privileges(self, name: str, host: str = "%") -> dict[str, set[str]]:
        """``catalog.db.table`` -> privileges, the user's own and its roles' (tests)."""
        with self._lock:
            user = self.users[(name, host)]
            out: dict[str, set[str]] = {}
            for grants in [user.grants] + [self.roles[r].grants for r in user.roles if r in self.roles]:
                for target, privs in grants.items():
                    out.setdefault(".".join(target), set()).update(privs)
            for role in user.roles:
                if role in _BUILTIN_ROLES:
                    out.setdefault("*.*.*", set()).update(_BUILTIN_ROLES[role])
            return out

    def roles_of(self, name: str, host: str = "%") -> set[str]:
        with self._lock:
            return set(self.users[(name, host)].roles)

    def _match(self, name: str, peer: str) -> _User | None:
        candidates = [u for u in self.users.values() if u.name == name]
        for user in sorted(candidates, key=lambda u: u.host == "%"):
            pattern = user.host.replace("%", "*").replace("_", "?")
            if user.host == "%" or fnmatch.fnmatchcase(peer, pattern) or user.host in (peer, "localhost"):
                return user
        return None

    # -- privilege checks ----------------------------------------------------------------------

    def _global(self, who: str | None) -> set[str]:
        """Global privileges of the session's user (None: an in-process caller, i.e. root)."""
        if who is None:
            return set(PRIVILEGES)
        user = self._match(who, "127.0.0.1")
        if user is None:
            return set()
        privs: set[str] = set()
        for role in user.roles:
            privs |= set(_BUILTIN_ROLES.get(role, ()))
            privs |= self.roles[role].grants.get(("*", "*", "*"), set()) if role in self.roles else set()
        privs |= user.grants.get(("*", "*", "*"), set())
        return privs

    def _db_privs(self, who: str | None, db: str) -> set[str]:
        privs = self._global(who)
        user = self._match(who, "127.0.0.1") if who is not None else None
        if user is not None:
            for grants in [user.grants] + [self.roles[r].grants for r in user.roles if r in self.roles]:
                for (ctl, gdb, _tbl), granted in grants.items():
                    if ctl in ("*", "internal") and gdb in ("*", db):
                        privs |= granted
        return privs

    def require_grant(self, who: str | None) -> None:
        if not self._global(who) & {"GRANT_PRIV", "ADMIN_PRIV"}:
            raise _ddl_error(
                "Access denied; you need (at least one of) the (GRANT) privilege(s) for this operation",
                ERR_SPECIFIC_ACCESS_DENIED_ERROR,
            )

    def require_create(self, who: str | None, db: str) -> None:
        if not self._db_privs(who, db) & {"CREATE_PRIV", "ADMIN_PRIV"}:
            raise _ddl_error(
                f"Access denied for user '{who}'@'%' to database '{db}'", ERR_DBACCESS_DENIED_ERROR
            )


# ---- parsing helpers ---------------------------------------------------------------------------


def _identity(p: _Parser) -> tuple[str, str]:
    """``'name'@'host'``, ``name@'host'``, ``'name'`` or ``name`` (host ``%``)."""
    name = p.name()
    host = "%"
    if p.accept("@"):
        host = p.name()
    return name, host


def _ident(name: str, host: str) -> str:
    return f"'{name}'@'{host}'"


def _password(p: _Parser) -> str:
    """After IDENTIFIED BY: ``[PASSWORD] 'text'`` -> the auth string."""
    if p.accept("PASSWORD"):
        return _hashed(p.string())
    return auth_string(p.string())


def _hashed(value: str) -> str:
    """A password hash as Doris takes it: ``*`` and 40 hex digits (empty: no password)."""
    if not value:
        return ""
    if len(value) != 41 or not value.startswith("*"):
        raise _ddl_error("Password hash should be a 41-digit hexadecimal number", ERR_PASSWD_LENGTH)
    try:
        bytes.fromhex(value[1:])
    except ValueError:
        raise _ddl_error("Password hash should be a 41-digit hexadecimal number", ERR_PASSWD_LENGTH) from None
    return value[1:].lower()


def _target(p: _Parser) -> tuple[str, str, str]:
    """``db.tbl`` or ``ctl.db.tbl`` (each part a name or ``*``) -> (catalog, db, table)."""
    parts: list[str] = []
    while True:
        token = p.next()
        if token.kind == "punct" and token.text == "*":
            parts.append("*")
        elif token.kind == "word":
            parts.extend(token.text.split("."))
        elif token.kind in ("quoted", "string"):
            parts.append(token.text)
        else:
            raise p.error(token)
        if not p.accept("."):
            break
    if len(parts) == 2:
        parts.insert(0, "internal")
    if len(parts) != 3:
        raise p.error()
    return parts[0], parts[1], parts[2]


def _privileges(p: _Parser) -> set[str]:
    privs: set[str] = set()
    while True:
        token = p.next()
        word = token.text.upper()
        if token.kind != "word":
            raise p.error(token)
        if word == "ALL":
            p.accept("PRIVILEGES")
            privs |= _ALL
        elif word in PRIVILEGES:
            privs.add(word)
        else:
            raise _ddl_error(f"Unknown privilege type {token.text}")
        if not p.accept(","):
            return privs


# ---- statements ----------------------------------------------------------------------------------


def handles(p: _Parser) -> bool:
    """Whether the statement is one of this module's (looks ahead only)."""
    first, second = p.peek().text.upper(), p.peek(1).text.upper()
    if p.peek().kind != "word":
        return False
    if first in ("GRANT",):
        return True
    if first == "SET" and second == "PASSWORD":
        return True
    objects = ("USER", "ROLE", "DATABASE", "SCHEMA", "TABLE")
    return first in ("CREATE", "DROP", "ALTER") and second in objects


def statement(acc: Accounts, p: _Parser, who: str | None, database: str | None) -> None:
    with acc._lock:
        if p.accept("SET", "PASSWORD"):
            return _set_password(acc, p, who)
        if p.accept("GRANT"):
            return _grant(acc, p, who)
        if p.accept("CREATE", "USER"):
            return _create_user(acc, p, who)
        if p.accept("DROP", "USER"):
            return _drop_user(acc, p, who)
        if p.accept("ALTER", "USER"):
            return _alter_user(acc, p, who)
        if p.accept("CREATE", "ROLE"):
            return _create_role(acc, p, who)
        if p.accept("CREATE", "DATABASE") or p.accept("CREATE", "SCHEMA"):
            return _create_database(acc, p, who)
        if p.accept("CREATE", "TABLE"):
            return _create_table(acc, p, who, database)
        raise p.error()


def _if(p: _Parser, *words: str) -> bool:
    return p.accept("IF", *words)


def _set_password(acc: Accounts, p: _Parser, who: str | None) -> None:
    """SET PASSWORD [FOR user_identity] = PASSWORD('plain') | 'hash'."""
    if p.accept("FOR"):
        name, host = _identity(p)
        if who is not None and name != who:
            acc.require_grant(who)
    else:
        me = acc._match(who or "root", "127.0.0.1")
        name, host = (me.name, me.host) if me else (who or "root", "%")
    p.expect("=")
    if p.accept("PASSWORD"):
        p.expect("(")
        value = auth_string(p.string())
        p.expect(")")
    else:
        value = _hashed(p.string())
    p.end()
    user = acc.users.get((name, host))
    if user is None:
        raise _ddl_error(f"user {_ident(name, host)} does not exist")
    user.auth = value


def _create_user(acc: Accounts, p: _Parser, who: str | None) -> None:
    """CREATE USER [IF NOT EXISTS] user_identity [IDENTIFIED BY [PASSWORD] 'pw'] [DEFAULT ROLE 'r']."""
    acc.require_grant(who)
    quiet = _if(p, "NOT", "EXISTS")
    name, host = _identity(p)
    auth = ""
    role = None
    if p.accept("IDENTIFIED", "BY"):
        auth = _password(p)
    if p.accept("DEFAULT", "ROLE"):
        role = p.name()
    p.skip_rest()  # PASSWORD_EXPIRE, FAILED_LOGIN_ATTEMPTS, COMMENT ...
    if role is not None and role not in acc.roles:
        raise _ddl_error(f"Role: {role} does not exist")
    if (name, host) in acc.users:
        if quiet:
            return
        raise _ddl_error(f"User {_ident(name, host)} already exist")
    user = acc.users[(name, host)] = _User(name, host, auth)
    if role is not None:
        user.roles.add(role)


def _drop_user(acc: Accounts, p: _Parser, who: str | None) -> None:
    acc.require_grant(who)
    quiet = _if(p, "EXISTS")
    name, host = _identity(p)
    p.end()
    if name in ("root", "admin"):
        raise _ddl_error(f"Can not drop user {name}", ERR_CANNOT_USER)
    if (name, host) not in acc.users:
        if quiet:
            return
        raise _ddl_error(f"User `{name}`@`{host}` does not exist.")
    del acc.users[(name, host)]


def _alter_user(acc: Accounts, p: _Parser, who: str | None) -> None:
    """ALTER USER [IF EXISTS] user_identity IDENTIFIED BY [PASSWORD] 'pw' (other options ignored)."""
    acc.require_grant(who)
    quiet = _if(p, "EXISTS")
    name, host = _identity(p)
    auth = None
    if p.accept("IDENTIFIED", "BY"):
        auth = _password(p)
    p.skip_rest()
    user = acc.users.get((name, host))
    if user is None:
        if quiet:
            return
        raise _ddl_error(f"Operation ALTER USER failed for {_ident(name, host)}", ERR_CANNOT_USER)
    if auth is not None:
        user.auth = auth


def _create_role(acc: Accounts, p: _Parser, who: str | None) -> None:
    acc.require_grant(who)
    quiet = _if(p, "NOT", "EXISTS")
    name = p.name()
    p.skip_rest()  # COMMENT
    if name in acc.roles:
        if quiet:
            return
        raise _ddl_error(f"Role {name} already exists")  # Doris prints the Role object here
    acc.roles[name] = _Role(name)


def _grant(acc: Accounts, p: _Parser, who: str | None) -> None:
    """GRANT privileges ON [ctl.]db.tbl TO user_identity | ROLE 'r', or GRANT 'r'[, ...] TO user."""
    acc.require_grant(who)
    if p.peek().kind in ("string", "quoted"):
        roles = [p.name()]
        while p.accept(","):
            roles.append(p.name())
        p.expect("TO")
        name, host = _identity(p)
        p.end()
        user = acc.users.get((name, host))
        if user is None:
            raise _ddl_error(f"user: {_ident(name, host)} does not exist")
        for role in roles:
            if role not in acc.roles:
                raise _ddl_error(f"role:{role} does not exist")
        user.roles.update(roles)
        return
    privs = _privileges(p)
    p.expect("ON")
    target = _target(p)
    p.expect("TO")
    holder: Any
    if p.accept("ROLE"):
        role = p.name()
        p.end()
        holder = acc.roles.get(role)
        if holder is None:
            raise _ddl_error(f"Role {role} does not exist")
    else:
        name, host = _identity(p)
        p.end()
        holder = acc.users.get((name, host))
        if holder is None:
            raise _ddl_error(f"user {_ident(name, host)} does not exist")
    ctl, db, tbl = target
    if "CREATE_PRIV" not in privs and db != "*":
        if ctl not in ("internal", "*"):
            raise _ddl_error(f"catalog:{ctl} does not exist")
        if db not in acc.databases:
            raise _ddl_error(f"database:{db} does not exist")
        if tbl != "*" and tbl not in acc.databases[db]:
            raise _ddl_error(f"table:{tbl} does not exist")
    holder.grants.setdefault(target, set()).update(privs)


def _create_database(acc: Accounts, p: _Parser, who: str | None) -> None:
    quiet = _if(p, "NOT", "EXISTS")
    name = p.name()
    if p.accept("PROPERTIES"):
        p.properties()
    p.end()
    acc.require_create(who, name)
    if name in acc.databases:
        if quiet:
            return
        raise _ddl_error(f"Can't create database '{name}'; database exists", ERR_DB_CREATE_EXISTS)
    acc.databases[name] = {}


def _create_table(acc: Accounts, p: _Parser, who: str | None, database: str | None) -> None:
    """CREATE TABLE [IF NOT EXISTS] [db.]tbl (col type ..., ...) ...: the name and the columns are
    checked, the rest (keys, distribution, properties) is accepted as it is."""
    quiet = _if(p, "NOT", "EXISTS")
    token = p.next()
    if token.kind not in ("word", "quoted"):
        raise p.error(token)
    parts = token.text.split(".") if token.kind == "word" else [token.text]
    if p.accept("."):
        parts.append(p.name())
    if len(parts) == 1:
        if database is None:
            raise _ddl_error("No database selected", ERR_NO_DB_ERROR)
        parts.insert(0, database)
    db, table = parts[-2], parts[-1]
    p.expect("(")
    columns: list[str] = []
    depth, expect_name = 0, True
    while True:
        token = p.next()
        if token.kind == "eof":
            raise p.error(token)
        if token.kind == "punct" and token.text == "(":
            depth += 1
        elif token.kind == "punct" and token.text == ")":
            if depth == 0:
                break
            depth -= 1
        elif token.kind == "punct" and token.text == "," and depth == 0:
            expect_name = True
            continue
        elif expect_name:
            if token.kind not in ("word", "quoted"):
                raise p.error(token)
            if token.text.upper() not in ("INDEX", "KEY", "PRIMARY", "UNIQUE"):
                columns.append(token.text)
        expect_name = False
    p.skip_rest()
    if not columns:
        raise _ddl_error("A table must have at least 1 column", 1113)
    if db not in acc.databases:
        raise _ddl_error(f"Unknown database '{db}'", ERR_BAD_DB_ERROR)
    acc.require_create(who, db)
    seen: set[str] = set()
    for column in columns:
        if column.lower() in seen:
            raise _ddl_error(f"Duplicate column name '{column}'", 1060)
        seen.add(column.lower())
    if table in acc.databases[db]:
        if quiet:
            return
        raise _ddl_error(f"Table '{table}' already exists", ERR_TABLE_EXISTS_ERROR)
    acc.databases[db][table] = columns


__all__ = ["Accounts", "SimSqlError", "auth_string", "handles", "statement"]
