"""Lease-based leader election (coordination.k8s.io/v1) with client-go's semantics: only the holder of
the Lease reconciles.

- A standby judges the Lease expired ``leaseDurationSeconds`` after it *observed* the Lease's record
  change, by its own monotonic clock, never by comparing the holder's ``renewTime`` with its clock (the
  two clocks may disagree).
- The leader renews every ``retry_period``; when it could not renew within ``renew_deadline`` (shorter
  than the lease duration) it stops leading.  Its writes stop earlier still: each successful renewal
  grants the :class:`~doris_operator.k8s.Fence` until ``renew_deadline`` after the moment the renewal
  *started*, so the fence closes by itself, even while a reconcile is stuck, before any standby can
  see the Lease expire (at least ``leaseDuration`` after the renewal was written)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from .k8s import Fence
from .metrics import LEADER

log = logging.getLogger(__name__)

Record = tuple[Any, ...]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _record(spec: LeaseSpec) -> Record:
    return (
        spec.holderIdentity,
        spec.leaseDurationSeconds,
        spec.acquireTime,
        spec.renewTime,
        spec.leaseTransitions,
    )


class LeaderElector:
    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        fence: Fence | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration, got "
                f"{retry_period} / {renew_deadline} / {lease_duration}"
            )
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.fence = fence or Fence(elected=True)
        self.clock = clock
        self.leading = False
        self.lost = False
        self._observed: Record | None = None
        self._observed_at = 0.0

    def _observe(self, record: Record) -> None:
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock()

    def held_by_other(self, spec: LeaseSpec) -> bool:
        """Another replica holds the Lease and it has not expired, as judged from when this replica
        saw its record last change."""
        if not spec.holderIdentity or spec.holderIdentity == self.identity:
            return False
        duration = spec.leaseDurationSeconds or self.lease_duration
        return self._observed_at + duration > self.clock()

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; optimistic concurrency settles races."""
        now = _now()
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
            spec = LeaseSpec(
                holderIdentity=self.identity,
                leaseDurationSeconds=int(self.lease_duration),
                acquireTime=now,
                renewTime=now,
                leaseTransitions=0,
            )
            try:
                await self.client.create(
                    Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace), spec=spec)
                )
            except ApiError as create_err:
                if create_err.status.code == 409:
                    return False
                raise
            self._observe(_record(spec))
            return True
        spec = lease.spec or LeaseSpec()
        self._observe(_record(spec))
        if self.held_by_other(spec):
            return False
        if spec.holderIdentity != self.identity:
            spec.acquireTime = now
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
            spec.holderIdentity = self.identity
        spec.renewTime = now
        spec.leaseDurationSeconds = int(self.lease_duration)
        lease.spec = spec
        try:
            await self.client.replace(lease)  # carries resourceVersion: a concurrent writer gets 409
        except ApiError as err:
            if err.status.code == 409:
                return False
            raise
        self._observe(_record(spec))
        return True

    async def _attempt(self, timeout: float | None = None) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), timeout)
        except TimeoutError:
            log.warning("lease %s/%s: no answer in time", self.namespace, self.name)
            return False
        except ApiError as err:
            log.warning("lease %s/%s: %s", self.namespace, self.name, err.status.message)
            return False
        except Exception as err:  # httpx transport errors and the like
            log.warning("lease %s/%s: %s", self.namespace, self.name, err)
            return False

    def _wait(self) -> float:
        return self.retry_period * (1 + 0.2 * random.random())

    async def acquire(self) -> None:
        while True:
            started = self.clock()
            if await self._attempt(self.renew_deadline):
                self.fence.grant(started + self.renew_deadline)
                return
            await asyncio.sleep(self._wait())

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Wait for the Lease, run ``lead()`` while holding it; return when leadership is lost or
        ``lead()`` ends (the caller exits, and a restarted replica comes back as a standby)."""
        await self.acquire()
        log.info("%s became the leader (lease %s/%s)", self.identity, self.namespace, self.name)
        self.leading = True
        LEADER.set(1)
        deadline = self.clock() + self.renew_deadline
        task = asyncio.create_task(lead())
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.retry_period)
                if done:
                    break
                started = self.clock()
                if await self._attempt(max(0.05, deadline - started)):
                    deadline = started + self.renew_deadline
                    self.fence.grant(deadline)
                elif self.clock() >= deadline:
                    log.error(
                        "%s could not renew the lease within %ss; it stops leading",
                        self.identity,
                        self.renew_deadline,
                    )
                    self.lost = True
                    break
        finally:
            self.fence.revoke()
            self.leading = False
            LEADER.set(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if not self.lost:
                await self.release()

    async def release(self) -> None:
        """A clean stop gives the Lease up (empty holder), so a standby takes over at once instead of
        after a lease duration; the fence is closed before.  Best effort."""
        try:
            lease = await asyncio.wait_for(
                self.client.get(Lease, self.name, namespace=self.namespace), self.retry_period
            )
            spec = lease.spec or LeaseSpec()
            if spec.holderIdentity != self.identity:
                return
            now = _now()
            spec.holderIdentity = None
            spec.leaseDurationSeconds = 1
            spec.acquireTime = now
            spec.renewTime = now
            lease.spec = spec
            await asyncio.wait_for(self.client.replace(lease), self.retry_period)
            log.info("%s released the lease", self.identity)
        except Exception as err:  # the standby waits a lease duration instead
            log.warning("could not release the lease %s/%s: %s", self.namespace, self.name, err)
