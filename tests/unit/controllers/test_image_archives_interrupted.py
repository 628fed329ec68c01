"""What image imports a crash cut short leave in the node's archive store is removed at
start, and nothing that an image name points at. Before, an archive copied and named by
its digest (``_store``) but not yet recorded in the index (``record``) when kukeond was
killed stayed for good (helper-148: a 158 MB archive after a kill -9 mid-import)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kukeon.controllers.imagearchives import ImageArchives


def _store_with_leftovers(tmp_path: Path) -> tuple[ImageArchives, Path, list[Path]]:
    archives = ImageArchives(tmp_path / "images")
    source = tmp_path / "kept.tar"
    source.write_bytes(b"kept")

    async def keep() -> Path:
        stored = await archives.store(source)
        await archives.record(stored, ["example.com/kept:1"])
        return stored

    kept = asyncio.run(keep())
    archives.incoming.mkdir()
    leftovers = [
        archives.directory / f"{'a' * 64}.tar",  # named by its digest, never recorded
        archives.directory / f"{'b' * 64}.1234.partial",
        archives.incoming / "upload.tar",
    ]
    for path in leftovers:
        path.write_bytes(b"left")
    return archives, kept, leftovers


def test_an_archive_no_name_points_at_is_removed_with_the_rest(tmp_path: Path) -> None:
    archives, kept, leftovers = _store_with_leftovers(tmp_path)
    assert sorted(archives.remove_interrupted()) == sorted(leftovers)
    assert kept.read_bytes() == b"kept"
    assert not [path for path in leftovers if path.exists()]
    assert asyncio.run(archives.find("example.com/kept:1")) == kept


def test_an_unreadable_index_keeps_every_stored_archive(tmp_path: Path) -> None:
    archives, kept, leftovers = _store_with_leftovers(tmp_path)
    (archives.directory / "index.json").write_text("{not json")
    removed = archives.remove_interrupted()
    assert leftovers[0] not in removed
    assert leftovers[0].exists()
    assert kept.exists()
    assert sorted(removed) == sorted(leftovers[1:])  # what no index decides still goes
