"""Whether an image has a file, answered from its layers without mounting it.

Used to refuse, with a clear error, a container whose command must run under a program the
image lacks (the tty wrapper's ``/bin/sh``) before anything is created. The layers are read
from the top down and merged as an overlay filesystem would: a whiteout hides the path in
the layers below, an opaque directory hides what the layers below put inside it, a
directory implied by a deeper entry counts as a directory. The path is then resolved
component by component, following symlinks (absolute ones from the image's root) as the
kernel would, so ``/bin -> usr/bin`` (merged /usr) and ``/bin/sh -> busybox`` are found.

Each layer streams through ``layerread``: only names, kinds and symlink targets are kept,
at most ``_MAX_KEPT_BYTES`` of them (about half a million entries); an image with more is
"unknown" (``ValueError``), which the caller leaves to the runtime to tell.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from kukeon.runtime.containerd.layerread import (
    ImageLayer,
    LayerReadError,
    LayerSource,
    Member,
    read_layer,
)

_MAX_SYMLINKS: Final = 40  # the kernel's limit when resolving a path
_MAX_KEPT_BYTES: Final = 128 * 1024 * 1024
"""What the merged view may take, as estimated by ``_ENTRY_COST`` plus the name's length."""
_ENTRY_COST: Final = 200
"""About what a kept name costs beyond its characters (str header, dict slots, while both the
layer's entries and the merged view hold it): measured 215 bytes a name of 16 characters."""


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    """``file``, ``dir``, ``symlink`` or ``other``."""
    target: str = ""


_SHARED: Final = {
    "dir": _Entry("dir"),
    "file": _Entry("file"),
    "hardlink": _Entry("file"),
    "other": _Entry("other"),
}
"""One entry for every name of a kind without a target: a million files are one object."""


class _Union:
    """The merged view of the layers read so far (top layer first)."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.deleted: set[str] = set()
        self.opaque: set[str] = set()
        self.kept = 0
        """Estimated bytes the view keeps (with a layer's being read: ``_MAX_KEPT_BYTES``)."""

    def keep(self, name: str, target: str = "", *, reading: int = 0) -> int:
        """Count ``name`` as kept (with ``reading`` bytes of the layer being read), refused
        past the bound; what it costs."""
        cost = _ENTRY_COST + len(name) + len(target)
        if self.kept + reading + cost > _MAX_KEPT_BYTES:
            raise LayerReadError(
                f"the image has more entries than the {_MAX_KEPT_BYTES} bytes kept to tell allow"
            )
        return cost

    def hidden(self, path: str) -> bool:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in self.deleted:
                return True
            if depth < len(parts) and prefix in self.opaque:
                return True
        return "" in self.opaque and path != ""

    def add_layer(self, layer: _LayerEntries) -> None:
        explicit, whiteouts, opaques = layer.explicit, layer.whiteouts, layer.opaques
        self.kept += layer.kept
        implied: set[str] = set()
        for name in explicit:
            parent = posixpath.dirname(name)
            while parent and parent not in explicit and parent not in implied:
                self.kept += self.keep(parent)
                implied.add(parent)
                parent = posixpath.dirname(parent)
        for name, entry in [*explicit.items(), *((d, _SHARED["dir"]) for d in implied)]:
            if name not in self.entries and not self.hidden(name):
                self.entries[name] = entry
            else:
                self.kept -= _ENTRY_COST + len(name) + len(entry.target)  # dropped
        # A layer's whiteouts hide only what lies below it.
        self.deleted |= whiteouts
        self.opaque |= opaques

    def resolve(self, path: str) -> tuple[str, _Entry] | None:
        """The path ``path`` leads to, every symlink on the way (its last component's too)
        followed inside the image (an absolute target from the image's root, ``..`` at the
        root stays there), and its entry; None when it leads nowhere."""
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
        return ("/".join(resolved), entry) if entry is not None else None


class _LayerEntries:
    """Visits one layer's members: keeps each name's kind (symlinks with their target),
    its whiteouts and its opaque directories, and no content."""

    def __init__(self, union: _Union) -> None:
        self.union = union
        self.kept = 0
        self.explicit: dict[str, _Entry] = {}
        self.whiteouts: set[str] = set()
        self.opaques: set[str] = set()

    def member(self, member: Member) -> int:
        name = member.name
        if name in (".", ""):
            return 0
        self.kept += self.union.keep(name, member.linkname, reading=self.kept)
        directory, base = posixpath.split(name)
        if base == ".wh..wh..opq":
            self.opaques.add(directory)
        elif base.startswith(".wh."):
            self.whiteouts.add(posixpath.join(directory, base[len(".wh.") :]))
        else:
            # An entry after its own whiteout replaces it (containerd's overlay applier
            # removes the whiteout): a directory then merges with the one below.
            self.whiteouts.discard(name)
            if member.kind == "symlink":
                self.explicit[name] = _Entry("symlink", member.linkname)
            else:
                self.explicit[name] = _SHARED[member.kind]
        return 0

    def content(self, member: Member, data: bytes) -> None:
        raise AssertionError("no content is asked for")


async def image_has_file(store: LayerSource, layers: Sequence[ImageLayer], path: str) -> bool:
    """Whether ``path`` resolves to a regular file in the image made of ``layers``.

    Every layer is read (a file may come from the lowest one). Raises ``ValueError`` for a
    layer that cannot be read (corrupt, truncated) or an image with too many entries to keep, so
    the caller can treat the answer as unknown.
    """
    found = (await _merged(store, layers)).resolve(path)
    return found is not None and found[1].kind == "file"


async def resolve_files(
    store: LayerSource, layers: Sequence[ImageLayer], paths: Sequence[str]
) -> dict[str, str | None]:
    """Where each of ``paths`` leads in the image made of ``layers``: the path of the
    regular file it resolves to inside the image (symlinks followed as ``image_has_file``
    does, never out of the image), or None when it resolves to none. ``ValueError`` as
    ``image_has_file``."""
    union = await _merged(store, layers)
    files: dict[str, str | None] = {}
    for path in paths:
        found = union.resolve(path)
        files[path] = found[0] if found is not None and found[1].kind == "file" else None
    return files


async def _merged(store: LayerSource, layers: Sequence[ImageLayer]) -> _Union:
    union = _Union()
    for layer in reversed(layers):
        union.add_layer(await read_layer(store, layer.digest, lambda: _LayerEntries(union)))
    return union
