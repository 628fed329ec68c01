"""What a directory tree takes on disk, walked from the host without following a link.

``du -s`` as kukeond needs it for a tree a container writes while it is walked (its tty
state directory; its writable layer when containerd's own walk fails): blocks allocated
(``st_blocks`` x 512), a file of several hard links once, a symbolic link's own blocks and
never its target, nothing on another filesystem. Each directory is opened from its
parent's descriptor with ``O_NOFOLLOW``, so a directory swapped for a link meanwhile is not
entered, and a tree deeper than ``PATH_MAX`` is walked as any other (containerd's walk goes
by path and fails on it, "file name too long", so such a layer was never measured). Each
level holds a descriptor while its subdirectories are walked, so a tree nested deeper than
:data:`MAX_DEPTH` is refused (:class:`TreeTooDeepError`) rather than walked.
Blocking: run it in a thread.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Final

MAX_DEPTH: Final = 256
"""Directory levels below the root a walk enters (each holds a descriptor meanwhile)."""
_DIRECTORY: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeTooDeepError(Exception):
    """The tree nests directories more than :data:`MAX_DEPTH` levels below its root."""


def _list(directory: int, device: int, linked: set[int], below: list[str], room: float) -> int:
    """Bytes of the entries of ``directory`` (its subdirectories' own blocks, not what they
    hold, whose names go into ``below``); it stops at the first entry past ``room``."""
    size = 0
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
            size += facts.st_blocks * 512
            if size > room:
                break
            if is_directory:
                below.append(entry.name)
    return size


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


def directory_usage(root: Path, *, stop_above: int | None = None) -> int:
    """Bytes allocated to ``root`` and everything under it (0 when it does not exist); the
    walk ends as soon as the count passes ``stop_above``, which it then returns."""
    try:
        top = os.open(root, _DIRECTORY)
    except FileNotFoundError:
        return 0
    opened: int | None = top
    facts = os.fstat(top)
    device, total = facts.st_dev, facts.st_blocks * 512
    bound = math.inf if stop_above is None else stop_above
    linked: set[int] = set()
    stack: list[tuple[int, list[str]]] = []
    try:
        while opened is not None:
            below: list[str] = []
            stack.append((opened, below))
            if total > bound:
                break
            total += _list(opened, device, linked, below, bound - total)
            opened = _next_directory(stack, device)
    finally:
        for directory, _ in stack:
            os.close(directory)
    return total
