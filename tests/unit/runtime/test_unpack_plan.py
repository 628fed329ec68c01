"""UnpackPlan: the layers of several images (one archive's) summed and claimed at once; a
refusal names the image of the first layer past the room."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kukeon.runtime.containerd.layerread import LayerCount
from kukeon.runtime.containerd.layersize import (
    LayerTooLargeError,
    LayerTooManyEntriesError,
    Room,
    UnpackLimits,
    too_large,
)
from kukeon.runtime.containerd.oci import Descriptor
from kukeon.runtime.containerd.unpackplan import UnpackPlan

A = Descriptor(media_type="x", digest="sha256:" + "a" * 64, size=1)
B = Descriptor(media_type="x", digest="sha256:" + "b" * 64, size=2)


def two_images() -> UnpackPlan:
    plan = UnpackPlan(Room(100, "the test's room", 10, "the test's inodes"))
    plan.add("first", "chain-a", A, LayerCount(60, 4))
    plan.add("second", "chain-b", B, LayerCount(60, 7))
    return plan


def test_the_sum_of_the_images_is_held_to_the_room_naming_the_layer_past_it() -> None:
    plan = two_images()
    assert plan.total == LayerCount(120, 11)
    assert plan.chains == {"chain-a", "chain-b"}
    refused = too_large("first", plan.sizes, plan.room, plan.images)
    assert str(refused) == (
        f"image 'second': layer {B.digest} (2 bytes compressed) inflates past 60 bytes after "
        "60 bytes of the layers unpacked before it, more than the 100 bytes unpacking may take "
        "(the test's room); nothing of it was unpacked"
    )


async def test_a_claim_of_several_images_is_refused_naming_the_image_past_it() -> None:
    plan = two_images()
    with pytest.raises(LayerTooLargeError, match=r"^image 'second': layer"):
        async with plan.claiming(UnpackLimits(max_bytes=100), None):
            pass
    fits = UnpackPlan(Room(1000, "room"))
    fits.add("first", "chain-a", A, LayerCount(60, 4))
    async with fits.claiming(UnpackLimits(max_bytes=100), None):
        pass


async def test_an_inode_refusal_names_the_image_too(tmp_path: Path) -> None:
    if os.statvfs(tmp_path).f_files == 0:
        pytest.skip(f"{tmp_path} has no inode limit")
    plan = two_images()
    limits = UnpackLimits(inode_reserve=lambda files: files)  # no inode left
    with pytest.raises(LayerTooManyEntriesError, match=r"^image 'first': layer"):
        async with plan.claiming(limits, str(tmp_path)):
            pass
