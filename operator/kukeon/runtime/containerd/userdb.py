"""The image's user database: /etc/passwd and /etc/group, read from its layers and resolved.

A container's ``user`` (or the image config's ``User``) may name a user and a group; runc
wants numbers. :func:`read_image_user_database` reads the two files out of the image's
layer blobs in the content store (top layer first, as overlayfs shows them: whiteouts and
opaque directories honoured, of the files and of ``etc`` itself, and a symlinked ``etc`` or
file followed inside the image, never on the host) without mounting the image, and
:func:`resolve_user` turns the ``user`` text into the uid, gid, supplementary gids and
home directory, as Docker does. The parsing and the
resolution are pure; only the layer reading touches the content store (decompression runs
off the event loop).
"""

from __future__ import annotations

import posixpath
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final, NamedTuple

from kukeon.runtime.containerd.imagefs import resolve_files
from kukeon.runtime.containerd.layerread import ImageLayer as ImageLayer
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
"""How much of each file is read: the bound keeps an image's megabytes out of kukeond."""
_MAX_ID: Final = 2**31 - 1
"""runc's bound (its libcontainer/user: 'uids and gids must be in range 0-2147483647'),
below the kernel's 2^32-2: a larger id failed the container's create on the node, retried
for ever as an unexpected error."""


# --- parsing and resolving ----------------------------------------------------------------


class CutText(str):
    """The first ``_MAX_USER_DATABASE_BYTES`` of a larger file, up to its last whole line
    (a line cut short would give a wrong gid or home); ``size`` is the whole file's, so a
    name not found in it is said to be not found in the part read."""

    size: int

    def __new__(cls, text: str, size: int) -> CutText:
        cut = super().__new__(cls, text)
        cut.size = size
        return cut

    def __reduce__(self) -> tuple[type[CutText], tuple[str, int]]:
        return (CutText, (str(self), self.size))


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


_RESOLVED_KEPT: Final = 256
_resolved: OrderedDict[tuple[object, ...], ResolvedUser] = OrderedDict()
"""What ``resolve_user`` found, by its arguments (the files by length and hash): the spec
is built at every pass on the event loop, and parsing an image's 4 MiB /etc/group of short
lines takes over a second (an image author's file stalled every tenant's cells each pass)."""


def _fingerprint(text: str | None) -> tuple[int, int, int] | None:
    # str caches its hash: the image's files, kept by image digest, cost nothing again;
    # the hash is keyed per process (PYTHONHASHSEED), so no image can aim a collision.
    # A CutText equal to a whole file is not answered alike (what it may hold past the
    # part read is asked for), so whether the text is cut, and its file's size, count.
    if text is None:
        return None
    return (len(text), hash(text), text.size if isinstance(text, CutText) else -1)


def resolve_user(
    container_user: str | None, image_user: str, *, passwd: str | None, group: str | None
) -> ResolvedUser:
    """``resolve_user_uncached``'s answer, remembered for the same arguments (see ``_resolved``);
    a name not found is looked for again each time (it raises)."""
    key = (container_user, image_user, _fingerprint(passwd), _fingerprint(group))
    found = _resolved.get(key)
    if found is None:
        found = _resolved[key] = resolve_user_uncached(
            container_user, image_user, passwd=passwd, group=group
        )
        if len(_resolved) > _RESOLVED_KEPT:
            _resolved.popitem(last=False)
    else:
        _resolved.move_to_end(key)
    return found._replace(additional_gids=list(found.additional_gids))


