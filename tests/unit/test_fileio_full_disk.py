"""A file kukeond rewrites (a cell's hosts file, the id ranges' record, a key file) on a
disk that is full: the write fails naming the file, the old content stays whole, no
temporary file is left to take the room, and the next write after room is freed works.
Before, the error named no file ("No space left on device", as a cell's status said it on
a full state directory: which of the host's disks was full was left to guess)."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.fileio import write_atomically
from kukeon.framework.processing import describe_host_disk_error
from tests.fixtures.services import require_binary, require_root

SIZE = 256 * 1024


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 256 KiB tmpfs of its own, unmounted and removed even when the test fails."""
    require_root()
    require_binary("mount", "mount")
    root = Path(tempfile.mkdtemp(prefix="kukeon-fulldisk-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "kukeon-test", str(root)], check=True
    )
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
        root.rmdir()


def _fill(directory: Path) -> Path:
    """A file taking every byte left (unbuffered: a buffer would fail again at close)."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(descriptor, b"\0" * 4096) == 4096:
            pass
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
    finally:
        os.close(descriptor)
    return filler


def test_a_full_disk_keeps_the_old_file_and_names_it(small_disk: Path) -> None:
    target = small_disk / "hosts"
    write_atomically(target, "127.0.0.1 localhost\n", mode=0o644)
    filler = _fill(small_disk)

    with pytest.raises(OSError, match="No space left on device") as refused:
        write_atomically(target, "x" * 64 * 1024, mode=0o644)
    assert refused.value.errno == errno.ENOSPC
    assert refused.value.filename == str(target)
    assert describe_host_disk_error(refused.value).startswith(
        f"No space left on device writing {target}:"
    )
    assert target.read_text() == "127.0.0.1 localhost\n"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "hosts"]

    filler.unlink()
    write_atomically(target, "x" * 64 * 1024, mode=0o644)
    assert target.read_text() == "x" * 64 * 1024
