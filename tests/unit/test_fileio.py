"""A credential file an administrator gives kukeond (tokens, the fleet token, the API's TLS
key) that every local user may read is warned about at load: a local audit as ``nobody``
found a 0644 tokens file read without a word (the umask 022 default of ``cat >``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kukeon.apiserver.auth import TokenBook
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