def resolve_user_uncached(
    container_user: str | None, image_user: str, *, passwd: str | None, group: str | None
) -> ResolvedUser:
    """uid, gid, supplementary gids and home of the container's (or else the image's) user.

    ``container_user``/``image_user`` are ``user``, ``uid``, ``user:group`` or ``uid:gid``
    (root when both are empty); ``passwd``/``group`` are the image's files (``None`` when it
    has none). A name the files do not hold is a :class:`FieldError` on ``user`` (or on
    ``image config User`` when the image's user is the one used), which says when the file
    was larger than what was read of it (a ``CutText``). Supplementary groups (the
    image's groups listing the user) come only with ``user`` or ``uid``, and the home is
    the passwd entry's, else ``/``: docker's rules. Where those rules need what a cut file
    may hold past the part read (a uid it does not list, given without a gid; the groups
    listing a user given without a group), the answer is unknown: a ``FieldError`` asking
    for the ids (``uid:gid`` is then taken as given, home ``/``).
    """
    text = container_user or image_user or "0"
    field = "user" if container_user else "image config User"
    user_part, group_part = check_user(text, field)
    users = parse_passwd(passwd) if passwd is not None else []
    groups = parse_group(group) if group is not None else []

    uid, entry = _resolve_uid(user_part, field, users, text=passwd)
    if entry is None and isinstance(passwd, CutText) and not group_part:
        # Not in the part read is not "not listed": its gid and home may be further down.
        raise FieldError(
            field,
            f"uid {uid}'s gid and home are not known: {_part_read('passwd', passwd)} and "
            f"uid {uid} is not in them (give the user as uid:gid; HOME is then / unless env "
            "sets it)",
        )
    if group_part:
        gid = _resolve_gid(group_part, field, groups, text=group)
    else:
        gid = _image_id(entry.gid, "gid", entry.name, field) if entry is not None else 0

    # docker's rules (runc's user lookup): the groups listing the user are added only when
    # `user` names no group (`app:app` runs with exactly that group, as `docker run -u`);
    # a uid the image does not list has no home but `/`, root's included.
    additional: list[int] = []
    if entry is not None and not group_part:
        if isinstance(group, CutText):  # a group listing the user may be further down
            raise FieldError(
                field,
                f"the groups listing {entry.name!r} are not known: {_part_read('group', group)} "
                "(give the user as user:group or uid:gid, which take no supplementary groups)",
            )
        listing = [g for g in groups if entry.name in g.members]
        ids = {_image_id(g.gid, "gid", g.name, field, file="group") for g in listing}
        additional = sorted(ids - {gid})
    home = entry.home if entry is not None else "/"
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
    user: str, field: str, users: Sequence[PasswdEntry], *, text: str | None
) -> tuple[int, PasswdEntry | None]:
    """The uid of ``user`` and its passwd entry (``None`` for a uid the image does not list)."""
    if _is_number(user):
        uid = _check_id(int(user), field)
        return uid, next((e for e in users if e.uid == uid), None)
    if text is None:
        raise FieldError(field, f"user {user!r} cannot be resolved: the image has no /etc/passwd")
    entry = next((e for e in users if e.name == user), None)
    if entry is None:
        raise FieldError(field, _not_found("user", user, "passwd", text))
    return _image_id(entry.uid, "uid", user, field), entry


def _resolve_gid(group: str, field: str, groups: Sequence[GroupEntry], *, text: str | None) -> int:
    if _is_number(group):
        return _check_id(int(group), field)
    if text is None:
        raise FieldError(field, f"group {group!r} cannot be resolved: the image has no /etc/group")
    entry = next((g for g in groups if g.name == group), None)
    if entry is None:
        raise FieldError(field, _not_found("group", group, "group", text))
    return _image_id(entry.gid, "gid", group, field, file="group")


def _not_found(what: str, name: str, file: str, text: str) -> str:
    """Why ``name`` is not resolved: not in the image's file, or not in the part of it read
    (a name further down is there, and only a number names it without the file)."""
    said = f"{what} {name!r} not found in the image's /etc/{file}"
    if not isinstance(text, CutText):
        return said
    numbers = "uid:gid" if what == "user" else "a gid"
    return (
        f"{said}: the file is {text.size} bytes; kukeon reads its first "
        f"{_MAX_USER_DATABASE_BYTES >> 20} MiB and {name!r} is not in them (give the {what} "
        f"as {numbers})"
    )


