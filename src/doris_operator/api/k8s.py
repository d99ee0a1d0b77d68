"""The small Kubernetes core types the DorisCluster embeds, typed so that mistakes name their field."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import FreeForm, Model, Quantity


class LocalObjectReference(Model):
    name: str = ""


class ResourceClaim(Model):
    name: str
    request: str | None = None


class EnvVar(Model):
    name: str = Field(min_length=1)
    value: str | None = None
    value_from: FreeForm | None = None
    """A source for the value (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef)."""


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute", ""] | None = None
    toleration_seconds: int | None = None


class HostAlias(Model):
    ip: str
    hostnames: list[str] | None = None


class VolumeResourceRequirements(Model):
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


class PersistentVolumeClaimSpec(Model):
    access_modes: (
        list[Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]] | None
    ) = None
    resources: VolumeResourceRequirements | None = None
    storage_class_name: str | None = None
    volume_mode: Literal["Filesystem", "Block"] | None = None
    volume_name: str | None = None
    volume_attributes_class_name: str | None = None
    selector: FreeForm | None = None
    data_source: FreeForm | None = None
    data_source_ref: FreeForm | None = None
