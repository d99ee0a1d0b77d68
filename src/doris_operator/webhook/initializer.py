"""Admission for DorisInitializer: validation (the same :func:`parse_initializer` the controller uses)
and defaulting (the defaults the models apply, written into the stored object)."""

from __future__ import annotations

from typing import Any

from ..api import doriscluster as dc
from ..api import dorisinitializer as di
from ..api.initializer_validation import parse_initializer
from ..api.validation import InvalidResource
from .admission import AdmissionKind, Request, Verdict

Obj = dict[str, Any]


def validate_initializer(req: Request) -> Verdict:
    obj = req.object or {}
    old = req.old_object
    if req.operation == "UPDATE" and old is not None and old.get("spec") == obj.get("spec"):
        return Verdict()  # metadata or status only: never blocked
    verdict = Verdict()
    try:
        parse_initializer(obj)
    except InvalidResource as err:
        verdict.problems.extend(err.problems)
    return verdict


def initializer_defaults(obj: Obj) -> list[Obj]:
    """JSONPatch operations for the defaults: users[].host `%`, sql[].runOnChange false, maxRetries 10,
    backoff 5s..300s.  Each is what the controller assumes when the field is absent."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    ops: list[Obj] = []
    for i, user in enumerate(spec.get("users") or []):
        if isinstance(user, dict) and user.get("host") is None:
            ops.append({"op": "add", "path": f"/spec/users/{i}/host", "value": "%"})
    for i, step in enumerate(spec.get("sql") or []):
        if isinstance(step, dict) and step.get("runOnChange") is None:
            ops.append({"op": "add", "path": f"/spec/sql/{i}/runOnChange", "value": False})
    if spec.get("maxRetries") is None:
        ops.append(
            {
                "op": "add",
                "path": "/spec/maxRetries",
                "value": di.DorisInitializerSpec.model_fields["max_retries"].default,
            }
        )
    backoff = spec.get("backoff")
    defaults = di.Backoff()
    if backoff is None:
        ops.append(
            {
                "op": "add",
                "path": "/spec/backoff",
                "value": {"initialSeconds": defaults.initial_seconds, "maxSeconds": defaults.max_seconds},
            }
        )
    elif isinstance(backoff, dict):
        for key, value in (
            ("initialSeconds", defaults.initial_seconds),
            ("maxSeconds", defaults.max_seconds),
        ):
            if backoff.get(key) is None:
                ops.append({"op": "add", "path": f"/spec/backoff/{key}", "value": value})
    return ops


def default_initializer(req: Request) -> list[Obj]:
    return initializer_defaults(req.object or {})


DORIS_INITIALIZER = AdmissionKind(
    group=dc.GROUP,
    version=dc.VERSION,
    kind=di.KIND,
    plural=di.PLURAL,
    validate=validate_initializer,
    default=default_initializer,
)
