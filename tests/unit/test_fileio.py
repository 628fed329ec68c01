"""A credential file an administrator gives kukeond (tokens, the fleet token, the API's TLS
key, etcd's key, a configuration with etcdPassword, the encryption key file) that other
local users may read or replace is warned about at load: a local audit as ``nobody``
found a 0644 tokens file read without a word (the umask 022 default of ``cat >``).

The check reasons about the path, not only the file's own mode: a 0644 file behind a 0700
directory is read by nobody else (it was warned about), and a 0600 file in a directory
every user may write is anyone's to replace (it was not). tests/integration/daemon/
test_credential_paths.py confirms each claim as ``nobody``."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.apiserver.auth import TokenBook
from kukeon.daemon.config import load_config
from kukeon.daemon.forwarding import read_token
from kukeon.fileio import path_problems, warn_if_open_to_others
from kukeon.store.encryption import Keyring

TOKENS = "tokens:\n- token: t0k3n-0123456789abcdef\n  user: alice\n  role: admin\n"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user gets through (0755) under /tmp (1777, root's): pytest's own
    tmp_path is behind 0700 directories, where no file is open to others whatever its mode."""
    root = Path(tempfile.mkdtemp(prefix="kukeon-fileio-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kukeon.fileio"]


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o602, True), (0o640, False)])
def test_a_credential_file_open_to_others_is_warned_about(
    open_dir: Path, caplog: pytest.LogCaptureFixture, mode: int, warned: bool
) -> None:
    tokens, fleet = open_dir / "tokens.yaml", open_dir / "fleet-token"
    tokens.write_text(TOKENS)
    fleet.write_text("fleet-t0k3n\n")
    for path in (tokens, fleet):
        path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        assert len(TokenBook.load(tokens)) == 1  # still loaded: a warning, not a refusal
        assert read_token(fleet) == "fleet-t0k3n"
    said = _said(caplog)
    if not warned:
        assert said == []
        return
    assert said[0].startswith(f"the API tokens file {tokens} is open to other local users: ")
    assert said[1].startswith(f"the fleet token file {fleet} is open to other local users: ")
    for message in said:
        if mode & 0o004:
            assert f"every local user may read it (mode {mode:04o}" in message
            assert "whoever reads it holds the credential in it" in message
        if mode & 0o002:
            assert f"every local user may write it (mode {mode:04o})" in message
    if mode & 0o002:
        assert "admin (root on this host) included" in said[0]
    assert "t0k3n" not in " ".join(said)


def test_a_file_behind_a_closed_directory_is_read_by_nobody_else(
    open_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """0644 in a 0700 directory: others cannot get to it (this was warned about)."""
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    tokens = closed / "tokens.yaml"
    tokens.write_text(TOKENS)
    tokens.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        assert len(TokenBook.load(tokens)) == 1
    assert _said(caplog) == []


def test_a_private_file_in_a_directory_others_write_is_theirs_to_replace(
    open_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """0600 in a 0777 directory: anyone renames it away and puts theirs there (this was
    silent); with the sticky bit, and the file root's (or ours), nobody else may."""
    shared = open_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    tokens = shared / "tokens.yaml"
    tokens.write_text(TOKENS)
    tokens.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        TokenBook.load(tokens)
    (said,) = _said(caplog)
    assert (
        f"the directory {shared} is writable by every local user (mode 0777, no sticky "
        "bit): anyone may rename tokens.yaml away and put their own in its place" in said
    )
    assert "with a file of theirs in its place they give themselves any role" in said
    assert "may read it" not in said
    caplog.clear()
    shared.chmod(0o1777)
    assert not path_problems(tokens)


def test_a_directory_others_write_but_cannot_search_is_not_theirs(open_dir: Path) -> None:
    """Renaming an entry needs the directory's search bit as well as its write bit."""
    shared = open_dir / "shared"
    shared.mkdir()
    shared.chmod(0o776)
    (shared / "key").write_text("k")
    (shared / "key").chmod(0o600)
    assert not path_problems(shared / "key")


def test_every_directory_a_symbolic_link_leads_through_is_judged(open_dir: Path) -> None:
    shared = open_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "key").write_text("k")
    (shared / "key").chmod(0o600)
    (open_dir / "etc").mkdir(mode=0o755)
    (open_dir / "etc" / "key").symlink_to("../shared/key")
    (change,) = path_problems(open_dir / "etc" / "key").change
    assert change.startswith(f"the directory {shared} is writable by every local user")


def test_a_dot_dot_after_a_symbolic_link_is_judged_where_the_kernel_goes(open_dir: Path) -> None:
    # `etc/link/../key` opens shared/key (the kernel follows `link` before `..`); taken as
    # text (os.path.abspath) it was etc/key, absent: no warning about a replaceable file.
    shared = open_dir / "shared"
    (shared / "sub").mkdir(parents=True)
    shared.chmod(0o777)
    (shared / "key").write_text("k")
    (shared / "key").chmod(0o600)
    (open_dir / "etc").mkdir(mode=0o755)
    (open_dir / "etc" / "link").symlink_to(shared / "sub")
    changes = path_problems(open_dir / "etc" / "link" / ".." / "key").change
    assert f"the directory {shared} is writable by every local user" in changes[-1]
    assert changes[-1].endswith("rename key away and put their own in its place")


def test_kukeonds_etcd_credentials_open_to_others_are_warned_about(
    open_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = open_dir / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    config = open_dir / "kukeond.yaml"
    config.write_text(
        "etcdEndpoints: [https://etcd.example:2379]\netcdUsername: kukeon\n"
        f"etcdPassword: pa55word\netcdCertFile: {open_dir / 'client.crt'}\netcdKeyFile: {key}\n"
    )
    for path in (key, config):
        path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        load_config(config_file=config)
    said = "\n".join(_said(caplog))
    assert f"the kukeond configuration file (etcdPassword) {config} is open to other" in said
    assert f"the etcd client key file {key} is open to other local users: every local" in said
    assert "pa55word" not in said
    caplog.clear()
    for path in (key, config):
        path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        load_config(config_file=config)
    assert caplog.records == []


def test_a_configuration_without_a_password_may_be_read_but_not_replaced(
    open_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = open_dir / "kukeond.yaml"
    config.write_text("logLevel: info\n")
    config.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        load_config(config_file=config)
    assert _said(caplog) == []
    open_dir.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        load_config(config_file=config)
    (said,) = _said(caplog)
    assert f"the kukeond configuration file {config} is open to other local users" in said
    assert "kukeond (root) runs as their configuration says" in said
    assert "may read it" not in said


def test_an_encryption_key_file_others_may_replace_is_warned_about(
    open_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    open_dir.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        _, created = Keyring.load_or_create(open_dir / "encryption-keys.yaml")
        assert created
        Keyring.load_or_create(open_dir / "encryption-keys.yaml")
    said = _said(caplog)
    assert len(said) == 2
    assert "sealed under a key they know" in said[0]


def test_a_missing_file_is_left_to_its_reader(tmp_path: Path) -> None:
    assert warn_if_open_to_others(tmp_path / "absent", "API TLS key file") is False
