"""Waking cells when a Secret they may use appears, changes or goes.

A cell whose `secretRef` (or whose realm's `passwordSecretRef`) names a missing Secret
fails with reason SecretUnavailable and is retried with backoff; so that it starts as soon
as the Secret is created, without waiting for the backoff or a re-apply, this follower
watches every Secret and requeues this node's cells within the Secret's scope (its
stack, space or realm: exactly the cells whose lookup can find it). A changed value
reaches the cells the same way: the reconcile stages it again and, as the value is part
of the container's spec digest, recreates the containers that use it.
"""

from __future__ import annotations

import asyncio
import logging

from kukeon.api import SCOPE_PLACEHOLDER, Kind, Secret
from kukeon.store import Registry

from .layers import CellMembership, Trigger

log = logging.getLogger(__name__)


class SecretFollower:
    def __init__(self, *, registry: Registry, membership: CellMembership, trigger: Trigger) -> None:
        self.registry = registry
        self.membership = membership
        self.trigger = trigger

    def wake(self, secret: Secret) -> int:
        """Requeue this node's cells within ``secret``'s scope; how many."""
        scope = tuple(part for part in secret.metadata.scope() if part != SCOPE_PLACEHOLDER)
        cells = self.membership.keys_below(scope)
        for key in cells:
            self.trigger(Kind.CELL, key)
        return len(cells)

    async def follow(self, *, retry: float = 1.0) -> None:
        """Watch Secrets for good; a relist after any trouble (no event is acted on twice
        harmfully: a requeue of a converged cell changes nothing)."""
        relist = False
        while True:
            try:
                listing = await self.registry.list(Kind.SECRET)
                if relist:  # what changed while the watch was down went unseen
                    for secret in listing.items:
                        if isinstance(secret, Secret):
                            self.wake(secret)
                relist = True
                async for event in self.registry.watch(
                    Kind.SECRET, resource_version=listing.resource_version
                ):
                    if isinstance(event.object, Secret):
                        woken = self.wake(event.object)
                        log.debug(
                            "Secret %s %s: requeued %d cell(s)",
                            "/".join(event.object.metadata.scope()),
                            event.type.lower(),
                            woken,
                        )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.info("Secret watch interrupted (%r); relisting", error)
                await asyncio.sleep(retry)
