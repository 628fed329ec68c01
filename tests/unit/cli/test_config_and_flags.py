"""Connection resolution (flags > environment > context > default) and durations."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.cli.config import (
    ConfigError,
    default_config_path,
    load_config,
    resolve_connection,
)
from kukeon.cli.configfile import KukectlConfig
from kukeon.cli.params import parse_duration
from kukeon.client.apiclient import ServerAddressError, parse_server

CONFIG = KukectlConfig.model_validate(
    {
        "currentContext": "prod",
        "contexts": [
            {"name": "local", "server": "unix:///tmp/k.sock"},
            {
                "name": "prod",
                "server": "https://10.0.0.5:6443",
                "token": "ctx-token",
                "certificateAuthority": "/etc/ca.crt",
            },
        ],
    }
)


def test_defaults_without_config() -> None:
    connection = resolve_connection(config=KukectlConfig(), environ={})
    assert connection.server == "unix:///run/kukeon/kukeond.sock"
    assert connection.token is None


def test_current_context() -> None:
    connection = resolve_connection(config=CONFIG, environ={})
    assert connection.server == "https://10.0.0.5:6443"
    assert connection.token == "ctx-token"
    assert connection.ca_file == Path("/etc/ca.crt")


def test_environment_beats_context_and_flags_beat_environment() -> None:
    env = {"KUKEON_SERVER": "unix:///env.sock", "KUKEON_TOKEN": "env-token"}
    from_env = resolve_connection(config=CONFIG, environ=env)
    assert (from_env.server, from_env.token) == ("unix:///env.sock", "env-token")
    flagged = resolve_connection(config=CONFIG, environ=env, server="unix:///flag.sock", token="t")
    assert (flagged.server, flagged.token) == ("unix:///flag.sock", "t")
    local = resolve_connection(config=CONFIG, environ={"KUKEON_CONTEXT": "local"})
    assert local.server == "unix:///tmp/k.sock"


def test_unknown_context() -> None:
    with pytest.raises(ConfigError, match=r"context 'nope' not found.*local, prod"):
        resolve_connection(config=CONFIG, context="nope", environ={})


def test_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    config = KukectlConfig.model_validate(
        {"contexts": [{"name": "x", "server": "https://h:1", "tokenFile": str(token)}]}
    )
    assert resolve_connection(config=config, context="x", environ={}).token == "from-file"


def test_load_config(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.yaml") == KukectlConfig()
    path = tmp_path / "config.yaml"
    path.write_text("contexts:\n  - name: a\n    sever: typo\n")
    with pytest.raises(ConfigError, match=r"contexts\.0\.sever"):
        load_config(path)
    path.write_bytes(b"\xffcontexts: []\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path)
    assert default_config_path({"KUKEON_CONFIG": "/x.yaml"}) == Path("/x.yaml")
    assert default_config_path({"XDG_CONFIG_HOME": "/xdg"}) == Path("/xdg/kukeon/config.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("1.5", 1.5), ("0.5s", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


# float() reads the last five, and they were taken: `logs --since 1e400` was an
# OverflowError, `wait --timeout nan` never timed out, `--request-timeout -1` always did.
@pytest.mark.parametrize(
    "text", ["", "abc", "10x", "s10", "1m junk", "nan", "inf", "-1", "1e400", "9" * 400 + "s"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_server_addresses() -> None:
    assert parse_server("unix:///run/k.sock").location == "/run/k.sock"
    assert parse_server("/run/k.sock").scheme == "unix"
    assert parse_server("https://h:6443").base_url == "https://h:6443"
    assert parse_server("https://[::1]:6443").location == "[::1]:6443"
    # The last four were "cannot reach the kukeon API ...: Name or service not known".
    for bad in (
        "http://h:1",
        "unix://relative",
        "tcp://h",
        "https://",
        "https://[::1",
        "https://h:abc",
        "https://h:99999",
        "https://:443",
    ):
        with pytest.raises(ServerAddressError):
            parse_server(bad)


def test_a_config_or_token_file_that_is_no_utf_8_is_named_not_a_traceback(
    tmp_path: Path,
) -> None:
    """Both were "unexpected failure: UnicodeDecodeError" (exit 1)."""
    from click.testing import CliRunner

    from kukeon.cli.main import cli

    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    result = CliRunner().invoke(cli, ["--config", str(binary), "get", "realms"])
    assert result.exit_code == 2, result.output
    assert "is not UTF-8 text" in result.output
    config = tmp_path / "config.yaml"
    config.write_text(
        "contexts:\n- name: a\n  server: unix:///nonexistent.sock\n"
        f"  tokenFile: {binary}\ncurrentContext: a\n"
    )
    result = CliRunner(env={"KUKEON_SERVER": None, "KUKEON_TOKEN": None}).invoke(
        cli, ["--config", str(config), "get", "realms"]
    )
    assert result.exit_code == 2, result.output
    assert "cannot read tokenFile" in result.output
    assert "unexpected failure" not in result.output
