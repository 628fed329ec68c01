"""What ``fileio.warn_if_open_to_others`` claims about a credential file, checked as
``nobody`` (``runuser``): it warns that others may read the file exactly when nobody
reads it, and that others may replace it exactly when nobody renames it away and puts a
file of theirs in its place.

Before, it judged the file's own mode only: a 0644 tokens file behind a 0700 directory
was warned about (nobody cannot read it), and a 0600 one in a directory every user writes
was not (nobody replaced it, and kukeond then read nobody's tokens: an admin token of
theirs, root on the host).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kukeon.apiserver.auth import TokenBook
from kukeon.fileio import warn_if_open_to_others
from tests.fixtures.localuser import NOBODY, as_nobody, owned_dir, walkable_base

pytestmark = pytest.mark.integration

TOKENS = "tokens:\n- token: root-t0k3n-0123456789\n  user: root\n  role: admin\n"
THEIRS = "tokens:\n- token: nobody-t0k3n-0123456789\n  user: nobody\n  role: admin\n"


def _nobody_reads(path: Path) -> bool:
    return as_nobody("cat", str(path))


def _nobody_replaces(path: Path, entry: Path) -> bool:
    """Rename ``entry`` (the file, or a directory or link on its path) away and put theirs
    in its place (the directories down to the file made anew), as an attacker would; True
    when ``path`` then names nobody's file."""
    script = (
        'mv -f "$1" "$1.gone" 2>/dev/null || rm -f "$1" || exit 1; '
        'mkdir -p "$(dirname "$2")" && printf "%s" "$3" > "$2"'
    )
    done = as_nobody("sh", "-c", script, "sh", str(entry), str(path), THEIRS)
    return done and path.read_text() == THEIRS


def _file(path: Path, mode: int, owner: int = 0) -> Path:
    path.write_text(TOKENS)
    path.chmod(mode)
    os.chown(path, owner, owner)
    return path


# Each case builds its file under a root-owned 0755 directory; CASES say what nobody is
# expected to manage with it (read, replace) and which entry an attacker would replace.
def _readable(base: Path) -> Path:
    return _file(owned_dir(base / "etc", 0o755) / "tokens.yaml", 0o644)


def _behind_closed_dir(base: Path) -> Path:
    return _file(owned_dir(base / "etc", 0o700) / "tokens.yaml", 0o644)


def _in_world_writable_dir(base: Path) -> Path:
    return _file(owned_dir(base / "etc", 0o777) / "tokens.yaml", 0o600)


def _in_sticky_dir(base: Path) -> Path:
    return _file(owned_dir(base / "etc", 0o1777) / "tokens.yaml", 0o600)


def _theirs_in_sticky_dir(base: Path) -> Path:
    return _file(owned_dir(base / "etc", 0o1777) / "tokens.yaml", 0o600, owner=NOBODY)


def _in_their_dir(base: Path) -> Path:
    return _file(owned_dir(base / "etc", 0o755, owner=NOBODY) / "tokens.yaml", 0o600)


def _below_world_writable_dir(base: Path) -> Path:
    parent = owned_dir(base / "srv", 0o777)
    return _file(owned_dir(parent / "etc", 0o755) / "tokens.yaml", 0o600)


def _attack_below(path: Path) -> Path:
    return path.parent  # srv/etc, in the 0777 srv


def _writable_but_not_searchable(base: Path) -> Path:
    return _file(owned_dir(base / "etc", 0o776) / "tokens.yaml", 0o600)


def _through_a_link(base: Path) -> Path:
    _file(owned_dir(base / "shared", 0o777) / "tokens.yaml", 0o600)
    (owned_dir(base / "etc", 0o755) / "tokens.yaml").symlink_to("../shared/tokens.yaml")
    return base / "etc" / "tokens.yaml"


def _attack_target(path: Path) -> Path:
    return path.resolve()  # shared/tokens.yaml, in the 0777 shared: the link then names theirs


def _itself(path: Path) -> Path:
    return path


Case = tuple[Callable[[Path], Path], bool, bool, Callable[[Path], Path]]
CASES: list[Case] = [
    (_readable, True, False, _itself),
    (_behind_closed_dir, False, False, _itself),
    (_in_world_writable_dir, False, True, _itself),
    (_in_sticky_dir, False, False, _itself),
    (_theirs_in_sticky_dir, True, True, _itself),
    (_in_their_dir, False, True, _itself),
    (_below_world_writable_dir, False, True, _attack_below),
    (_writable_but_not_searchable, False, False, _itself),
    (_through_a_link, False, True, _attack_target),
]


@pytest.fixture
def base() -> Iterator[Path]:
    with walkable_base("kukeon-credpaths-") as root:
        yield root


@pytest.mark.parametrize(
    ("make", "reads", "replaces", "attack"), CASES, ids=[case[0].__name__ for case in CASES]
)
def test_what_the_warning_claims_is_what_nobody_can_do(
    base: Path,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[Path], Path],
    reads: bool,
    replaces: bool,
    attack: Callable[[Path], Path],
) -> None:
    path = make(base)
    # The claims first, then nobody tries (a replace changes the file).
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        warned = warn_if_open_to_others(path, "API tokens file")
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "kukeon.fileio")
    assert warned is (reads or replaces), said
    assert ("whoever reads it holds the credential in it" in said) is reads, said
    assert ("with a file of theirs in its place" in said) is replaces, said
    assert _nobody_reads(path) is reads
    if not replaces:  # not the file, nor any directory down to it
        directories = [d for d in path.parents if base in d.parents]
        assert not any(_nobody_replaces(path, d) for d in directories)
    assert _nobody_replaces(path, attack(path)) is replaces
    if replaces:  # and kukeond would read theirs: an admin token of nobody's
        principal = TokenBook.load(path).authenticate("nobody-t0k3n-0123456789")
        assert principal is not None
