"""kukectl warns, as Helm does of a kubeconfig, when its config file holding a token (or a
token file it names) is open to other local users: a config written by hand under umask
022 is 0644, and in a 0755 home every account reads the token (kukectl's own writes are
0600). Judged along the path (``fileio.path_problems``): the same 0644 file behind a 0700
directory is nobody else's to read, and is not warned about; a config others may write
or replace, token or not, sends kukectl's token to the server they name."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli

UNREACHABLE = "unix:///nonexistent/kukeond.sock"


@pytest.fixture
def home() -> Iterator[Path]:
    """A directory every user gets through (0755, as many homes), under /tmp."""
    root = Path(tempfile.mkdtemp(prefix="kukeon-home-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _stderr(config: Path) -> str:
    env = {"KUKEON_SERVER": None, "KUKEON_TOKEN": None, "KUKEON_CONTEXT": None}
    result = CliRunner(env=env).invoke(cli, ["--config", str(config), "get", "realms"])
    assert result.exit_code == 1, result.output  # the socket is not there: a server error
    return result.stderr


def _config(path: Path, context: str, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"currentContext: a\ncontexts:\n- name: a\n  server: {UNREACHABLE}\n{context}")
    path.chmod(mode)
    return path


def test_a_config_holding_a_token_that_others_read_is_warned_about(home: Path) -> None:
    config = _config(home / ".config" / "kukeon" / "config.yaml", "  token: s3cr3t\n", 0o644)
    said = _stderr(config)
    assert (
        f"warning: the config file {config} (holds API tokens) is open to other local users: "
        "every local user may read it (mode 0644" in said
    )
    assert "s3cr3t" not in said
    config.chmod(0o600)
    assert "warning" not in _stderr(config)


def test_a_readable_config_behind_a_closed_directory_is_not_warned_about(home: Path) -> None:
    (home / ".config").mkdir(mode=0o700)
    config = _config(home / ".config" / "kukeon" / "config.yaml", "  token: s3cr3t\n", 0o644)
    assert "warning" not in _stderr(config)


def test_a_token_file_and_a_config_others_may_replace_are_warned_about(home: Path) -> None:
    token = home / "token"
    token.write_text("s3cr3t\n")
    token.chmod(0o644)
    shared = home / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    config = _config(shared / "config.yaml", f"  tokenFile: {token}\n", 0o644)
    said = _stderr(config)
    assert (
        f"the config file {config} (says where kukectl sends its token) is open to other "
        f"local users: the directory {shared} is writable by every local user" in said
    )
    assert "may read it" not in said.split("\n")[0]  # it holds no token itself
    assert f"the token file {token} is open to other local users: every local user may read" in said


def test_a_config_without_credentials_may_be_read_but_not_written(home: Path) -> None:
    """Whoever writes it sends the token of --token or KUKEON_TOKEN to their server."""
    config = _config(home / "config.yaml", "", 0o644)
    assert "warning" not in _stderr(config)
    config.chmod(0o666)
    said = _stderr(config)
    assert f"the config file {config} (says where kukectl sends its token) is open" in said
    assert "every local user may write it (mode 0666)" in said
