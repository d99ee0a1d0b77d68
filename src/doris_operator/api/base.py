"""Shared pieces of the API models: the base model and the schema markers for the CRD generator."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, WithJsonSchema
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected.

    Rejecting them makes typos visible in ``render`` and in the webhook.  A stored object may still carry
    fields these models don't know when a newer CRD is installed: the controller parses those leniently
    (:mod:`.lenient`: dropped, logged once), so version skew never parks a cluster as InvalidSpec.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        defer_build=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: aliases, no unset or null fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?\d+))?$")
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)"
    r"|(\.[0-9]+))))?$"
)


def _check_quantity(value: int | float | str) -> int | float | str:
    if isinstance(value, str) and not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 8, 500m, 16Gi)")
    if isinstance(value, int | float) and value < 0:
        raise ValueError(f"{value!r} must not be negative")
    return value


Quantity = Annotated[
    int | float | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity: ``8``, ``0.5``, ``"500m"``, ``"16Gi"``."""

IntOrString = Annotated[
    int | str,
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}),
]

FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""An embedded Kubernetes object the apiserver validates when it is applied inside a pod or service
(affinity, security contexts, HPA metrics, the pod template overlay).  Typed in full, these schemas
are what makes the official CRD 636 KB; the StatefulSet the operator applies is validated by the
apiserver, and the controller reports such errors in a Degraded condition."""

StringMap = dict[str, str]
