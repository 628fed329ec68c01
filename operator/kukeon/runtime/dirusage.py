"""What a directory tree takes on disk, walked from the host without following a link.

``du -s`` as kukeond needs it for a tree a container writes while it is walked (its tty
state directory; its writable layer when containerd's own walk fails): blocks allocated
(``st_blocks`` x 512) and inodes (``du --inodes``: the root, every file, directory, link and
device node), a file of several hard links once, a symbolic link's own blocks and never its
target, nothing on another filesystem; the figures of containerd's ``Snapshots.Usage``.
Each directory is opened from its parent's descriptor with ``O_NOFOLLOW``, so a directory
swapped for a link meanwhile is not entered, and a tree deeper than ``PATH_MAX`` is walked
as any other (containerd's walk goes by path and fails on it, "file name too long", so such
a layer was never measured). Each level holds a descriptor while its subdirectories are
walked, so a tree nested deeper than :data:`MAX_DEPTH` is refused
(:class:`TreeTooDeepError`) rather than walked.
Blocking: run it in a thread.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

MAX_DEPTH: Final = 256
"""Directory levels below the root a walk enters (each holds a descriptor meanwhile)."""
_DIRECTORY: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeTooDeepError(Exception):
    """The tree nests directories more than :data:`MAX_DEPTH` levels below its root."""


class Usage(NamedTuple):
    """What a tree takes on disk."""

    size_bytes: int
    inodes: int

    def plus(self, other: Usage) -> Usage:
        return Usage(self.size_bytes + other.size_bytes, self.inodes + other.inodes)


@dataclass
class _Tally:
    """The count so far, and the bounds past which the walk stops."""

    size_bytes: int
    inodes: int
    byte_bound: float
    inode_bound: float

    @property
    def past(self) -> bool:
        return self.size_bytes > self.byte_bound or self.inodes > self.inode_bound


def _list(directory: int, device: int, linked: set[int], below: list[str], tally: _Tally) -> None:
    """Count the entries of ``directory`` (its subdirectories' own blocks and inodes, not
    what they hold, whose names go into ``below``); it stops at the first entry past the
    bounds."""
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                facts = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since it was listed
            if facts.st_dev != device:
                continue  # a mount point: another filesystem
            is_directory = stat.S_ISDIR(facts.st_mode)
            if facts.st_nlink > 1 and not is_directory:
                if facts.st_ino in linked:
                    continue
                linked.add(facts.st_ino)
            tally.size_bytes += facts.st_blocks * 512
            tally.inodes += 1
            if tally.past:
                break
            if is_directory:
                below.append(entry.name)


def _next_directory(stack: list[tuple[int, list[str]]], device: int) -> int | None:
    """The next directory to list, opened in the deepest one with names left (those with
    none are closed); None once the walk is done."""
    while stack:
        parent, names = stack[-1]
        if not names:
            stack.pop()
            os.close(parent)
            continue
        try:
            child = os.open(names.pop(), _DIRECTORY, dir_fd=parent)
        except OSError:
            continue  # gone, or no longer a directory (a link now: not followed)
        if os.fstat(child).st_dev != device:
            os.close(child)
            continue
        if len(stack) > MAX_DEPTH:
            os.close(child)
            raise TreeTooDeepError(f"directories nested more than {MAX_DEPTH} levels deep")
        return child
    return None


def directory_usage(root: Path, *, stop_above: Usage | None = None) -> Usage:
    """Bytes allocated to ``root`` and everything under it, and its inodes (nothing when it
    does not exist); the walk ends as soon as either figure passes ``stop_above``'s, and
    returns the count so far."""
    try:
        top = os.open(root, _DIRECTORY)
    except FileNotFoundError:
        return Usage(0, 0)
    opened: int | None = top
    facts = os.fstat(top)
    device = facts.st_dev
    tally = _Tally(facts.st_blocks * 512, 1, math.inf, math.inf)
    if stop_above is not None:
        tally.byte_bound, tally.inode_bound = stop_above
    linked: set[int] = set()
    stack: list[tuple[int, list[str]]] = []
    try:
        while opened is not None:
            below: list[str] = []
            stack.append((opened, below))
            if tally.past:
                break
            _list(opened, device, linked, below, tally)
            opened = _next_directory(stack, device)
    finally:
        for directory, _ in stack:
            os.close(directory)
    return Usage(tally.size_bytes, tally.inodes)
