"""layerread: a layer's tar read as its blob streams, in bounded memory, as tarfile reads it."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable

import pytest
from backports import zstd

from kukeon.runtime.containerd import imagefs
from kukeon.runtime.containerd.imagefs import image_has_file
from kukeon.runtime.containerd.layerread import LayerReadError, Member, TarStream
from kukeon.runtime.containerd.layersize import LABEL_UNPACKED_SIZE
from kukeon.runtime.containerd.userdb import ImageLayer, read_image_user_database
from tests.unit.runtime.test_userdb import GZIP, ReadOnlyStore, Sink, add_layer, layer_tar

PASSWD = b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = b"root:x:0:\napp:x:1000:\n"
MiB = 1024 * 1024


class Names:
    """A visitor that records every member."""

    def __init__(self) -> None:
        self.members: list[Member] = []

    def member(self, member: Member) -> int:
        self.members.append(member)
        return 0

    def content(self, member: Member, data: bytes) -> None:
        raise AssertionError


def tar_bytes(fmt: int) -> bytes:
    """Every kind of member, with names and link targets too long for a ustar header."""
    long_dir = "usr/" + "d" * 120
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, kind, link, data in [
            ("./etc", tarfile.DIRTYPE, "", b""),
            ("./etc/passwd", tarfile.REGTYPE, "", PASSWD),
            (long_dir, tarfile.DIRTYPE, "", b""),
            (long_dir + "/" + "f" * 150, tarfile.REGTYPE, "", b"x" * 700),
            ("bin/sh", tarfile.SYMTYPE, "/" + long_dir + "/" + "f" * 150, b""),
            ("etc/hard", tarfile.LNKTYPE, "etc/passwd", b""),
            ("dev/null", tarfile.CHRTYPE, "", b""),
            ("/abs/file", tarfile.REGTYPE, "", b""),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("step", [1, 7, 512, 100_000])
def test_members_as_tarfile_reads_them_in_any_chunking(fmt: int, step: int) -> None:
    data = tar_bytes(fmt)
    names = Names()
    stream = TarStream(names)
    for offset in range(0, len(data), step):
        stream.feed(data[offset : offset + step])
    stream.finish()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        expected = [
            (m.name.lstrip("/").removeprefix("./"), m.linkname, m.size if m.isreg() else 0)
            for m in tar
        ]
    assert [(m.name, m.linkname, m.size) for m in names.members] == expected
    assert [m.kind for m in names.members] == [
        "dir",
        "file",
        "dir",
        "file",
        "symlink",
        "hardlink",
        "other",
        "file",
    ]
    assert stream.ended


def test_a_gnu_pax_sparse_file_has_its_own_name() -> None:
    """GNU tar stores a sparse file (`tar --sparse --format=posix`, or its default on a
    sparse file) under a made-up path, its name in `GNU.sparse.name`, as tarfile and Go's
    archive/tar (containerd's unpack) read it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("./GNUSparseFile.4242/passwd")
        info.size = len(PASSWD)
        info.pax_headers = {"GNU.sparse.name": "./etc/passwd"}
        tar.addfile(info, io.BytesIO(PASSWD))
    names = Names()
    stream = TarStream(names)
    stream.feed(buffer.getvalue())
    stream.finish()
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue())) as tar:
        assert [m.name.removeprefix("./") for m in tar] == ["etc/passwd"]
    assert [m.name for m in names.members] == ["etc/passwd"]


def test_a_tar_cut_inside_a_member_is_an_error() -> None:
    data = tar_bytes(tarfile.GNU_FORMAT)
    stream = TarStream(Names())
    stream.feed(data[:1000])
    with pytest.raises(LayerReadError, match="truncated"):
        stream.finish()


def test_a_corrupt_header_is_an_error() -> None:
    data = bytearray(tar_bytes(tarfile.GNU_FORMAT))
    data[0:4] = b"\xff\xff\xff\xff"
    with pytest.raises(LayerReadError, match="does not parse"):
        TarStream(Names()).feed(bytes(data))


