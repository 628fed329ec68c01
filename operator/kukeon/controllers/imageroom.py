"""The image storage limits' accounting while imports and pulls run side by side.

A pull's or an import's blobs are known, with their sizes, before any is written (the
registry's manifest, the archive's index); what they add is checked against the realm's
and the node's limits then, and claimed until the write ends: a later check counts the
claimed blobs as held, so two writes at once never both count on the same room. Only the
check and the claim are serialised, node-wide, never the fetching: a registry dripping
one realm's layer holds no other pull or import, of that realm or another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import NamedTuple

from kukeon.runtime.containerd.client import ContainerdClient


class ImageStorageLimits(NamedTuple):
    """Bytes of image content (containerd's blobs, as stored) imports may leave on the node;
    None: no bound."""

    realm: int | None = None
    """A realm's namespace, when its `spec.quota.imageStorageBytes` is unset
    (`realmImageStorageBytes`)."""
    node: int | None = None
    """Every namespace together, a blob two share counted once (`imageStorageMaxBytes`)."""


NO_IMAGE_STORAGE_LIMITS = ImageStorageLimits()


class ImageStorageExceededError(Exception):
    """An import or a pull would leave more image content than a limit allows."""

    def __init__(
        self, *, limit: int, used: int, adding: int, what: str, pull: bool = False
    ) -> None:
        doing, done = (
            ("pulling the image", "pulled") if pull else ("importing the archive", "imported")
        )
        told = (
            f"{doing} would add {adding} bytes of image content to the {used} "
            f"bytes held, over the limit of {limit} bytes ({what}); nothing was {done}"
            if adding
            else f"{used} bytes of image content are held, the limit is {limit} bytes ({what})"
        )
        super().__init__(f"{told} (remove images with kukectl image rm/prune, or ask an admin)")
        self.limit, self.used, self.adding, self.what = limit, used, adding, what


Claim = Callable[[Mapping[str, int]], Awaitable[None]]
"""Checks a write's blobs (digest: size) against the limits and claims them
(`ImageStorageExceededError` when they do not fit: nothing is claimed)."""


class ImageRoom:
    def __init__(self, containerd: ContainerdClient) -> None:
        self.containerd = containerd
        self._checking = asyncio.Lock()
        """Held from a check's reading of what is held to its claim, never longer: two
        checks at once could each fit what the other then fills."""
        self._claims: dict[object, tuple[str, dict[str, int]]] = {}
        """Each write under way that passed its check: its namespace and every blob it
        named, held already or not (an `image rm` may free a held one while it runs)."""

    @contextlib.asynccontextmanager
    async def claiming(
        self, namespace: str, limits: ImageStorageLimits, *, pull: bool = False
    ) -> AsyncIterator[Claim]:
        """A write into `namespace` under `limits`: the `Claim` it calls once its blobs are
        known, before writing any; the claim holds until the block ends (written, the
        blobs are held; failed, nothing of them is)."""
        token = object()

        async def claim(blobs: Mapping[str, int]) -> None:
            async with self._checking:
                await self.check(namespace, blobs, limits, pull=pull)
                self._claims[token] = (namespace, dict(blobs))

        try:
            yield claim
        finally:
            self._claims.pop(token, None)

    async def check(
        self,
        namespace: str,
        blobs: Mapping[str, int] | None,
        limits: ImageStorageLimits,
        *,
        pull: bool = False,
    ) -> None:
        """Refuse an import or a pull whose new `blobs` would take the namespace or the node
        past its limit (blobs already held, or claimed by a write under way, there are not
        written again, so not counted); with `blobs` None (a pull not resolved yet), refuse
        when a limit is already reached."""
        scopes: list[tuple[int, str, list[str] | None]] = []
        if limits.realm is not None:
            what = "the realm's on this node: spec.quota.imageStorageBytes, else kukeond's "
            scopes.append((limits.realm, what + "realmImageStorageBytes", [namespace]))
        if limits.node is not None:
            scopes.append((limits.node, "every realm's on this node: imageStorageMaxBytes", None))
        for limit, what, namespaces in scopes:
            held = await self._held(namespaces)
            used = sum(held.values())
            if blobs is None:
                if used >= limit:
                    raise ImageStorageExceededError(limit=limit, used=used, adding=0, what=what)
                continue
            adding = sum(size for digest, size in blobs.items() if digest not in held)
            if adding and used + adding > limit:
                raise ImageStorageExceededError(
                    limit=limit, used=used, adding=adding, what=what, pull=pull
                )

    async def _held(self, namespaces: list[str] | None) -> dict[str, int]:
        """The blobs `namespaces` (None: every one) hold or writes into them claim, each
        once, digest: size."""
        names = (
            namespaces
            if namespaces is not None
            else [found.name for found in await self.containerd.namespaces.list()]
        )
        held: dict[str, int] = {}
        for name in names:
            held.update(await self.containerd.content(name).sizes())
        for into, blobs in list(self._claims.values()):
            if namespaces is None or into in namespaces:
                for digest, size in blobs.items():
                    held.setdefault(digest, size)
        return held
