"""What the layers of an unpack take, summed and held to one room.

``ImageService.unpack`` measures the layers of one image before containerd applies them;
an archive's import measures those of all its images together (a layer two images share,
by chain id, counted once), so that several images which each fit the room do not, all
together, take more than it. The plan's layers are then claimed at once
(``layersize.claiming``), as concurrent unpacks share the room.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from kukeon.runtime.containerd.layerread import NOTHING_COUNTED, LayerCount
from kukeon.runtime.containerd.layersize import Room, UnpackLimits, claiming
from kukeon.runtime.containerd.oci import Descriptor


@dataclass(slots=True)
class UnpackPlan:
    """The layers one unpack applies, or those of every image one archive's import unpacks:
    each with what it takes once unpacked (a layer, by chain id, counted once), their sum
    held to one room (and claimed at once: `claiming`)."""

    room: Room
    layers: list[Descriptor] = field(default_factory=list)
    counts: list[LayerCount] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    """The image of each layer (for a refusal's message)."""
    chains: set[str] = field(default_factory=set)
    total: LayerCount = NOTHING_COUNTED

    def add(self, image: str, chain: str, layer: Descriptor, count: LayerCount) -> None:
        self.layers.append(layer)
        self.counts.append(count)
        self.images.append(image)
        self.chains.add(chain)
        self.total = LayerCount(self.total.bytes + count.bytes, self.total.entries + count.entries)

    @property
    def sizes(self) -> list[tuple[Descriptor, int]]:
        return [(layer, count.bytes) for layer, count in zip(self.layers, self.counts, strict=True)]

    @property
    def entries(self) -> list[int]:
        return [count.entries for count in self.counts]

    def claiming(self, limits: UnpackLimits, root: str | None) -> AbstractAsyncContextManager[None]:
        """`layersize.claiming` of these layers: refused when the room left now (what other
        unpacks took meanwhile included) is too small for them."""
        image = self.images[0] if self.images else ""
        return claiming(
            limits,
            root,
            image=image,
            sizes=self.sizes,
            entries=self.entries,
            layer_images=self.images,
        )
