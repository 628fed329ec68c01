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

Several kukeon installations may share a host (each its own state directory, its own
kukeond), and nothing in their settings keeps their pools apart: the same default pool
would give realm A of one and realm B of the other the same host ids, and B's root could
read A's files. So every range handed out is also claimed host-wide, in a claims directory
all installations share (`DEFAULT_CLAIMS_DIR`, 0700 root): one file per installation (named
after its state file's path, saying whose it is), rewritten atomically under one exclusive
``flock`` of the directory, which every allocation holds while it picks, so a new range
avoids every range any installation has claimed. A claim lives as long as the realm's
recorded range (its containers outlive kukeond): it goes when the range is released. Each
claim carries a host-wide order; the first start after an upgrade claims the ranges the state
file already records (those of a lone installation keep their ids), and a clash claimed
before this existed (two installations' overlapping ranges) is never kept silently: the
realm whose claim came later gets no range (`IdRangeClashError`, naming the other
installation), the earlier one keeps its own and is warned about. The order of the locks is
always the state file's, then the claims directory's.

Every function here blocks (file lock, reads of /etc): callers run them on a host thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kukeon.fileio import path_problems, write_atomically
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
DEFAULT_CLAIMS_DIR: Final = Path("/var/lib/kukeon-idranges")
"""Host-wide, shared by every kukeon installation: the ranges each has handed out."""
CLAIMS_VERSION: Final = 1
CLAIMS_LOCK: Final = ".lock"
"""In the claims directory: the file every installation locks while it reads or claims."""


class IdRangeError(Exception):
    """No range can be given (pool exhausted, a clash with a host account, bad state)."""


class IdRangeClashError(IdRangeError):
    """The realm's range overlaps one another installation on this host claimed first."""


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
def _flocked(lock_file: Path) -> Iterator[None]:
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _locked(state_file: Path) -> Iterator[None]:
    make_dirs(state_file.parent)
    with _flocked(state_file.with_name(state_file.name + ".lock")):
        yield


def _ranges_of(entries: object) -> dict[str, tuple[IdRange, int]]:
    """``{realm: {"base", "size"[, "order"]}}`` -> realm: (range, order; 0 when absent)."""
    if not isinstance(entries, dict):
        raise TypeError(f"ranges are {type(entries).__name__}, not an object")
    return {
        str(realm): (IdRange(int(entry["base"]), int(entry["size"])), int(entry.get("order", 0)))
        for realm, entry in entries.items()
    }


def _load(state_file: Path) -> dict[str, IdRange]:
    try:
        raw = state_file.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        document = json.loads(raw)
        if document.get("version") != STATE_VERSION:
            raise ValueError(f"version {document.get('version')!r}, not {STATE_VERSION}")
        return {realm: idrange for realm, (idrange, _) in _ranges_of(document["ranges"]).items()}
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


@dataclass(frozen=True, slots=True)
class Claim:
    """A range an installation has given one of its realms, as the claims directory has it."""

    realm: str
    idrange: IdRange
    order: int
    """Host-wide order of claiming: the lower came first (and keeps the ids in a clash)."""


@dataclass(frozen=True, slots=True)
class Installation:
    """One installation's claims file: whose it is and the ranges it has handed out."""

    file: Path
    ranges_file: str
    """The installation's own record of its ranges (in its state directory)."""
    node: str
    claims: Mapping[str, Claim]

    def __str__(self) -> str:
        node = f", node {self.node}" if self.node else ""
        return (
            f"the kukeon installation of {Path(self.ranges_file).parent}{node} "
            f"(claims file {self.file})"
        )

    def to_json(self) -> str:
        document = {
            "version": CLAIMS_VERSION,
            "rangesFile": self.ranges_file,
            "node": self.node,
            "ranges": {
                realm: {"base": c.idrange.base, "size": c.idrange.size, "order": c.order}
                for realm, c in sorted(self.claims.items())
            },
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, file: Path, raw: bytes) -> Installation:
        document = json.loads(raw)
        if document.get("version") != CLAIMS_VERSION:
            raise ValueError(f"version {document.get('version')!r}, not {CLAIMS_VERSION}")
        claims = {
            realm: Claim(realm, idrange, order)
            for realm, (idrange, order) in _ranges_of(document["ranges"]).items()
        }
        return cls(file, str(document["rangesFile"]), str(document.get("node", "")), claims)


class HostClaims:
    """The claims directory every installation on the host shares: one file per
    installation, read and changed only under the directory's one exclusive ``flock``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def file_of(self, ranges_file: Path) -> Path:
        """The claims file of the installation recording its ranges in ``ranges_file``."""
        where = os.path.realpath(ranges_file)
        return self.directory / f"{hashlib.sha256(where.encode()).hexdigest()[:16]}.json"

    def _prepare(self) -> None:
        make_dirs(self.directory, 0o700)
        info = os.stat(self.directory)
        # Whoever may change the claims may make two installations hand out the same ids.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise IdRangeError(
                f"the user-namespace claims directory {self.directory} is open to others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid}): whoever "
                "may change it may make two installations share ids; make it a directory "
                "of root's, mode 0700"
            )
        # The directory's own mode is not all: a link, or a parent others may write (as
        # /tmp), lets them put another directory in its place whenever they like.
        replaceable = path_problems(self.directory, secret=False).change
        if replaceable:
            raise IdRangeError(
                f"the user-namespace claims directory {self.directory} may be replaced by "
                f"other local users ({'; '.join(replaceable)}): whoever may replace it may "
                "make two installations share ids; keep it where only root may write "
                f"(default {DEFAULT_CLAIMS_DIR})"
            )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self._prepare()
        with _flocked(self.directory / CLAIMS_LOCK):
            yield

    def read(self) -> tuple[list[Installation], dict[Path, str]]:
        """Every installation's claims, and the files that cannot be read (why, in words)."""
        found: list[Installation] = []
        unreadable: dict[Path, str] = {}
        for file in sorted(self.directory.glob("*.json")):
            try:
                found.append(Installation.from_json(file, file.read_bytes()))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
                unreadable[file] = f"{file}: {error}"
        return found, unreadable

    def write(self, installation: Installation) -> None:
        """Replace the installation's file (removed when it claims nothing)."""
        if installation.claims:
            write_atomically(installation.file, installation.to_json(), mode=0o600)
        else:
            with contextlib.suppress(FileNotFoundError):
                installation.file.unlink()


_said: set[str] = set()
"""Clash messages logged by this process already: each pass of each cell meets them again."""


def _log_once(level: int, message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.log(level, "%s", message)


class RangeAllocator:
    """The realms' ranges on this node, recorded in ``state_file`` and claimed host-wide in
    ``claims_dir`` (shared with every other installation on the host)."""

    def __init__(
        self,
        state_file: Path,
        settings: PoolSettings,
        *,
        claims_dir: Path,
        node: str = "",
        etc: Path = Path("/etc"),
    ) -> None:
        self.state_file = state_file
        self.settings = settings
        self.claims = HostClaims(claims_dir)
        self.node = node
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

    def _sync(
        self, ranges: Mapping[str, IdRange]
    ) -> tuple[Installation, list[Installation], dict[Path, str]]:
        """Make this installation's claims what ``ranges`` records (a range not claimed
        yet is claimed, after every claim on the host; one no longer recorded goes), under
        the claims lock. Returns this installation's claims, the others', and the files
        that cannot be read."""
        own_file = self.claims.file_of(self.state_file)
        everyone, unreadable = self.claims.read()
        if own_file in unreadable:
            raise IdRangeError(
                f"this installation's user-namespace claims file is unreadable "
                f"({unreadable[own_file]}); remove it: it is written again from "
                f"{self.state_file}"
            )
        before = next((i for i in everyone if i.file == own_file), None)
        kept = before.claims if before is not None else {}
        order = 1 + max((c.order for i in everyone for c in i.claims.values()), default=0)
        claims: dict[str, Claim] = {}
        for realm, idrange in sorted(ranges.items()):
            claim = kept.get(realm)
            if claim is None or claim.idrange != idrange:
                claim, order = Claim(realm, idrange, order), order + 1
                log.info(
                    "the user-namespace range %s of realm %r is claimed in %s",
                    idrange,
                    realm,
                    own_file,
                )
            claims[realm] = claim
        own = Installation(own_file, str(self.state_file), self.node, claims)
        if own != before and (claims or before is not None):
            self.claims.write(own)
        return own, [i for i in everyone if i.file != own_file], unreadable

    def _check_shared(self, own: Installation, claim: Claim, others: list[Installation]) -> None:
        """Raise :class:`IdRangeClashError` when another installation claimed ids of
        ``claim`` first; warn (once) about those that claimed them after."""
        mine = (claim.order, str(own.file))
        for other in others:
            for theirs in other.claims.values():
                if not claim.idrange.overlaps(theirs.idrange.base, theirs.idrange.size):
                    continue
                if (theirs.order, str(other.file)) < mine:
                    message = (
                        f"the user-namespace range {claim.idrange} of realm {claim.realm!r} "
                        f"overlaps {theirs.idrange}, which {other} gave its realm "
                        f"{theirs.realm!r} first: the two realms would share host ids (each "
                        "one's root could read the other's files), so no hostUsers: false "
                        f"cell of {claim.realm!r} runs here until one of the two ranges is "
                        "released (delete one of the realms on its installation)"
                    )
                    _log_once(logging.ERROR, message)
                    raise IdRangeClashError(message)
                _log_once(
                    logging.WARNING,
                    f"the user-namespace range {claim.idrange} of realm {claim.realm!r} "
                    f"overlaps {theirs.idrange} of realm {theirs.realm!r} of {other}, claimed "
                    "after it (the two realms share host ids): that realm's cells are refused "
                    "until one of the two ranges is released (delete one of the realms)",
                )

    def claim_recorded(self) -> list[str]:
        """Claim host-wide every range the state file records (the first start after an
        upgrade claims those recorded before) and say every clash, logged. Returns the
        clashes refused here, in words. Touches no claims directory while there is
        nothing to claim or release."""
        own_file = self.claims.file_of(self.state_file)
        if not self.state_file.exists() and not own_file.exists():
            return []  # nothing ever given here: not even the state file's lock is made
        with _locked(self.state_file):
            ranges = _load(self.state_file)
            if not ranges and not own_file.exists():
                return []
            with self.claims.locked():
                own, others, unreadable = self._sync(ranges)
            for problem in unreadable.values():
                log.warning("a user-namespace claims file is unreadable: %s", problem)
            refused: list[str] = []
            for claim in own.claims.values():
                try:
                    self._check_shared(own, claim, others)
                except IdRangeClashError as error:
                    refused.append(str(error))
            return refused

    def ensure(self, realm: str) -> IdRange:
        """The realm's range: the recorded one, else the first free one of the pool that
        no installation on the host has claimed, claimed and recorded.

        Raises :class:`IdRangeError` when the pool has no free range, or when the recorded
        range now overlaps a host account (which could read the realm's files), and
        :class:`IdRangeClashError` when another installation claimed its ids first.
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
            with self.claims.locked():
                own, others, unreadable = self._sync(ranges)
                if recorded is not None:
                    self._check_shared(own, own.claims[realm], others)
                    return recorded
                if unreadable:
                    raise IdRangeError(
                        f"no user-namespace range for realm {realm!r}: what other "
                        "installations have claimed cannot be read ("
                        + "; ".join(unreadable.values())
                        + ")"
                    )
                claimed = [c.idrange for other in others for c in other.claims.values()]
                chosen = _free(self.settings.candidates(), [*ranges.values(), *claimed], host)
                if chosen is None:
                    raise IdRangeError(
                        f"no free user-namespace range for realm {realm!r}: the pool's "
                        f"{self.settings.ranges} ranges from {self.settings.first_id} are "
                        "taken by other realms, claimed by other installations on this "
                        f"host ({self.claims.directory}) or overlap host accounts"
                    )
                ranges[realm] = chosen
                # Claimed before recorded: a crash between leaves a claim the next pass
                # drops, never a recorded range another installation may take.
                self._sync(ranges)
                _save(self.state_file, ranges)
            log.info("realm %r got the user-namespace range %s", realm, chosen)
            return chosen

    def release(self, realm: str) -> bool:
        """Forget the realm's range and its claim (its realm is gone from this node);
        False if it had none."""
        with _locked(self.state_file):
            ranges = _load(self.state_file)
            if ranges.pop(realm, None) is None:
                return False
            with self.claims.locked():
                # Forgotten before unclaimed: a crash between leaves a claim the next
                # pass drops, never a recorded range that is free for others.
                _save(self.state_file, ranges)
                self._sync(ranges)
            return True
