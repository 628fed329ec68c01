"""Whether an image has a file, answered from its layers without mounting it.

Used to refuse, with a clear error, a container whose command must run under a program the
image lacks (the tty wrapper's ``/bin/sh``) before anything is created. The layers are read
from the top down and merged as an overlay filesystem would: a whiteout hides the path in
the layers below, an opaque directory hides what the layers below put inside it, a
directory implied by a deeper entry counts as a directory. The path is then resolved
component by component, following symlinks (absolute ones from the image's root) as the
kernel would, so ``/bin -> usr/bin`` (merged /usr) and ``/bin/sh -> busybox`` are found.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import posixpath
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from kukeon.runtime.containerd.types import BlobStore
from kukeon.runtime.containerd.userdb import ImageLayer

_MAX_SYMLINKS: Final = 40  # the kernel's limit when resolving a path


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    """``file``, ``dir``, ``symlink`` or ``other``."""
    target: str = ""


class _Union:
    """The merged view of the layers read so far (top layer first)."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.deleted: set[str] = set()
        self.opaque: set[str] = set()

    def hidden(self, path: str) -> bool:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in self.deleted:
                return True
            if depth < len(parts) and prefix in self.opaque:
                return True
        return "" in self.opaque and path != ""

    def add_layer(self, raw: bytes) -> None:
        explicit: dict[str, _Entry] = {}
        whiteouts: set[str] = set()
        opaques: set[str] = set()
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                name = posixpath.normpath(member.name.lstrip("/")).removeprefix("./")
                if name in (".", ""):
                    continue
                directory, base = posixpath.split(name)
                if base == ".wh..wh..opq":
                    opaques.add(directory)
                    continue
                if base.startswith(".wh."):
                    whiteouts.add(posixpath.join(directory, base[len(".wh.") :]))
                    continue
                if member.issym():
                    explicit[name] = _Entry("symlink", member.linkname)
                elif member.isdir():
                    explicit[name] = _Entry("dir")
                elif member.isfile() or member.islnk():
                    explicit[name] = _Entry("file")
                else:
                    explicit[name] = _Entry("other")
        implied: set[str] = set()
        for name in explicit:
            parent = posixpath.dirname(name)
            while parent and parent not in explicit and parent not in implied:
                implied.add(parent)
                parent = posixpath.dirname(parent)
        for name, entry in [*explicit.items(), *((d, _Entry("dir")) for d in implied)]:
            if name not in self.entries and not self.hidden(name):
                self.entries[name] = entry
        # A layer's whiteouts hide only what lies below it.
        self.deleted |= whiteouts
        self.opaque |= opaques

    def resolve(self, path: str) -> _Entry | None:
        pending = [part for part in path.split("/") if part]
        resolved: list[str] = []
        hops = 0
        entry: _Entry | None = _Entry("dir")
        while pending:
            part = pending.pop(0)
            if part == ".":
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            entry = self.entries.get("/".join([*resolved, part]))
            if entry is None:
                return None
            if entry.kind == "symlink":
                hops += 1
                if hops > _MAX_SYMLINKS:
                    return None
                if entry.target.startswith("/"):
                    resolved = []
                pending = [p for p in entry.target.split("/") if p] + pending
                entry = self.entries.get("/".join(resolved)) if resolved else _Entry("dir")
                continue
            if pending and entry.kind != "dir":
                return None
            resolved.append(part)
        return entry


def _decompressed(blob: bytes, layer: ImageLayer) -> bytes:
    media_type = layer.media_type
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        raise ValueError(f"layer {layer.digest} is zstd-compressed ({media_type}): unsupported")
    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


async def image_has_file(store: BlobStore, layers: Sequence[ImageLayer], path: str) -> bool:
    """Whether ``path`` resolves to a regular file in the image made of ``layers``.

    Every layer is read (a file may come from the lowest one). Raises ``ValueError`` for a
    layer that cannot be read (zstd), so the caller can treat the answer as unknown.
    """
    union = _Union()
    for layer in reversed(layers):
        blob = await store.read_blob(layer.digest)
        raw = await asyncio.to_thread(_decompressed, blob, layer)
        await asyncio.to_thread(union.add_layer, raw)
    found = union.resolve(path)
    return found is not None and found.kind == "file"
