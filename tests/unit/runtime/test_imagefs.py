"""image_has_file: /bin/sh found (or not) in layer blobs, as an overlay mount would show it."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable

import pytest
from backports import zstd

from kukeon.runtime.containerd.imagefs import image_has_file
from kukeon.runtime.containerd.layerread import LayerReadError
from kukeon.runtime.containerd.userdb import ImageLayer
from tests.unit.runtime.test_userdb import GZIP, ZSTD, ReadOnlyStore, add_layer, layer_tar


def hardlink_layer(store: ReadOnlyStore) -> ImageLayer:
    """busybox's own image: /bin/sh is a hard link to /bin/busybox."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        busybox = tarfile.TarInfo("bin/busybox")
        busybox.size = 4
        tar.addfile(busybox, io.BytesIO(b"\x7fELF"))
        link = tarfile.TarInfo("bin/sh")
        link.type = tarfile.LNKTYPE
        link.linkname = "bin/busybox"
        tar.addfile(link)
    return ImageLayer(GZIP, store.add(gzip.compress(buffer.getvalue())))


async def has_sh(store: ReadOnlyStore, layers: list[ImageLayer]) -> bool:
    return await image_has_file(store, layers, "/bin/sh")


async def test_a_plain_file_and_a_hard_link() -> None:
    store = ReadOnlyStore()
    assert await has_sh(store, [add_layer(store, {"bin": None, "bin/sh": b"x"})])
    assert await has_sh(store, [hardlink_layer(store)])


async def test_directories_implied_by_entries() -> None:
    store = ReadOnlyStore()
    assert await has_sh(store, [add_layer(store, {"./bin/sh": b"x"})])


async def test_symlinks_relative_absolute_and_merged_usr() -> None:
    store = ReadOnlyStore()
    # alpine: /bin/sh -> /bin/busybox
    alpine = add_layer(store, {"bin/busybox": b"x", "bin/sh": "->/bin/busybox"})
    assert await has_sh(store, [alpine])
    # debian: /bin -> usr/bin (in the base layer), /usr/bin/sh -> dash (in a later one)
    base = add_layer(store, {"bin": "->usr/bin", "usr/bin/dash": b"x"})
    top = add_layer(store, {"usr/bin/sh": "->dash"})
    assert await has_sh(store, [base, top])
    dangling = add_layer(store, {"bin/sh": "->../nowhere/sh"})
    assert not await has_sh(store, [dangling])
    loop = add_layer(store, {"bin/sh": "->/bin/sh2", "bin/sh2": "->/bin/sh"})
    assert not await has_sh(store, [loop])
    upward = add_layer(store, {"bin/sh": "->../../../../usr/bin/dash", "usr/bin/dash": b"x"})
    assert await has_sh(store, [upward])


async def test_missing_a_directory_or_whited_out() -> None:
    store = ReadOnlyStore()
    assert not await has_sh(store, [add_layer(store, {"app/server": b"x"})])
    assert not await has_sh(store, [add_layer(store, {"bin/sh": None})])
    assert not await has_sh(store, [])
    base = add_layer(store, {"bin/sh": b"x"})
    assert not await has_sh(store, [base, add_layer(store, {"bin/.wh.sh": b""})])
    assert not await has_sh(store, [base, add_layer(store, {".wh.bin": b""})])
    opaque = add_layer(store, {"bin/.wh..wh..opq": b"", "bin/x": b""})
    assert not await has_sh(store, [base, opaque])
    # whited out, then added back above
    again = add_layer(store, {"bin/sh": b"y"})
    assert await has_sh(store, [base, add_layer(store, {"bin/.wh.sh": b""}), again])
    # a directory replaced by a file in an upper layer
    assert not await has_sh(store, [base, add_layer(store, {"bin": b"not a directory"})])


async def test_a_directory_after_its_own_whiteout_merges_with_the_one_below() -> None:
    """containerd's overlay applier replaces a whiteout with the entry that follows it in
    the same layer: a directory without an opaque marker, which overlayfs merges."""
    store = ReadOnlyStore()
    base = add_layer(store, {"bin": None, "bin/sh": b"x"})
    assert await has_sh(store, [base, add_layer(store, {".wh.bin": b"", "bin": None})])
    assert not await has_sh(store, [base, add_layer(store, {".wh.bin": b""})])


async def test_an_unreadable_layer_raises() -> None:
    store = ReadOnlyStore()
    layer = ImageLayer(ZSTD, store.add(b"(\xb5/\xfd"))  # a zstd magic, then nothing
    with pytest.raises(ValueError, match="truncated"):
        await has_sh(store, [layer])


def _tar_of_sh() -> bytes:
    return layer_tar({"bin": None, "bin/sh": b"x" * 4096}, compress=False)


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(lambda: gzip.compress(_tar_of_sh())[:-100], id="gzip cut short"),
        pytest.param(lambda: gzip.compress(_tar_of_sh())[:20] + b"\xff" * 200, id="gzip corrupt"),
        pytest.param(lambda: _tar_of_sh()[:1000], id="tar cut inside a member"),
        pytest.param(lambda: b"not a tar header".ljust(1024, b"!"), id="tar header"),
        pytest.param(lambda: zstd.compress(_tar_of_sh())[:-5], id="zstd cut short"),
        pytest.param(lambda: b"(\xb5/\xfd" + b"\xff" * 64, id="zstd corrupt"),
    ],
)
async def test_every_unreadable_layer_is_a_value_error(blob: Callable[[], bytes]) -> None:
    """What the image provider catches (controllers.images.has_file): nothing but
    ValueError (layerread.LayerReadError) comes out of a layer that does not read."""
    store = ReadOnlyStore()
    with pytest.raises(LayerReadError):
        await has_sh(store, [ImageLayer(GZIP, store.add(blob()))])


async def test_a_zstd_layer_is_read() -> None:
    store = ReadOnlyStore()
    tar = layer_tar({"bin": None, "bin/sh": b"x"}, compress=False)
    assert await has_sh(store, [ImageLayer(ZSTD, store.add(zstd.compress(tar)))])
