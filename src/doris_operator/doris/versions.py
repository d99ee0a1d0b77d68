"""Doris versions from image tags and from the ``Version`` column, and Doris's upgrade rule: never
skip a minor version (3.0 -> 3.1 -> 3.2; patch-level jumps within x.y are fine).  Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable

Version = tuple[int, int, int]
_IMAGE_TAG_RE = re.compile(r"(?<![0-9])(\d+)\.(\d+)(?:\.(\d+))?")
_DORIS_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def image_version(image: str) -> Version | None:
    """The Doris version in an image's tag (``selectdb/doris.be-ubuntu:2.1.8`` -> 2.1.8,
    ``apache/doris:be-3.0.3`` -> 3.0.3), or None (no tag, a digest, ``latest``)."""
    ref = image.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return None
    match = _IMAGE_TAG_RE.search(tag)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def doris_version(text: str | None) -> Version | None:
    """``doris-2.1.7-rc03-443e87e203`` -> 2.1.7; None for ``""`` (no heartbeat yet) or unknown text."""
    match = _DORIS_VERSION_RE.search(text or "")
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def show(version: Version) -> str:
    return ".".join(map(str, version))


def skipped_minor(running: Iterable[Version], target: Version) -> str | None:
    """Why going from the running versions to ``target`` skips a minor version, else None.

    A downgrade, the same minor, the next minor, and the next major's ``.0`` are not skips."""
    versions = sorted(set(running))
    if not versions:
        return None
    low = versions[0]
    (a, b, _), (c, d, _) = low, target
    if (c, d) <= (a, b):
        return None
    if c == a and d == b + 1:
        return None
    if c == a + 1 and d == 0:
        return None
    return (
        f"the image is Doris {show(target)} but Doris {show(low)} runs: upgrading skips a minor "
        f"version (Doris upgrades one minor version at a time, e.g. {a}.{b} -> {a}.{b + 1})"
    )
