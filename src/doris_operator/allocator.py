"""The allocator and the garbage collector, set for a long-running asyncio process (figures:
docs/benchmarks.md, Memory; measured with bench/memory.py).

With glibc's defaults, after 50 DorisClusters converged the operator held 40 MiB of freed memory that
it never gave back (``malloc_trim(0)`` released it), most of it in the malloc arenas of the threads that
run blocking calls (``asyncio.to_thread``: the FE client, name lookups).  So: two arenas instead of up to
eight per core, and every 30 s a full collection then ``malloc_trim(0)``; the objects of start-up are
frozen first, so that collection scans only what came after.  Without glibc (musl, macOS) the allocator
calls do nothing."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""mallopt's parameter number (malloc.h)."""
ARENA_MAX = 2
TRIM_INTERVAL = 30.0
"""Seconds between two :func:`trim` calls of a running operator."""


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018  # glibc only
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def limit_arenas() -> bool:
    """At most :data:`ARENA_MAX` malloc arenas, unless ``MALLOC_ARENA_MAX`` says otherwise.  Before any
    thread starts: an arena made already stays."""
    if _LIBC is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, ARENA_MAX))


def freeze_startup() -> None:
    """Once, after the imports: the objects made so far (modules, classes, functions: about 76,000) move
    to the permanent generation, so no garbage collection scans them again (a full one took 250 ms
    before, 0.01 ms after, on the loaded 2-core test machine).  Memory is still freed by reference
    counting; only cycles among these objects would stay."""
    gc.collect()
    gc.freeze()


def trim() -> bool:
    """Give the memory glibc holds free back to the system (``malloc_trim(0)``, all arenas)."""
    return _LIBC is not None and bool(_LIBC.malloc_trim(0))


async def trim_every(interval: float) -> None:
    """Every ``interval`` seconds: a full garbage collection (reference cycles a reconcile left, such as
    exceptions and their tracebacks, wait for the rare automatic full collection otherwise), then
    :func:`trim`."""
    if _LIBC is None:
        return
    while True:
        await asyncio.sleep(interval)
        gc.collect()
        trim()
