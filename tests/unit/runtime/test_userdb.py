"""read_image_user_database: /etc/passwd and /etc/group out of layer blobs, whiteouts honoured."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import pickle
import tarfile
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol, TypeVar

import pytest
from backports import zstd

from kukeon.runtime.containerd import userdb
from kukeon.runtime.containerd.content import ContentInfo
from kukeon.runtime.containerd.specerrors import FieldError
from kukeon.runtime.containerd.userdb import (
    CutText,
    ImageLayer,
    read_image_user_database,
    resolve_user,
)

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
TAR = "application/vnd.oci.image.layer.v1.tar"


class Feedable(Protocol):
    def feed(self, chunk: bytes) -> None: ...


Sink = TypeVar("Sink", bound=Feedable)


class ReadOnlyStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.reads: list[str] = []
        self.labels: dict[str, dict[str, str]] = {}
        self.chunk = 1024 * 1024

    def add(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    async def has_blob(self, digest: str) -> bool:
        return digest in self.blobs

    async def write_blob(
        self,
        *,
        digest: str,
        size: int,
        chunks: AsyncIterator[bytes],
        labels: Mapping[str, str] | None = None,
    ) -> None:
        raise AssertionError("reading never writes")

    async def read_blob(self, digest: str) -> bytes:
        self.reads.append(digest)
        return self.blobs[digest]

    async def info(self, digest: str) -> ContentInfo:
        return ContentInfo(digest, len(self.blobs[digest]), None, self.labels.get(digest, {}))

    async def read_through(self, digest: str, start: Callable[[], Sink]) -> Sink:
        """As ContentStore streams a blob: 1 MiB at a time."""
        self.reads.append(digest)
        sink = start()
        blob = self.blobs[digest]
        for offset in range(0, len(blob), self.chunk):
            sink.feed(blob[offset : offset + self.chunk])
        return sink


def layer_tar(entries: dict[str, bytes | str | None], *, compress: bool = True) -> bytes:
    """A layer: bytes are files, a str starting with '->' a symlink ('=>' a hard link), None
    a directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type = tarfile.LNKTYPE if content.startswith("=>") else tarfile.SYMTYPE
                info.linkname = content.removeprefix("->").removeprefix("=>")
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    return gzip.compress(data) if compress else data


def add_layer(
    store: ReadOnlyStore, entries: dict[str, bytes | str | None], **kw: bool
) -> ImageLayer:
    compress = kw.get("compress", True)
    return ImageLayer(GZIP if compress else TAR, store.add(layer_tar(entries, compress=compress)))


async def test_files_from_the_base_layer() -> None:
    store = ReadOnlyStore()
    base = add_layer(
        store,
        {"etc": None, "etc/passwd": b"root:x:0:0::/root:/bin/sh\n", "./etc/group": b"root:x:0:\n"},
    )
    top = add_layer(store, {"app/bin": b"x"}, compress=False)
    passwd, group = await read_image_user_database(store, [base, top])
    assert passwd == "root:x:0:0::/root:/bin/sh\n"
    assert group == "root:x:0:\n"


async def test_upper_layer_wins_and_reading_stops_early() -> None:
    store = ReadOnlyStore()
    base = add_layer(store, {"etc/passwd": b"old\n", "etc/group": b"oldgroup\n"})
    top = add_layer(store, {"etc/passwd": b"new\n", "etc/group": b"newgroup\n"})
    passwd, group = await read_image_user_database(store, [base, top])
    assert (passwd, group) == ("new\n", "newgroup\n")
    assert store.reads == [top.digest]


async def test_whiteout_deletes_a_lower_file() -> None:
    store = ReadOnlyStore()
    base = add_layer(store, {"etc/passwd": b"root\n", "etc/group": b"root\n"})
    top = add_layer(store, {"etc/.wh.passwd": b""})
    passwd, group = await read_image_user_database(store, [base, top])
    assert passwd is None
    assert group == "root\n"


async def test_opaque_directory_hides_lower_files() -> None:
    store = ReadOnlyStore()
    base = add_layer(store, {"etc/passwd": b"root\n", "etc/group": b"root\n"})
    top = add_layer(store, {"etc/.wh..wh..opq": b"", "etc/group": b"fresh\n"})
    passwd, group = await read_image_user_database(store, [base, top])
    assert passwd is None
    assert group == "fresh\n"