def _part_read(file: str, text: CutText) -> str:
    return (
        f"the image's /etc/{file} is {text.size} bytes; kukeon reads its first "
        f"{_MAX_USER_DATABASE_BYTES >> 20} MiB"
    )


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` is true of '²', which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _check_id(value: int, field: str) -> int:
    if value > _MAX_ID:
        raise FieldError(field, f"id {value} is out of range (at most {_MAX_ID})")
    return value


def _image_id(value: int, kind: str, name: str, field: str, *, file: str = "passwd") -> int:
    """An id the image's /etc/passwd or /etc/group gives ``name``, if runc can take it (the
    image's author wrote it: -1, 2^32-1 or more failed the create on the node)."""
    if not 0 <= value <= _MAX_ID:
        raise FieldError(
            field,
            f"{name!r} has {kind} {value} in the image's /etc/{file}, out of range "
            f"(0 to {_MAX_ID})",
        )
    return value


# --- reading the files out of the image's layers ------------------------------------------


async def read_image_user_database(
    store: LayerSource, layers: Sequence[ImageLayer]
) -> tuple[str | None, str | None]:
    """The image's /etc/passwd and /etc/group text (``None`` for one it does not have).

    Layers are read from the top down, as overlayfs merges them, and reading stops once
    both files are settled, so a user name in ``user`` can be resolved without mounting the
    image: a whiteout or an opaque directory hides a file below it, and so does one of
    ``etc`` (or of the image's root), or an upper ``etc`` that is not a directory. Where the
    layer that settles a file has it, or ``etc``, as a symlink, the file is what the link
    leads to inside the image (``imagefs.resolve_files``: every layer's names merged,
    absolute targets from the image's root), read the same way. Each layer streams through
    ``layerread`` (nothing but the wanted files, at most ``_MAX_USER_DATABASE_BYTES`` each,
    is kept: a larger file is a ``CutText``); gzip, zstd and plain layers alike. A layer on
    the way that does not read raises ``ValueError`` naming it.
    """
    found, linked = await _read_files(store, layers, USER_DATABASE_FILES)
    if linked:
        targets = await resolve_files(store, layers, sorted(linked))
        real = sorted({target for target in targets.values() if target is not None})
        texts, still_linked = await _read_files(store, layers, real)
        if still_linked:  # a resolved path has no symlink on its way: a malformed image
            raise ValueError(f"/{sorted(still_linked)[0]} cannot be resolved in the image")
        for path, target in targets.items():
            found[path] = texts.get(target) if target is not None else None
    return found.get("etc/passwd"), found.get("etc/group")


async def _read_files(
    store: LayerSource, layers: Sequence[ImageLayer], paths: Sequence[str]
) -> tuple[dict[str, str | None], set[str]]:
    """The text of each of ``paths`` (None: not a file in the image), read from the top
    layer down; and those the layer settling them has (or has an ancestor of) as a symlink."""
    found: dict[str, str | None] = {}
    linked: set[str] = set()
    for layer in reversed(layers):
        wanted = [path for path in paths if path not in found and path not in linked]
        if not wanted:
            break
        settled, through_links = await _user_files_in_layer(store, layer.digest, wanted)
        found.update(settled)
        linked |= through_links
    return found, linked


def _file_text(member: Member, data: bytes) -> str:
    """The text of a file of the image read whole, or its whole lines in a CutText."""
    if len(data) >= member.size:
        return data.decode("utf-8", errors="replace")
    whole_lines = data[: data.rfind(b"\n") + 1]
    return CutText(whole_lines.decode("utf-8", errors="replace"), member.size)


class _UserFiles:
    """Visits a layer's members for the wanted files: their last entry, content (the first
    ``_MAX_USER_DATABASE_BYTES``, a ``CutText`` when there is more) or kind, and what hides
    them from the layers below: whiteouts and opaque directories (of them or of a directory
    above them), a directory above them replaced by something else; symlinks among them are
    noted."""

    def __init__(self, wanted: Sequence[str], *, links: dict[str, list[str]] | None = None) -> None:
        self.wanted = frozenset(wanted)
        self.above = frozenset(parent for path in wanted for parent in _parents(path))
        """The directories the wanted files are in, and theirs, up to the image's root."""
        self.texts: dict[str, str] = {}
        self.others: set[str] = set()
        """Wanted paths this layer replaces with something not a file nor a symlink."""
        self.symlinks: set[str] = set()
        self.deleted: set[str] = set()
        """Wanted paths, and directories above them, this layer whites out."""
        self.replaced: dict[str, str] = {}
        """Directories above the wanted paths that this layer has as something else: kind."""
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
            if deleted in self.wanted or deleted in self.above:
                self.deleted.add(deleted)
        elif member.name in self.links and member.kind == "file":
            return _MAX_USER_DATABASE_BYTES
        elif member.name in self.above:
            # An entry after its own whiteout replaces it (containerd's overlay applier
            # removes the whiteout): a directory then merges with the one below.
            self.deleted.discard(member.name)
            if member.kind == "dir":
                self.replaced.pop(member.name, None)
            else:
                self.replaced[member.name] = member.kind
        elif member.name in self.wanted:
            self.deleted.discard(member.name)
            self.texts.pop(member.name, None)  # the last entry of a name is what unpacks
            self.hardlinks.pop(member.name, None)
            self.others.discard(member.name)
            self.symlinks.discard(member.name)
            if member.kind == "file":
                return _MAX_USER_DATABASE_BYTES
            if member.kind == "hardlink":
                self.hardlinks[member.name] = normalised(member.linkname)
            elif member.kind == "symlink":
                self.symlinks.add(member.name)
            else:
                self.others.add(member.name)
        return 0

    def content(self, member: Member, data: bytes) -> None:
        text = _file_text(member, data)
        for path in self.links.get(member.name, [member.name]):
            self.texts[path] = text
        # The whole of a file settles it whatever comes after it (a whiteout of it in the
        # same layer would be a malformed layer): once every wanted file is read, stop.
        if not self.links and self.wanted <= self.texts.keys():
            raise StopReading

    def settled(self) -> tuple[dict[str, str | None], set[str]]:
        """The wanted files this layer settles: their text, or ``None`` when it deletes or
        hides them; and those it settles as reached through a symlink."""
        settled: dict[str, str | None] = {}
        linked: set[str] = set()
        for path in self.wanted:
            if path in self.texts or path in self.hardlinks:
                settled[path] = self.texts.get(path)
            elif path in self.symlinks:
                linked.add(path)
            elif path in self.others:
                settled[path] = None
            else:
                cover = self._cover(path)
                if cover == "symlink":
                    linked.add(path)
                elif cover == "hidden":
                    settled[path] = None
        return settled, linked

    def _cover(self, path: str) -> str | None:
        """What this layer does to ``path`` of the layers below: ``symlink`` (a directory
        above it is one here), ``hidden`` (one is something else here, or it or one is
        whited out, or opaque), or None (nothing). A directory this layer has as something
        else decides, whatever this layer whites out above it: that entry is its own."""
        parents = _parents(path)
        for parent in parents:
            if parent in self.replaced:
                return "symlink" if self.replaced[parent] == "symlink" else "hidden"
        if path in self.deleted or any(
            parent in self.deleted or parent in self.opaque_dirs for parent in parents
        ):
            return "hidden"
        return None


def _parents(path: str) -> list[str]:
    """The directories ``path`` is in, the image's root ("") first."""
    parts = path.split("/")[:-1]
    return ["", *("/".join(parts[: depth + 1]) for depth in range(len(parts)))]


async def _user_files_in_layer(
    store: LayerSource, digest: str, wanted: Sequence[str]
) -> tuple[dict[str, str | None], set[str]]:
    """The wanted files layer ``digest`` settles: their text, or ``None`` when it deletes or
    hides them; and those it has, or a directory above them, as a symlink."""
    visitor = await read_layer(store, digest, lambda: _UserFiles(wanted))
    if visitor.hardlinks:
        # A hard link's content is its target's, which came earlier in the stream.
        links: dict[str, list[str]] = {}
        for path, target in visitor.hardlinks.items():
            links.setdefault(target, []).append(path)
        second = await read_layer(store, digest, lambda: _UserFiles((), links=links))
        visitor.texts.update(second.texts)
    return visitor.settled()
