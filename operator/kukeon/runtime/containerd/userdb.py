"""The image's user database: /etc/passwd and /etc/group, read from its layers and resolved.

A container's ``user`` (or the image config's ``User``) may name a user and a group; runc
wants numbers. :func:`read_image_user_database` reads the two files out of the image's
layer blobs in the content store (top layer first, whiteouts and opaque directories
honoured) without mounting the image, and :func:`resolve_user` turns the ``user`` text into
the uid, gid, supplementary gids and home directory, as Docker does. The parsing and the
resolution are pure; only the layer reading touches the content store (decompression runs
off the event loop).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Final, NamedTuple

from kukeon.runtime.containerd.layerread import (
    LayerSource,
    Member,
    StopReading,
    normalised,
    read_layer,
)
from kukeon.runtime.containerd.specerrors import FieldError

USER_DATABASE_FILES: Final = ("etc/passwd", "etc/group")
_MAX_USER_DATABASE_BYTES: Final = 4 * 1024 * 1024
_MAX_ID: Final = 2**32 - 2


# --- parsing and resolving ----------------------------------------------------------------


class PasswdEntry(NamedTuple):
    """One line of /etc/passwd, as much as the spec needs."""

    name: str
    uid: int
    gid: int
    home: str


class GroupEntry(NamedTuple):
    """One line of /etc/group."""

    name: str
    gid: int
    members: frozenset[str]


class ResolvedUser(NamedTuple):
    """Who the container's process runs as."""

    uid: int
    gid: int
    additional_gids: list[int]
    home: str


def parse_passwd(text: str) -> list[PasswdEntry]:
    """The entries of an /etc/passwd; comments and malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) < 4 or line.startswith("#"):
            continue
        try:
            uid, gid = int(parts[2]), int(parts[3])
        except ValueError:
            continue
        home = parts[5] if len(parts) > 5 and parts[5] else "/"
        entries.append(PasswdEntry(parts[0], uid, gid, home))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """The entries of an /etc/group; comments and malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) < 3 or line.startswith("#"):
            continue
        try:
            gid = int(parts[2])
        except ValueError:
            continue
        members = frozenset(m for m in (parts[3].split(",") if len(parts) > 3 else []) if m)
        entries.append(GroupEntry(parts[0], gid, members))
    return entries


def resolve_user(
    container_user: str | None, image_user: str, *, passwd: str | None, group: str | None
) -> ResolvedUser:
    """uid, gid, supplementary gids and home of the container's (or else the image's) user.

    ``container_user``/``image_user`` are ``user``, ``uid``, ``user:group`` or ``uid:gid``
    (root when both are empty); ``passwd``/``group`` are the image's files (``None`` when it
    has none). A name the files do not hold is a :class:`FieldError` on ``user`` (or on
    ``image config User`` when the image's user is the one used).
    """
    text = container_user or image_user or "0"
    field = "user" if container_user else "image config User"
    user_part, group_part = check_user(text, field)
    users = parse_passwd(passwd) if passwd is not None else []
    groups = parse_group(group) if group is not None else []

    uid, entry = _resolve_uid(user_part, field, users, has_passwd=passwd is not None)
    if group_part:
        gid = _resolve_gid(group_part, field, groups, has_group=group is not None)
    else:
        gid = entry.gid if entry is not None else 0

    additional: list[int] = []
    if entry is not None:
        additional = sorted({g.gid for g in groups if entry.name in g.members} - {gid})
    home = entry.home if entry is not None else ("/root" if uid == 0 else "/")
    return ResolvedUser(uid, gid, additional, home)


def check_user(text: str, field: str = "user") -> tuple[str, str]:
    """The user and group parts of ``user``, ``uid``, ``user:group`` or ``uid:gid``.

    What can be told without the image: the shape, and numeric ids in range. A name is
    resolved against the image's files later (``resolve_user``)."""
    user_part, colon, group_part = text.partition(":")
    if not user_part or (colon and not group_part) or ":" in group_part:
        raise FieldError(field, f"{text!r} must be user, uid, user:group or uid:gid")
    for part in (user_part, group_part):
        if _is_number(part):
            _check_id(int(part), field)
        elif part[:1] in ("-", "+"):
            # `-1` is no id (ids are 0 to 2^32-2) and POSIX names do not begin with '-';
            # such a part was looked up as a name in the image and the cell failed there.
            raise FieldError(
                field,
                f"{part!r} is neither an id (0 to {_MAX_ID}, digits only) nor a user or group "
                "name (which may not begin with '-' or '+')",
            )
        elif any(c.isspace() or not c.isprintable() or c == "/" for c in part):
            raise FieldError(field, f"{part!r} is not a user or group name")
    return user_part, group_part


def _resolve_uid(
    user: str, field: str, users: Sequence[PasswdEntry], *, has_passwd: bool
) -> tuple[int, PasswdEntry | None]:
    """The uid of ``user`` and its passwd entry (``None`` for a uid the image does not list)."""
    if _is_number(user):
        uid = _check_id(int(user), field)
        return uid, next((e for e in users if e.uid == uid), None)
    if not has_passwd:
        raise FieldError(field, f"user {user!r} cannot be resolved: the image has no /etc/passwd")
    entry = next((e for e in users if e.name == user), None)
    if entry is None:
        raise FieldError(field, f"user {user!r} not found in the image's /etc/passwd")
    return entry.uid, entry


