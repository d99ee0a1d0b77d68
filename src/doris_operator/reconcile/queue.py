"""A work queue of cluster keys: a key is never handed to two workers at once, a key added while it is
being worked on is handed out again afterwards, and adds of a waiting key collapse into one.

Keys woken by an event go before keys a resync merely revisits, so under load a cluster whose pods just
changed isn't kept waiting behind a round of no-op resyncs; and at most ``resync_slots`` resync keys are
worked on at once, so the workers left answer events at once (all workers share one event loop: a
spec change's reconcile running beside four resyncs gets a fifth of it)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, resync_slots: int | None = None) -> None:
        self.resync_slots = resync_slots
        """How many keys from the resync line may be worked on at once (None: no limit)."""
        self._resync_active: set[K] = set()
        self._urgent: deque[K] = deque()
        self._resync: deque[K] = deque()
        self._waiting: dict[K, bool] = {}
        """key -> urgent, for keys waiting to be handed out."""
        self._active: set[K] = set()
        self._again: dict[K, bool] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()

    def add(self, key: K, urgent: bool = True) -> None:
        if key in self._active:
            self._again[key] = self._again.get(key, False) or urgent
        elif key not in self._waiting:
            self._waiting[key] = urgent
            (self._urgent if urgent else self._resync).append(key)
            self._wakeup.set()
        elif urgent and not self._waiting[key]:
            self._waiting[key] = True  # promoted: its place in the resync line is skipped later
            self._urgent.append(key)
            self._wakeup.set()

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds; an earlier pending delayed add wins."""
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None and existing.when() <= loop.time() + delay:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        while True:
            for line, urgent in ((self._urgent, True), (self._resync, False)):
                if (
                    not urgent
                    and self.resync_slots is not None
                    and len(self._resync_active) >= self.resync_slots
                ):
                    break
                while line:
                    key = line.popleft()
                    if self._waiting.get(key) is urgent:  # else a stale entry of a promoted key
                        del self._waiting[key]
                        self._active.add(key)
                        if not urgent:
                            self._resync_active.add(key)
                        return key
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, key: K) -> None:
        self._active.discard(key)
        if key in self._resync_active:
            self._resync_active.discard(key)
            if self._resync:
                self._wakeup.set()  # a resync slot is free
        if key in self._again:
            self.add(key, self._again.pop(key))

    def forget(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def __len__(self) -> int:
        return len(self._waiting)
