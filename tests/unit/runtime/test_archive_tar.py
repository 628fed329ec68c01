"""An imported archive's tar headers, read by kukeond (root) with what a realm editor sent:
what tarfile would hold without bound is refused before tarfile reads it (``archivetar``),
and an archive's tree of documents is written once per blob, nested no deeper than an image
is resolved (``imagearchive.write_tree``)."""

from __future__ import annotations

import asyncio
import gzip
import json
import tarfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal, cast

import pytest

from kukeon.runtime.containerd import archivetar
from kukeon.runtime.containerd.content import ContentStore
from kukeon.runtime.containerd.errors import InvalidImageArchiveError
from kukeon.runtime.containerd.imagearchive import OciArchive, write_tree
from kukeon.runtime.containerd.oci import (
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    digest_of,
)
from tests.unit.runtime.test_registry_client import MemoryBlobStore

LAYOUT = b'{"imageLayoutVersion": "1.0.0"}'


def _header(name: str, kind: bytes, size: int, fmt: Literal[0, 1, 2] = tarfile.GNU_FORMAT) -> bytes:
    """A bare header block of type ``kind`` whose data (``size`` bytes) follows."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(fmt, "utf-8", "surrogateescape")


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % tarfile.BLOCKSIZE)


def _pax(records: Mapping[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A pax extended header (``x``, or global: ``g``) with these records, and its data."""
    body = b""
    for key, value in records.items():
        record = f" {key}={value}\n".encode()
        length = len(record) + len(str(len(record)))
        length += len(str(length)) - len(str(len(record)))
        body += str(length).encode() + record
    return _header("././@PaxHeader", kind, len(body), tarfile.USTAR_FORMAT) + _padded(body)


