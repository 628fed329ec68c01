"""The host-wide user-namespace claims directory cannot be one another local user may replace,
checked with ``nobody`` (``runuser``).

Every kukeon installation on the host claims its realms' id ranges in that directory, so
whoever may change what is in it may make two installations give their realms the same host
ids (one realm's root then reads the other's files). Its own mode and owner were checked;
the path to it was not: configured under a directory every user writes (``/tmp``), nobody
put a link there to a directory of root's, which passed (root's, 0700), and could point it
elsewhere whenever they liked, each installation then claiming where the others do not look.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.runtime.idranges import IdRange, IdRangeError, PoolSettings, RangeAllocator
from tests.fixtures.hostleaks import own_directory
from tests.fixtures.services import require_binary, require_root
from tests.unit.runtime.test_idranges import FIRST, host_etc

pytestmark = pytest.mark.integration


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every local user writes, sticky as ``/tmp``, under a base they reach."""
    require_root()
    require_binary("runuser", "util-linux")
    base = Path(tempfile.mkdtemp(prefix="kukeon-idclaims-", dir="/tmp"))
    own_directory(base)
    try:
        base.chmod(0o755)
        (base / "shared").mkdir()
        (base / "shared").chmod(0o1777)
        yield base / "shared"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _allocator(base: Path, claims: Path) -> RangeAllocator:
    return RangeAllocator(
        base / "state" / "idranges.json",
        PoolSettings(first_id=FIRST, ranges=4),
        claims_dir=claims,
        etc=host_etc(base),
    )


def test_a_claims_directory_nobody_linked_is_refused(shared: Path) -> None:
    base = shared.parent
    roots = base / "roots"  # a directory of root's that passes the mode check
    roots.mkdir(mode=0o700)
    linked = subprocess.run(
        ["runuser", "-u", "nobody", "--", "ln", "-s", str(roots), str(shared / "claims")],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert linked.returncode == 0, linked.stderr
    pool = _allocator(base, shared / "claims")
    with pytest.raises(IdRangeError, match=r"may be replaced by other local users.*nobody"):
        pool.ensure("a")
    assert pool.range_of("a") is None
    assert os.listdir(roots) == []  # nothing claimed where nobody pointed

    # The control: a directory of root's in the same sticky directory is no one else's to
    # replace (a sticky directory's entry is renamed by its owner only).
    own = _allocator(base, shared / "root-claims")
    assert own.ensure("a") == IdRange(FIRST)
