"""The API server's warnings about ``allowedHostPaths`` and ``secretDirs`` other local users
may write into, or read, checked as ``nobody`` (``runuser``).

The node follows symbolic links in those directories (paths are compared as written), and
kukeond reads a ``fromFile`` as root. So a local user who may put an entry in a secret
directory plants ``x -> <any file of root's>``, and a cell naming ``fromFile: <dir>/x``
gets that file staged into its container: below, nobody's link makes kukeond stage a
root-only key. Before, kukeond said nothing of it (only of ``nosuid``/``nodev``); the
warning is checked against what nobody really manages: plant a link, read a secret.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.api import ContainerSpec
from kukeon.apiserver.hostpathmounts import warn_about_host_paths
from kukeon.controllers.cellfiles import CellFiles, stage_secrets
from tests.fixtures.localuser import NOBODY, as_nobody, owned_dir, walkable_base

pytestmark = pytest.mark.integration

OPEN = "is open to other local users"
READABLE = "holds files every local user may read"


@pytest.fixture
def base() -> Iterator[Path]:
    with walkable_base("kukeon-opendirs-") as root:
        yield root


def _warnings(
    caplog: pytest.LogCaptureFixture, host_paths: list[str], secret_dirs: list[str]
) -> str:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kukeon.apiserver.hostpathmounts"):
        warn_about_host_paths(host_paths, secret_dirs)
    return "\n".join(r.getMessage() for r in caplog.records)


def test_a_secret_directory_nobody_writes_is_warned_about_and_lets_them_read_roots_files(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = owned_dir(base / "private", 0o700) / "etcd-client.key"
    key.write_text("ROOT-ONLY-KEY\n")
    key.chmod(0o600)
    secrets = owned_dir(base / "secrets", 0o755)
    team = owned_dir(secrets / "team", 0o755, owner=NOBODY)  # "the team lead drops its secrets"
    template = f"{secrets}/{{realm}}"

    said = _warnings(caplog, [], [template])
    assert f"secretDirs directory {template} {OPEN}" in said, said
    assert f"{team}: it belongs to nobody" in said, said
    # What the warning is about: nobody's link, and kukeond (root) reads through it.
    assert as_nobody("ln", "-s", str(key), str(team / "db-password"))
    container = ContainerSpec.model_validate(
        {
            "id": "app",
            "image": "busybox",
            "secrets": [
                {"name": "pw", "fromFile": str(team / "db-password"), "mountPath": "/run/pw"}
            ],
        }
    )
    files = CellFiles(base / "state", ("team", "s", "st", "c"))
    staged = asyncio.run(stage_secrets(container, files=files, environ={}))
    assert Path(staged.files["/run/pw"]).read_text() == "ROOT-ONLY-KEY\n"

    # The same directory root's, files 0600: nothing said, and nobody manages nothing.
    os.unlink(team / "db-password")
    os.chown(team, 0, 0)
    (team / "token").write_text("s3cret")
    (team / "token").chmod(0o600)
    assert _warnings(caplog, [], [template]) == ""
    assert not as_nobody("ln", "-s", str(key), str(team / "other"))
    assert not as_nobody("cat", str(team / "token"))

    # A secret file every local user reads (0644 behind 0755 directories).
    (team / "token").chmod(0o644)
    said = _warnings(caplog, [], [template])
    assert f"secretDirs directory {template} {READABLE}: {team / 'token'}" in said, said
    assert OPEN not in said, said
    assert as_nobody("cat", str(team / "token"))


def test_an_allowed_host_directory_in_a_sticky_world_writable_directory_is_warned_about(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = owned_dir(base / "shared", 0o1777)  # as /tmp
    said = _warnings(caplog, [str(shared)], [])
    assert f"allowedHostPaths directory {shared} {OPEN}" in said, said
    assert as_nobody("ln", "-s", "/etc", str(shared / "etc-of-the-host"))

    closed = owned_dir(base / "data", 0o755)
    assert OPEN not in _warnings(caplog, [str(closed)], [])
    assert not as_nobody("ln", "-s", "/etc", str(closed / "etc-of-the-host"))
    # Writable by others but not searchable: they cannot make an entry in it either.
    odd = owned_dir(base / "odd", 0o776)
    assert OPEN not in _warnings(caplog, [str(odd)], [])
    assert not as_nobody("ln", "-s", "/etc", str(odd / "etc-of-the-host"))