async def test_image_without_user_database() -> None:
    store = ReadOnlyStore()
    only = add_layer(store, {"bin/app": b"\x7fELF"})
    assert await read_image_user_database(store, [only]) == (None, None)
    assert await read_image_user_database(store, []) == (None, None)


async def test_a_passwd_linked_to_nothing_in_the_image_is_none() -> None:
    store = ReadOnlyStore()
    base = add_layer(store, {"etc/passwd": b"root\n", "etc/group": b"root\n"})
    top = add_layer(store, {"etc/passwd": "->/elsewhere/passwd"})
    passwd, group = await read_image_user_database(store, [base, top])
    assert passwd is None
    assert group == "root\n"


BASE: dict[str, bytes | str | None] = {"etc/passwd": b"lower\n", "etc/group": b"lowergroup\n"}


async def test_a_whiteout_of_etc_or_an_opaque_root_hides_the_lower_files() -> None:
    store = ReadOnlyStore()
    base = add_layer(store, BASE)
    tops: list[dict[str, bytes | str | None]] = [
        {".wh.etc": b""},
        {"./.wh..wh..opq": b"", "bin/x": b""},
    ]
    for top in tops:
        upper = add_layer(store, top)
        assert await read_image_user_database(store, [base, upper]) == (None, None), top
    # Whited out, then made again in the same layer: containerd's overlay applier replaces
    # the whiteout with the directory, which overlayfs merges with the one below.
    again = add_layer(store, {".wh.etc": b"", "etc": None, "etc/passwd": b"fresh\n"})
    assert await read_image_user_database(store, [base, again]) == ("fresh\n", "lowergroup\n")


async def test_an_etc_that_is_no_longer_a_directory_hides_the_lower_files() -> None:
    store = ReadOnlyStore()
    base = add_layer(store, BASE)
    top = add_layer(store, {"etc": b"a file now"})
    assert await read_image_user_database(store, [base, top]) == (None, None)


async def test_a_symlinked_etc_is_followed_inside_the_image() -> None:
    store = ReadOnlyStore()
    base = add_layer(store, {**BASE, "usr/etc/passwd": b"app:x:1000:1000::/:/bin/sh\n"})
    top = add_layer(store, {".wh.etc": b"", "etc": "->/usr/etc"})
    passwd, group = await read_image_user_database(store, [base, top])
    assert passwd == "app:x:1000:1000::/:/bin/sh\n"
    assert group is None  # /usr/etc has no group file: the lower /etc/group is not seen


async def test_a_symlinked_passwd_is_followed_inside_the_image_and_never_out_of_it() -> None:
    store = ReadOnlyStore()
    base = add_layer(store, {**BASE, "usr/lib/passwd": b"linked\n"})
    relative = add_layer(store, {"etc/passwd": "->../usr/lib/passwd"})
    assert await read_image_user_database(store, [base, relative]) == (
        "linked\n",
        "lowergroup\n",
    )
    # Up past the image's root stays at its root: its own /etc/passwd, a link to itself.
    escaping = add_layer(store, {"etc/passwd": "->../../../../etc/passwd"})
    assert await read_image_user_database(store, [base, escaping]) == (None, "lowergroup\n")
    group_link = add_layer(store, {"etc/group": "->/usr/lib/passwd"})
    assert await read_image_user_database(store, [base, group_link]) == ("lower\n", "linked\n")


async def test_a_zstd_layer_is_read_as_a_gzip_one() -> None:
    store = ReadOnlyStore()
    tar = layer_tar({"etc/passwd": b"app:x:1000:1000::/home/app:/bin/sh\n"}, compress=False)
    layer = ImageLayer(ZSTD, store.add(zstd.compress(tar)))
    cut = ImageLayer(ZSTD, store.add(zstd.compress(tar)[:-8]))
    assert await read_image_user_database(store, [layer]) == (
        "app:x:1000:1000::/home/app:/bin/sh\n",
        None,
    )
    with pytest.raises(ValueError, match=f"layer {cut.digest} cannot be read: .*truncated"):
        await read_image_user_database(store, [cut])


def _filler(prefix: str, fields: str, size: int) -> bytes:
    """Exactly ``size`` bytes of lines ``prefix<N>:<fields>``, a comment line to fill up."""
    lines = bytearray()
    number = 0
    while len(line := f"{prefix}{number}:{fields}\n".encode()) + 2 <= size - len(lines):
        lines += line
        number += 1
    return bytes(lines) + b"#" * (size - len(lines) - 1) + b"\n"


