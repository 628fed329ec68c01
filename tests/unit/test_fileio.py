"""A credential file an administrator gives kukeond (tokens, the fleet token, the API's TLS
key) that every local user may read is warned about at load: a local audit as ``nobody``
found a 0644 tokens file read without a word (the umask 022 default of ``cat >``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kukeon.apiserver.auth import TokenBook
from kukeon.daemon.config import load_config
from kukeon.daemon.forwarding import read_token
from kukeon.fileio import warn_if_open_to_others

TOKENS = "tokens:\n- token: t0k3n-0123456789abcdef\n  user: alice\n  role: admin\n"


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o602, True), (0o640, False)])
def test_a_credential_file_open_to_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warned: bool
) -> None:
    tokens, fleet = tmp_path / "tokens.yaml", tmp_path / "fleet-token"
    tokens.write_text(TOKENS)
    fleet.write_text("fleet-t0k3n\n")
    for path in (tokens, fleet):
        path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        assert len(TokenBook.load(tokens)) == 1  # still loaded: a warning, not a refusal
        assert read_token(fleet) == "fleet-t0k3n"
    said = [record.getMessage() for record in caplog.records]
    if not warned:
        assert said == []
        return
    assert said == [
        f"the API tokens file {tokens} is open to every local user (mode {mode:04o}): any "
        "account on this host reads the credential in it; chmod o-rwx (or 600) it",
        f"the fleet token file {fleet} is open to every local user (mode {mode:04o}): any "
        "account on this host reads the credential in it; chmod o-rwx (or 600) it",
    ]
    assert "t0k3n" not in " ".join(said)


def test_a_missing_file_is_left_to_its_reader(tmp_path: Path) -> None:
    assert warn_if_open_to_others(tmp_path / "absent", "API TLS key file") is False


def test_kukeonds_etcd_credentials_open_to_others_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    config = tmp_path / "kukeond.yaml"
    config.write_text(
        "etcdEndpoints: [https://etcd.example:2379]\netcdUsername: kukeon\n"
        f"etcdPassword: pa55word\netcdCertFile: {tmp_path / 'client.crt'}\netcdKeyFile: {key}\n"
    )
    for path in (key, config):
        path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        load_config(config_file=config)
    said = "\n".join(record.getMessage() for record in caplog.records)
    assert f"the kukeond configuration file (etcdPassword) {config} is open to every" in said
    assert f"the etcd client key file {key} is open to every local user (mode 0644)" in said
    assert "pa55word" not in said
    caplog.clear()
    for path in (key, config):
        path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="kukeon.fileio"):
        load_config(config_file=config)
    assert caplog.records == []
