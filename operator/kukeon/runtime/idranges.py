"""User-namespace id ranges of realms on this node: one 65536-id range per realm, kept.

A cell run in a user namespace (Kubernetes' `hostUsers: false`) maps its ids 0..65535 to a
range of host ids that no host account owns, so the container's root is no one on the host:
a host account with the container's in-container uid cannot read its /proc/PID/environ, nor
its files through /proc/PID/root. The range is the realm's (realms are kukeon's tenancy
boundary): every cell of a realm on this node shares it, so an image's rootfs shifted to it
(a remapped snapshot) is shared by them too, and two realms never share ids.

Ranges come from a pool kukeond is configured with (`first_id`, `ranges` of 65536 ids). A
range that overlaps a host account (a uid of /etc/passwd, a gid of /etc/group) or an
/etc/subuid or /etc/subgid entry of a user other than ``subid_user`` (the entries an
administrator may give kukeond itself) is never handed out, and one already handed out that
a host account has since come to overlap is refused (the account could read the realm's
files) rather than quietly kept or moved (the realm's files on disk are owned by it).

Which realm has which range is recorded in a state file under kukeond's state directory,
replaced atomically under an exclusive ``flock``, so a restart of kukeond (or a second
process on the same state directory) keeps every realm's range; an unreadable state file is
an error, never a fresh start (that would give a realm's ids to another). A recorded range
stays the realm's even when the pool's settings change later (its files are owned by it);
new ranges avoid every recorded one.

Every function here blocks (file lock, reads of /etc): callers run them on a host thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kukeon.fileio import write_atomically
from kukeon.runtime.hostfiles import make_dirs

log = logging.getLogger(__name__)

RANGE_SIZE: Final = 65536
"""Ids per range: a container's 0..65535, as Kubernetes' and podman's defaults."""
MAX_ID: Final = 4294967294
"""The highest valid id ((uid_t)-1 is "no id")."""
DEFAULT_FIRST_ID: Final = 0x70000000
"""Above systemd's container range (0x00080000-0x6FFFFFFF, systemd-nspawn's and
machined's), below its foreign range (0x7FFE0000): ids no distribution gives accounts."""
DEFAULT_RANGES: Final = 256
"""256 realms per node (16 Mi ids): up to 0x70FFFFFF."""
DEFAULT_SUBID_USER: Final = "kukeon"
STATE_VERSION: Final = 1


class IdRangeError(Exception):
    """No range can be given (pool exhausted, a clash with a host account, bad state)."""


@dataclass(frozen=True, slots=True, order=True)
class IdRange:
    """Host ids ``base`` .. ``base + size - 1``, a container's 0 .. ``size - 1``."""

    base: int
    size: int = RANGE_SIZE

    @property
    def last(self) -> int:
        return self.base + self.size - 1

    def overlaps(self, start: int, count: int) -> bool:
        return start <= self.last and self.base < start + count

    def to_host(self, inside: int) -> int:
        """The host id of the container's id ``inside``; ValueError when it is not mapped."""
        if not 0 <= inside < self.size:
            raise ValueError(f"id {inside} is outside the user namespace's 0..{self.size - 1}")
        return self.base + inside

    def oci_mappings(self) -> list[dict[str, int]]:
        """The OCI runtime spec's `linux.uidMappings` (and `gidMappings`): one extent."""
        return [{"containerID": 0, "hostID": self.base, "size": self.size}]

    def __str__(self) -> str:
        return f"{self.base}-{self.last}"


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """kukeond's pool: ``ranges`` ranges of 65536 ids from ``first_id``."""

    first_id: int = DEFAULT_FIRST_ID
    ranges: int = DEFAULT_RANGES
    subid_user: str = DEFAULT_SUBID_USER
    """The user whose /etc/subuid and /etc/subgid entries the pool may overlap."""

    def __post_init__(self) -> None:
        if self.first_id < RANGE_SIZE:
            raise IdRangeError(
                f"the user-namespace pool's first id {self.first_id} is below {RANGE_SIZE}: "
                "the ids of host accounts and of nobody (65534)"
            )
        if self.ranges < 1:
            raise IdRangeError(f"the user-namespace pool has {self.ranges} ranges")
        if self.first_id + self.ranges * RANGE_SIZE - 1 > MAX_ID:
            raise IdRangeError(
                f"the user-namespace pool {self.first_id} + {self.ranges} x {RANGE_SIZE} "
                f"goes past the highest id {MAX_ID}"
            )

    def candidates(self) -> Iterator[IdRange]:
        for index in range(self.ranges):
            yield IdRange(self.first_id + index * RANGE_SIZE)


@dataclass(frozen=True, slots=True)
class HostIds:
    """The ids host accounts own, read from an /etc directory."""

    uids: Mapping[int, str]
    gids: Mapping[int, str]
    subids: tuple[tuple[str, str, int, int], ...]
    """(file, user, start, count) of every /etc/subuid and /etc/subgid entry of other users."""

    def clash(self, candidate: IdRange) -> str | None:
        """What host account ``candidate`` overlaps, in words; None when it overlaps none."""
        for uid, name in sorted(self.uids.items()):
            if candidate.overlaps(uid, 1):
                return f"uid {uid} ({name}) of /etc/passwd"
        for gid, name in sorted(self.gids.items()):
            if candidate.overlaps(gid, 1):
                return f"gid {gid} ({name}) of /etc/group"
        for file, user, start, count in self.subids:
            if candidate.overlaps(start, count):
                return f"/etc/{file} entry {user}:{start}:{count}"
        return None


