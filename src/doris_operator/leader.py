"""Lease-based leader election (coordination.k8s.io/v1): only the holder of the Lease reconciles; a
standby takes over when the holder stops renewing it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from .metrics import LEADER

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.leading = False
        self.lost = False

    async def _try_acquire(self) -> bool:
        """One attempt to take or keep the Lease; optimistic concurrency settles races between replicas."""
        now = _now()
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
            lease = Lease(
                metadata=ObjectMeta(name=self.name, namespace=self.namespace),
                spec=LeaseSpec(
                    holderIdentity=self.identity,
                    leaseDurationSeconds=self.lease_seconds,
                    acquireTime=now,
                    renewTime=now,
                    leaseTransitions=0,
                ),
            )
            try:
                await self.client.create(lease)
            except ApiError as create_err:
                if create_err.status.code == 409:
                    return False
                raise
            return True
        spec = lease.spec or LeaseSpec()
        held_by_me = spec.holderIdentity == self.identity
        renewed = spec.renewTime or spec.acquireTime
        duration = spec.leaseDurationSeconds or self.lease_seconds
        expired = renewed is None or renewed + dt.timedelta(seconds=duration) < now
        if not held_by_me and not expired and spec.holderIdentity:
            return False
        if not held_by_me:
            spec.acquireTime = now
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
            spec.holderIdentity = self.identity
        spec.renewTime = now
        spec.leaseDurationSeconds = self.lease_seconds
        lease.spec = spec
        try:
            await self.client.replace(lease)  # carries resourceVersion: a concurrent writer gets 409
        except ApiError as err:
            if err.status.code == 409:
                return False
            raise
        return True

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Wait for the Lease, run ``lead()`` while holding it; return when leadership is lost or
        ``lead()`` ends (the caller exits, and a restarted replica comes back as a standby)."""
        while not await self._attempt():
            await asyncio.sleep(self.renew_seconds)
        log.info("%s became the leader (lease %s/%s)", self.identity, self.namespace, self.name)
        self.leading = True
        LEADER.set(1)
        task = asyncio.create_task(lead())
        try:
            last_renewal = asyncio.get_running_loop().time()
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.renew_seconds)
                if done:
                    break
                if await self._attempt():
                    last_renewal = asyncio.get_running_loop().time()
                elif asyncio.get_running_loop().time() - last_renewal > self.lease_seconds:
                    log.error("%s lost the lease; stopping", self.identity)
                    self.lost = True
                    break
        finally:
            self.leading = False
            LEADER.set(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _attempt(self) -> bool:
        try:
            return await self._try_acquire()
        except (ApiError, OSError) as err:
            log.warning("lease %s/%s: %s", self.namespace, self.name, err)
            return False
        except Exception as err:  # httpx transport errors and the like
            log.warning("lease %s/%s: %s", self.namespace, self.name, err)
            return False