def _resolve_gid(group: str, field: str, groups: Sequence[GroupEntry], *, has_group: bool) -> int:
    if _is_number(group):
        return _check_id(int(group), field)
    if not has_group:
        raise FieldError(field, f"group {group!r} cannot be resolved: the image has no /etc/group")
    entry = next((g for g in groups if g.name == group), None)
    if entry is None:
        raise FieldError(field, f"group {group!r} not found in the image's /etc/group")
    return entry.gid


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` is true of '²', which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _check_id(value: int, field: str) -> int:
    if value > _MAX_ID:
        raise FieldError(field, f"id {value} is out of range (at most {_MAX_ID})")
    return value


# --- reading the files out of the image's layers ------------------------------------------


class ImageLayer(NamedTuple):
    """A layer blob as the manifest lists it."""

    media_type: str
    digest: str


async def read_image_user_database(
    store: LayerSource, layers: Sequence[ImageLayer]
) -> tuple[str | None, str | None]:
    """The image's /etc/passwd and /etc/group text (``None`` for one it does not have).

    Layers are read from the top down, honouring whiteouts, and reading stops once both
    files are settled, so a user name in ``user`` can be resolved without mounting the
    image. Each layer streams through ``layerread`` (nothing but the two files, at most
    ``_MAX_USER_DATABASE_BYTES`` each, is kept); gzip, zstd and plain layers alike. A layer
    on the way that does not read raises ``ValueError`` naming it.
    """
    found: dict[str, str | None] = {}
    for layer in reversed(layers):
        wanted = [f for f in USER_DATABASE_FILES if f not in found]
        found.update(await _user_files_in_layer(store, layer.digest, wanted))
        if len(found) == len(USER_DATABASE_FILES):
            break
    return found.get("etc/passwd"), found.get("etc/group")


class _UserFiles:
    """Visits a layer's members for the wanted files: their last entry, content (the first
    ``_MAX_USER_DATABASE_BYTES``) or kind, and the whiteouts and opaque directories that
    delete them."""

    def __init__(self, wanted: Sequence[str], *, links: dict[str, list[str]] | None = None) -> None:
        self.wanted = frozenset(wanted)
        self.texts: dict[str, str] = {}
        self.others: set[str] = set()
        """Wanted paths this layer replaces with something not a file."""
        self.deleted: set[str] = set()
        self.opaque_dirs: set[str] = set()
        self.hardlinks: dict[str, str] = {}
        """Wanted paths that are a hard link, and the file they link (read on a second pass)."""
        self.links = links or {}
        """On the second pass: the link targets to read, and the wanted path each stands for."""

    def member(self, member: Member) -> int:
        directory, base = posixpath.split(member.name)
        if base == ".wh..wh..opq":
            self.opaque_dirs.add(directory)
        elif base.startswith(".wh."):
            deleted = posixpath.join(directory, base[len(".wh.") :])
            if deleted in self.wanted:
                self.deleted.add(deleted)
        elif member.name in self.links and member.kind == "file":
            return _MAX_USER_DATABASE_BYTES
        elif member.name in self.wanted:
            self.texts.pop(member.name, None)  # the last entry of a name is what unpacks
            self.hardlinks.pop(member.name, None)
            self.others.discard(member.name)
            if member.kind == "file":
                return _MAX_USER_DATABASE_BYTES
            if member.kind == "hardlink":
                self.hardlinks[member.name] = normalised(member.linkname)
            else:
                self.others.add(member.name)
        return 0

    def content(self, member: Member, data: bytes) -> None:
        for path in self.links.get(member.name, [member.name]):
            self.texts[path] = data.decode("utf-8", errors="replace")
        # The whole of a file settles it whatever comes after it (a whiteout of it in the
        # same layer would be a malformed layer): once every wanted file is read, stop.
        if not self.links and self.wanted <= self.texts.keys():
            raise StopReading

    def settled(self) -> dict[str, str | None]:
        """The wanted files this layer settles: their text, or ``None`` when it deletes them."""
        settled: dict[str, str | None] = {}
        for path in self.wanted:
            if path in self.texts or path in self.hardlinks:
                settled[path] = self.texts.get(path)
            elif path in self.others or path in self.deleted:
                settled[path] = None
            elif posixpath.dirname(path) in self.opaque_dirs:
                settled[path] = None  # hidden below
        return settled


async def _user_files_in_layer(
    store: LayerSource, digest: str, wanted: Sequence[str]
) -> dict[str, str | None]:
    """The wanted files layer ``digest`` settles: their text, or ``None`` when it deletes them."""
    visitor = await read_layer(store, digest, lambda: _UserFiles(wanted))
    if visitor.hardlinks:
        # A hard link's content is its target's, which came earlier in the stream.
        links: dict[str, list[str]] = {}
        for path, target in visitor.hardlinks.items():
            links.setdefault(target, []).append(path)
        second = await read_layer(store, digest, lambda: _UserFiles((), links=links))
        visitor.texts.update(second.texts)
    return visitor.settled()