def _colon_lines(path: Path) -> Iterator[list[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.split(":")


def _ids(path: Path) -> dict[int, str]:
    """name:x:ID:... files (/etc/passwd, /etc/group): id -> name."""
    owned: dict[int, str] = {}
    for fields in _colon_lines(path):
        if len(fields) >= 3 and fields[2].strip().isdigit():
            owned.setdefault(int(fields[2]), fields[0])
    return owned


def _subids(etc: Path, name: str, subid_user: str) -> Iterator[tuple[str, str, int, int]]:
    for fields in _colon_lines(etc / name):
        if len(fields) != 3 or fields[0] == subid_user:
            continue
        start, count = fields[1].strip(), fields[2].strip()
        if start.isdigit() and count.isdigit():
            yield name, fields[0], int(start), int(count)


def read_host_ids(etc: Path = Path("/etc"), *, subid_user: str = DEFAULT_SUBID_USER) -> HostIds:
    """The host's accounts and the sub-id entries of users other than ``subid_user``."""
    subids = [*_subids(etc, "subuid", subid_user), *_subids(etc, "subgid", subid_user)]
    return HostIds(uids=_ids(etc / "passwd"), gids=_ids(etc / "group"), subids=tuple(subids))


@contextlib.contextmanager
def _locked(state_file: Path) -> Iterator[None]:
    make_dirs(state_file.parent)
    fd = os.open(state_file.with_name(state_file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _load(state_file: Path) -> dict[str, IdRange]:
    try:
        raw = state_file.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        document = json.loads(raw)
        if document.get("version") != STATE_VERSION:
            raise ValueError(f"version {document.get('version')!r}, not {STATE_VERSION}")
        return {
            str(realm): IdRange(int(entry["base"]), int(entry["size"]))
            for realm, entry in document["ranges"].items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        # Never a fresh start: that would give a realm's ids (and files) to another realm.
        raise IdRangeError(
            f"the user-namespace ranges file {state_file} is unreadable ({error}); "
            "repair it or, with no cell of hostUsers: false on this node, remove it"
        ) from error


def _save(state_file: Path, ranges: Mapping[str, IdRange]) -> None:
    document = {
        "version": STATE_VERSION,
        "ranges": {
            realm: {"base": idrange.base, "size": idrange.size}
            for realm, idrange in sorted(ranges.items())
        },
    }
    write_atomically(state_file, json.dumps(document, indent=2) + "\n", mode=0o600)


def _free(candidates: Iterable[IdRange], taken: Iterable[IdRange], host: HostIds) -> IdRange | None:
    used = list(taken)
    for candidate in candidates:
        if any(candidate.overlaps(other.base, other.size) for other in used):
            continue
        clash = host.clash(candidate)
        if clash is not None:
            log.info("user-namespace range %s skipped: it overlaps %s", candidate, clash)
            continue
        return candidate
    return None


class RangeAllocator:
    """The realms' ranges on this node, recorded in ``state_file``."""

    def __init__(
        self, state_file: Path, settings: PoolSettings, *, etc: Path = Path("/etc")
    ) -> None:
        self.state_file = state_file
        self.settings = settings
        self._etc = etc

    def _host(self) -> HostIds:
        return read_host_ids(self._etc, subid_user=self.settings.subid_user)

    def allocated(self) -> dict[str, IdRange]:
        """Every realm's recorded range."""
        with _locked(self.state_file):
            return _load(self.state_file)

    def range_of(self, realm: str) -> IdRange | None:
        """The realm's recorded range, None when it has none (nothing is allocated)."""
        return self.allocated().get(realm)

    def ensure(self, realm: str) -> IdRange:
        """The realm's range: the recorded one, else the first free one of the pool, recorded.

        Raises :class:`IdRangeError` when the pool has no free range, or when the recorded
        range now overlaps a host account (which could read the realm's files).
        """
        with _locked(self.state_file):
            ranges = _load(self.state_file)
            host = self._host()
            recorded = ranges.get(realm)
            if recorded is not None:
                clash = host.clash(recorded)
                if clash is not None:
                    raise IdRangeError(
                        f"realm {realm!r}'s user-namespace range {recorded} overlaps {clash}: "
                        "that account could read the realm's files; move the account"
                    )
                return recorded
            chosen = _free(self.settings.candidates(), ranges.values(), host)
            if chosen is None:
                raise IdRangeError(
                    f"no free user-namespace range for realm {realm!r}: the pool's "
                    f"{self.settings.ranges} ranges from {self.settings.first_id} are "
                    "taken by other realms or overlap host accounts"
                )
            ranges[realm] = chosen
            _save(self.state_file, ranges)
            log.info("realm %r got the user-namespace range %s", realm, chosen)
            return chosen

    def release(self, realm: str) -> bool:
        """Forget the realm's range (its realm is gone from this node); False if it had none."""
        with _locked(self.state_file):
            ranges = _load(self.state_file)
            if ranges.pop(realm, None) is None:
                return False
            _save(self.state_file, ranges)
            return True