async def test_a_name_past_the_part_read_of_a_large_file_is_said_to_be_past_it() -> None:
    # Only the first 4 MiB of /etc/passwd and /etc/group are read (kukeond's memory); a user
    # listed after them was "not found in the image's /etc/passwd", which it is.
    limit = 4 * 1024 * 1024
    long = "c" * 4000  # few lines: parsing 4 MiB of short ones takes seconds
    head = _filler("u", f"x:1:1:{long}:/:/bin/sh", limit - len(b"edge:x:1234:56"))
    straddling = b"edge:x:1234:5678::/home/edge:/bin/sh\n"  # cut in its gid at the bound
    passwd_bytes = head + straddling + b"app:x:1000:1000::/home/app:/bin/sh\n"
    group_bytes = _filler("g", f"x:1:{long}", limit) + b"staff:x:50:app\n"
    store = ReadOnlyStore()
    layer = add_layer(store, {"etc/passwd": passwd_bytes, "etc/group": group_bytes})
    passwd, group = await read_image_user_database(store, [layer])
    assert isinstance(passwd, CutText)
    assert isinstance(group, CutText)
    assert (passwd.size, group.size) == (len(passwd_bytes), len(group_bytes))
    assert passwd == head.decode()  # whole lines only: never edge with gid 56
    assert pickle.loads(pickle.dumps(passwd)).size == copy.deepcopy(passwd).size == passwd.size
    assert resolve_user("u7", "", passwd=passwd, group=None).uid == 1
    past = "kukeon reads its first 4 MiB and"
    for user, why in (
        ("app", f"/etc/passwd: the file is {len(passwd_bytes)} bytes; {past} 'app' is not"),
        ("edge", f"/etc/passwd: the file is {len(passwd_bytes)} bytes; {past} 'edge' is not"),
        ("u1:staff", f"/etc/group: the file is {len(group_bytes)} bytes; {past} 'staff' is not"),
    ):
        with pytest.raises(FieldError) as cut:
            resolve_user(user, "", passwd=passwd, group=group)
        assert why in cut.value.reason
    assert cut.value.reason.endswith("in them (give the group as a gid)")
    # a file read whole still says only that the name is not in it
    with pytest.raises(FieldError) as whole:
        resolve_user("app", "", passwd=head.decode(), group=None)
    assert whole.value.reason == "user 'app' not found in the image's /etc/passwd"


GROUP: dict[str, bytes | str | None] = {"etc/group": b"staff:x:50:app\n"}


async def test_an_empty_file_in_an_upper_layer_hides_the_lower_one() -> None:
    # overlayfs shows the upper, empty /etc/passwd; its being empty asked no content of the
    # tar, so the lower file showed through and 'app' ran as 1000 where docker refuses it.
    store = ReadOnlyStore()
    base = add_layer(store, {"etc/passwd": b"app:x:1000:1000::/home/app:/bin/sh\n", **GROUP})
    empties: list[dict[str, bytes | str | None]] = [
        {"etc/passwd": b""},
        {"etc/passwd": b"", "etc/group": b""},
        {"etc/real": b"", "etc/passwd": "=>etc/real"},  # a hard link to an empty file
        {"etc/real": b"", "etc/passwd": "->real"},  # a symlink to one
        {"usr/passwd": b"", "etc/passwd": "->/usr/passwd"},
    ]
    for top in empties:
        upper = add_layer(store, top)
        passwd, group = await read_image_user_database(store, [base, upper])
        assert passwd == "", top
        assert group == ("" if "etc/group" in top else "staff:x:50:app\n"), top
        with pytest.raises(FieldError, match="'app' not found in the image's /etc/passwd"):
            resolve_user("app", "", passwd=passwd, group=group)
        assert resolve_user("1000", "", passwd=passwd, group=group) == (1000, 0, [], "/")
    # the whiteout and the opaque etc of the same upper layer still hide it
    hiding: list[dict[str, bytes | str | None]] = [
        {"etc/.wh.passwd": b""},
        {"etc/.wh..wh..opq": b"", "etc/group": b""},
    ]
    for top in hiding:
        upper = add_layer(store, top)
        assert (await read_image_user_database(store, [base, upper]))[0] is None, top
    # an empty file over a whiteout of its lower self in one layer is the empty file
    again = add_layer(store, {"etc/.wh.passwd": b"", "etc/passwd": b""})
    assert await read_image_user_database(store, [base, again]) == ("", "staff:x:50:app\n")