def _file(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info.tobuf(tarfile.USTAR_FORMAT) + _padded(data)


def _archive(tmp_path: Path, *members: bytes, compress: bool = False) -> Path:
    data = _file("oci-layout", LAYOUT) + b"".join(members) + bytes(2 * tarfile.BLOCKSIZE)
    path = tmp_path / "image.tar"
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _refused(path: Path, why: str) -> None:
    with pytest.raises(InvalidImageArchiveError, match=why):
        OciArchive.open(path).close()


def test_a_pax_header_past_the_bound_is_not_read(tmp_path: Path) -> None:
    """tarfile read a pax header whole: a 400 KiB gzip of a 400 MiB one took 2.8 GB."""
    size = archivetar.MAX_EXTENSION_HEADER_BYTES + 1
    path = _archive(
        tmp_path,
        _header("././@PaxHeader", tarfile.XHDTYPE, size, tarfile.USTAR_FORMAT),
        _padded(bytes(size)),
        compress=True,
    )
    _refused(path, f"a long name or pax header of {size} bytes")


def test_long_names_past_the_bound_all_together_are_not_read(tmp_path: Path) -> None:
    """Each within its bound, their sum past the archive's: tarfile keeps every name."""
    each = archivetar.MAX_EXTENSION_HEADER_BYTES
    members = [
        _header("././@LongLink", tarfile.GNUTYPE_LONGNAME, each)
        + _padded(b"n" * (each - 1) + b"\0")
        + _file(f"blobs/sha256/{number}", b"")
        for number in range(archivetar.MAX_EXTENSION_BYTES // each + 1)
    ]
    _refused(_archive(tmp_path, *members, compress=True), "take more than")


def test_a_chain_of_empty_long_names_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    """tarfile reads a long name's member by recursion: 3,000 of them in a row (1.5 MB) was
    a RecursionError, which the import route answered with a 500."""
    chain = _header("././@LongLink", tarfile.GNUTYPE_LONGNAME, 0) * 3000
    _refused(_archive(tmp_path, chain + _file("index.json", b"{}")), "in a row")


def test_a_member_with_long_name_long_link_and_pax_headers_is_read(tmp_path: Path) -> None:
    name = "blobs/sha256/" + "a" * 200
    members = (
        _pax({"comment": "global"}, tarfile.XGLTYPE)
        + _header("././@LongLink", tarfile.GNUTYPE_LONGLINK, 6)
        + _padded(b"other\0")
        + _header("././@LongLink", tarfile.GNUTYPE_LONGNAME, len(name) + 1)
        + _padded(name.encode() + b"\0")
        + _pax({"mtime": "1.5"})
        + _file("short", b"data")
    )
    archive = OciArchive.open(_archive(tmp_path, members))
    try:
        assert set(archive.blob_sizes()) == {f"sha256:{'a' * 200}"}
    finally:
        archive.close()


def test_more_entries_than_the_bound_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archivetar, "MAX_ENTRIES", 10)
    members = [_file(f"blobs/sha256/{number}", b"") for number in range(10)]
    _refused(_archive(tmp_path, *members), "more than 10 entries")
    monkeypatch.setattr(archivetar, "MAX_ENTRIES", 11)
    OciArchive.open(_archive(tmp_path, *members)).close()


HOLE = 8 * 1024**3
"""The size each sparse entry claims: 8 GiB of holes, from a few KiB of archive."""
BLOB = "blobs/sha256/" + "0" * 64


def _old_gnu_sparse() -> bytes:
    block = bytearray(_header(BLOB, tarfile.GNUTYPE_SPARSE, 0))
    block[483:495] = b"%011o\0" % HOLE  # its real size
    block[148:156] = b" " * 8  # the checksum is of the header with its own field blank
    block[148:155] = b"%06o\0" % sum(block)
    return bytes(block)


@pytest.mark.parametrize(
    "member",
    [
        pytest.param(_old_gnu_sparse(), id="gnu-old"),
        pytest.param(
            _pax({"GNU.sparse.size": str(HOLE), "GNU.sparse.numblocks": "0"})
            + _file("GNUSparseFile.0/x", b""),
            id="pax-0.0",
        ),
        pytest.param(
            _pax(
                {
                    "GNU.sparse.map": f"{HOLE},0",
                    "GNU.sparse.size": str(HOLE),
                    "GNU.sparse.name": BLOB,
                }
            )
            + _file("GNUSparseFile.0/x", b""),
            id="pax-0.1",
        ),
        pytest.param(
            _pax(
                {
                    "GNU.sparse.major": "1",
                    "GNU.sparse.minor": "0",
                    "GNU.sparse.name": BLOB,
                    "GNU.sparse.realsize": str(HOLE),
                }
            )
            + _file("GNUSparseFile.0/x", _padded(f"1\n{HOLE}\n0\n".encode())),
            id="pax-1.0",
        ),
    ],
)
def test_a_sparse_entry_is_refused(tmp_path: Path, member: bytes) -> None:
    """Read back as its full size of zeros: a 12 KiB archive named an 8 GiB layer, written
    whole into the content store past ``imageImportMaxBytes``."""
    _refused(_archive(tmp_path, member), "is stored sparse")


# --- the tree of documents -----------------------------------------------------------------


class TreeContent(MemoryBlobStore):
    """What write_tree writes into: each write counted (``writes``)."""

    async def write_bytes(
        self, data: bytes, *, digest: str | None = None, labels: Mapping[str, str] | None = None
    ) -> str:
        async def whole() -> AsyncIterator[bytes]:
            yield data

        digest = digest or digest_of(data)
        await self.write_blob(digest=digest, size=len(data), chunks=whole(), labels=labels)
        return digest


def _blob(blobs: dict[str, bytes], document: dict[str, Any], media_type: str) -> dict[str, Any]:
    data = json.dumps(document).encode()
    digest = digest_of(data)
    blobs[f"blobs/sha256/{digest.partition(':')[2]}"] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _tree(tmp_path: Path, *, depth: int, fan: int) -> OciArchive:
    """``depth`` indexes, each naming the next ``fan`` times, over one manifest."""
    blobs: dict[str, bytes] = {}
    layer = b"\0" * 1024
    layer_digest = digest_of(layer)
    blobs[f"blobs/sha256/{layer_digest.partition(':')[2]}"] = layer
    config = _blob(blobs, {"rootfs": {"type": "layers", "diff_ids": [layer_digest] * 3}}, "x")
    config["mediaType"] = MEDIA_TYPE_OCI_CONFIG
    layer_descriptor = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": layer_digest,
        "size": len(layer),
    }
    node = _blob(
        blobs,
        {"schemaVersion": 2, "config": config, "layers": [layer_descriptor] * 3},
        MEDIA_TYPE_OCI_MANIFEST,
    )
    for _ in range(depth):
        node = _blob(blobs, {"schemaVersion": 2, "manifests": [node] * fan}, MEDIA_TYPE_OCI_INDEX)
    node["annotations"] = {"io.containerd.image.name": "example.com/tree:1"}
    blobs["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [node, node]}).encode()
    return OciArchive.open(_archive(tmp_path, *(_file(n, d) for n, d in blobs.items())))


async def _write(archive: OciArchive) -> TreeContent:
    content = TreeContent()
    written: set[str] = set()
    try:
        for root in archive.index_entries():
            await write_tree(
                archive,
                root,
                content=cast("ContentStore", content),
                image="example.com/tree:1",
                written=written,
            )
    finally:
        archive.close()
    return content


async def test_each_blob_of_a_tree_is_written_once(tmp_path: Path) -> None:
    """Three indexes naming the next 100 times: a million writes on HEAD, past the 20 s
    this gives it; now the three indexes, the manifest, its config and its one layer."""
    async with asyncio.timeout(20):
        content = await _write(_tree(tmp_path, depth=3, fan=100))
    assert len(content.writes) == len(set(content.writes)) == 6


async def test_indexes_nested_deeper_than_an_image_resolves_are_refused(tmp_path: Path) -> None:
    """Three indexes deep is what a cell can run (``ImageService._resolve``); a chain of
    3,000 was a RecursionError (a 500 from the import route)."""
    content = await _write(_tree(tmp_path, depth=3, fan=1))
    assert len(content.writes) == 6
    for depth in (4, 3000):
        with pytest.raises(InvalidImageArchiveError, match="indexes nested more than 3 deep"):
            await _write(_tree(tmp_path, depth=depth, fan=1))