def zeros_layer(zeros: int, *, passwd_first: bool = False) -> bytes:
    """A gzip layer: /etc/passwd and /etc/group, and a member of ``zeros`` zero bytes,
    built a MiB at a time (the test itself must not hold it)."""
    compressor = zlib.compressobj(wbits=31)
    parts: list[bytes] = []

    def member(name: str, size: int, content: bytes | None = None) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        parts.append(compressor.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        if content is not None:
            parts.append(compressor.compress(content))
        else:
            for offset in range(0, size, MiB):
                parts.append(compressor.compress(bytes(min(MiB, size - offset))))
        parts.append(compressor.compress(bytes(-size % 512)))

    if passwd_first:
        member("etc/passwd", len(PASSWD), PASSWD)
        member("etc/group", len(GROUP), GROUP)
    member("opt/cuda/huge.so", zeros)
    if not passwd_first:
        member("etc/passwd", len(PASSWD), PASSWD)
        member("etc/group", len(GROUP), GROUP)
    parts.append(compressor.compress(bytes(1024)))
    parts.append(compressor.flush())
    return b"".join(parts)


async def peak_while(read: Callable[[], Awaitable[object]]) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = await read()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_a_200_mib_layer_is_read_in_a_few_mib() -> None:
    store = ReadOnlyStore()
    layer = ImageLayer(GZIP, store.add(zeros_layer(200 * MiB)))
    result, peak = await peak_while(lambda: read_image_user_database(store, [layer]))
    assert result == (PASSWD.decode(), GROUP.decode())
    assert peak < 8 * MiB, peak
    result, peak = await peak_while(lambda: image_has_file(store, [layer], "/etc/passwd"))
    assert result is True
    assert peak < 8 * MiB, peak


async def test_reading_stops_once_both_files_are_read() -> None:
    store = ReadOnlyStore()
    store.chunk = 4096
    layer = ImageLayer(GZIP, store.add(zeros_layer(64 * MiB, passwd_first=True)))
    fed: list[int] = []
    read_through = store.read_through

    async def counting(digest: str, start: Callable[[], Sink]) -> Sink:
        def counted() -> Sink:
            sink = start()
            feed = sink.feed

            def feed_counted(chunk: bytes) -> None:
                fed.append(len(chunk))
                feed(chunk)

            sink.feed = feed_counted  # type: ignore[method-assign]
            return sink

        return await read_through(digest, counted)

    store.read_through = counting  # type: ignore[method-assign]
    assert await read_image_user_database(store, [layer]) == (PASSWD.decode(), GROUP.decode())
    assert sum(fed) < 2 * store.chunk  # the first chunks, not the ~64 KiB of the layer


def many_members(count: int) -> bytes:
    """A tar of ``count`` empty files, then /etc/passwd and /bin/sh -> busybox: headers made
    from one template (tarfile takes seconds for 100,000)."""
    template = bytearray(tarfile.TarInfo("x").tobuf(format=tarfile.GNU_FORMAT))
    headers = []
    for index in range(count):
        header = template.copy()
        header[0:100] = f"usr/share/f{index}".encode().ljust(100, b"\0")
        header[148:156] = b" " * 8
        header[148:155] = b"%06o\0" % sum(header)
        headers.append(bytes(header))
    tail = layer_tar({"etc/passwd": PASSWD, "bin/sh": "->busybox", "bin/busybox": b"x"})
    # Two gzip members, one stream; level 1 takes 0.2 s where the default (9) took 2.4 s.
    return gzip.compress(b"".join(headers), compresslevel=1) + tail


async def test_a_layer_of_100000_members() -> None:
    store = ReadOnlyStore()
    layer = ImageLayer(GZIP, store.add(many_members(100_000)))
    result, peak = await peak_while(lambda: read_image_user_database(store, [layer]))
    assert result == (PASSWD.decode(), None)
    assert peak < 8 * MiB, peak


async def test_too_many_entries_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ReadOnlyStore()
    entries: dict[str, bytes | str | None] = {f"f{i}": b"" for i in range(1000)}
    layer = add_layer(store, entries | {"bin/sh": b"x"})
    monkeypatch.setattr(imagefs, "_MAX_KEPT_BYTES", 100 * 200)
    with pytest.raises(ValueError, match="more entries"):
        await image_has_file(store, [layer], "/bin/sh")


async def test_a_truncated_gzip_layer_is_a_clear_error() -> None:
    store = ReadOnlyStore()
    whole = layer_tar({"bin/app": b"y" * 100_000, "etc/passwd": PASSWD})
    layer = ImageLayer(GZIP, store.add(whole[: len(whole) // 2]))
    with pytest.raises(ValueError, match=f"layer {layer.digest} cannot be read: .*truncated"):
        await read_image_user_database(store, [layer])
    with pytest.raises(ValueError, match="truncated"):
        await image_has_file(store, [layer], "/bin/sh")


async def test_inflating_past_the_counted_size_stops() -> None:
    store = ReadOnlyStore()
    layer = ImageLayer(GZIP, store.add(zeros_layer(32 * MiB)))
    store.labels[layer.digest] = {LABEL_UNPACKED_SIZE: str(4 * MiB)}
    with pytest.raises(ValueError, match=f"inflates past {4 * MiB} bytes"):
        await read_image_user_database(store, [layer])


async def test_concatenated_gzip_members_and_a_plain_tar() -> None:
    raw = layer_tar({"etc/passwd": PASSWD, "etc/group": GROUP}, compress=False)
    store = ReadOnlyStore()
    split = gzip.compress(raw[:1024]) + gzip.compress(raw[1024:])
    for blob in (split, raw):
        layer = ImageLayer(GZIP, store.add(blob))
        assert await read_image_user_database(store, [layer]) == (PASSWD.decode(), GROUP.decode())


async def test_a_hard_linked_passwd_reads_its_target() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("usr/share/base-passwd")
        info.size = len(PASSWD)
        tar.addfile(info, io.BytesIO(PASSWD))
        link = tarfile.TarInfo("etc/passwd")
        link.type, link.linkname = tarfile.LNKTYPE, "usr/share/base-passwd"
        tar.addfile(link)
    store = ReadOnlyStore()
    layer = ImageLayer(GZIP, store.add(gzip.compress(buffer.getvalue())))
    assert await read_image_user_database(store, [layer]) == (PASSWD.decode(), None)


async def test_a_zstd_blob_is_told_by_its_magic_not_its_media_type() -> None:
    store = ReadOnlyStore()
    tar = layer_tar({"etc/group": b"root:x:0:\n"}, compress=False)
    layer = ImageLayer(GZIP, store.add(zstd.compress(tar)))
    assert await read_image_user_database(store, [layer]) == (None, "root:x:0:\n")
    junk = ImageLayer(GZIP, store.add(b"\x28\xb5\x2f\xfd" + b"\xff" * 64))
    with pytest.raises(ValueError, match="its zstd stream is corrupt"):
        await read_image_user_database(store, [junk])


class RestartingStore(ReadOnlyStore):
    """containerd goes away once, most of the way through a blob: read_through starts over
    with a new sink, as ContentStore does."""

    async def read_through(self, digest: str, start: Callable[[], Sink]) -> Sink:
        blob = self.blobs[digest]
        start().feed(blob[: len(blob) * 9 // 10])
        return await super().read_through(digest, start)


async def test_a_read_that_starts_over_counts_nothing_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = RestartingStore()
    entries: dict[str, bytes | str | None] = {f"f{i:02}": b"" for i in range(50)}
    layer = add_layer(store, entries | {"etc/passwd": PASSWD, "bin/sh": b"x"}, compress=False)
    monkeypatch.setattr(imagefs, "_MAX_KEPT_BYTES", 60 * 200)
    assert await image_has_file(store, [layer], "/bin/sh")
    assert await read_image_user_database(store, [layer]) == (PASSWD.decode(), None)