def test_what_a_cut_file_may_hold_past_the_part_read_is_not_guessed() -> None:
    # A uid not in the part read of a cut /etc/passwd may be listed past it: its gid and home
    # are unknown (it ran with gid 0 and home /); the groups listing a user may be past the
    # part read of a cut /etc/group (they were silently missing). Both are said, with the fix.
    passwd_whole = "app:x:1000:1000::/home/app:/bin/sh\n"
    passwd = CutText(passwd_whole, 5 * 1024 * 1024)
    group = CutText("staff:x:50:app\n", 6 * 1024 * 1024)
    with pytest.raises(FieldError) as unknown_uid:
        resolve_user("4321", "", passwd=passwd, group=None)
    assert unknown_uid.value.field == "user"
    assert unknown_uid.value.reason == (
        "uid 4321's gid and home are not known: the image's /etc/passwd is 5242880 bytes; "
        "kukeon reads its first 4 MiB and uid 4321 is not in them (give the user as uid:gid; "
        "HOME is then / unless env sets it)"
    )
    with pytest.raises(FieldError) as image_user:  # the image's USER: said of its field
        resolve_user(None, "4321", passwd=passwd, group=None)
    assert image_user.value.field == "image config User"
    for user in ("app", "1000"):
        with pytest.raises(FieldError) as unknown_groups:
            resolve_user(user, "", passwd=passwd, group=group)
        assert unknown_groups.value.reason == (
            "the groups listing 'app' are not known: the image's /etc/group is 6291456 bytes; "
            "kukeon reads its first 4 MiB (give the user as user:group or uid:gid, which take "
            "no supplementary groups)"
        )
    # what the fix asks for runs: as given, home / for a uid the part read does not list
    assert resolve_user("4321:77", "", passwd=passwd, group=group) == (4321, 77, [], "/")
    assert resolve_user("app:staff", "", passwd=passwd, group=group) == (1000, 50, [], "/home/app")
    assert resolve_user("1000", "", passwd=passwd, group=None) == (1000, 1000, [], "/home/app")
    # files read whole keep docker's answer: an unlisted uid is gid 0, home /
    whole = resolve_user("4321", "", passwd=passwd_whole, group="staff:x:50:app\n")
    assert whole == (4321, 0, [], "/")
    assert resolve_user("app", "", passwd=passwd_whole, group="staff:x:50:app\n") == (
        1000,
        1000,
        [50],
        "/home/app",
    )
    # ... and those answers, remembered, are not given for cut files of the same text
    assert resolve_user("4321", "", passwd=passwd_whole, group=None) == (4321, 0, [], "/")
    with pytest.raises(FieldError, match="uid 4321's gid and home are not known"):
        resolve_user("4321", "", passwd=passwd, group=None)
    with pytest.raises(FieldError, match="the groups listing 'app' are not known"):
        resolve_user("app", "", passwd=passwd_whole, group=group)


def test_a_user_resolved_once_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec is built at every pass, on the event loop: an image's 4 MiB /etc/group of
    short lines took over a second to parse each time (helper-235). The same arguments are
    answered from what was found; other files, users or a name not found are looked up."""
    parsed: list[int] = []
    real = userdb.parse_group

    def counting(text: str) -> list[userdb.GroupEntry]:
        parsed.append(len(text))
        return real(text)

    monkeypatch.setattr(userdb, "parse_group", counting)
    passwd = "app:x:1000:1000::/home/app:/bin/sh\n"
    group = "".join(f"g{n}:x:{n + 2000}:app\n" for n in range(3)) + "\n"
    first = resolve_user("app", "", passwd=passwd, group=group)
    first.additional_gids.append(99)  # the caller's copy: what is kept stays as found
    again = resolve_user("app", "", passwd=passwd, group="".join(group))
    assert again == (1000, 1000, [2000, 2001, 2002], "/home/app")
    assert len(parsed) == 1
    resolve_user("app", "", passwd=passwd, group=group + "g9:x:2009:app\n")
    assert len(parsed) == 2
    for _ in range(2):
        with pytest.raises(FieldError):
            resolve_user("nobody-here", "", passwd=passwd, group=group)
    assert len(parsed) == 4
