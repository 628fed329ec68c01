"""kukectl's own options as kubectl's: an explicitly empty ``--server``, ``--context`` or
``--token`` is a usage error naming the option (it fell back to the environment or the
config file, so ``--server "$UNSET"`` talked to whatever KUKEON_SERVER named), and
``--request-timeout 0`` is no limit (it failed every request at once)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kukeon.api import Kind
from kukeon.cli.config import resolve_connection
from kukeon.cli.configfile import KukectlConfig
from kukeon.cli.main import _root_option_first, cli
from kukeon.cli.runner import EXIT_USAGE
from kukeon.client.apiclient import ApiClient, ServerUnreachable

from .listserver import list_server

KUKECTL = [sys.executable, "-c", "from kukeon.cli.main import main; main()"]


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # a unix socket's path is at most 107 bytes: pytest's tmp_path can be longer
    with tempfile.TemporaryDirectory(prefix="kukectl-") as name:
        yield Path(name)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--server", ""], "'--server' / '-s'"),
        (["-s", ""], "'--server' / '-s'"),
        (["--server="], "'--server' / '-s'"),
        (["--context", ""], "'--context'"),
        (["--context", " "], "'--context'"),
        (["--token", ""], "'--token'"),
    ],
)
def test_an_empty_root_option_is_a_usage_error(args: list[str], option: str) -> None:
    # Each had a value to fall back to: exit 1 for the unreachable socket, not exit 2.
    environ = {"KUKEON_SERVER": "unix:///nonexistent/kukeond.sock", "KUKEON_TOKEN": "t"}
    result = CliRunner().invoke(cli, [*args, "get", "realms"], env=environ)
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"Invalid value for {option}" in result.output
    assert "empty" in result.output


def test_an_empty_environment_value_is_unset() -> None:
    """As kubectl reads ``KUBECONFIG=''``: no value, the next source decides (a variable
    exported empty by a script is common, and nothing named it on the command line)."""
    config = KukectlConfig.model_validate(
        {"currentContext": "a", "contexts": [{"name": "a", "server": "unix:///a.sock"}]}
    )
    environ = {"KUKEON_SERVER": "", "KUKEON_CONTEXT": "", "KUKEON_TOKEN": "", "KUKEON_CA": ""}
    connection = resolve_connection(config=config, environ=environ)
    assert (connection.server, connection.context, connection.token) == (
        "unix:///a.sock",
        "a",
        None,
    )
    assert connection.ca_file is None


def test_a_request_timeout_of_zero_is_no_limit(socket_dir: Path) -> None:
    """It was `did not answer within 0s` on every request (asyncio.timeout(0))."""
    with list_server(socket_dir / "s.sock") as socket:
        done = subprocess.run(
            [*KUKECTL, "--server", f"unix://{socket}", "--request-timeout", "0", "get", "realms"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "KUKEON_CONFIG": str(socket_dir / "none.yaml")},
        )
    assert done.returncode == 0, done.stderr
    assert "did not answer" not in done.stderr


@pytest.mark.parametrize("pooled", [True, False])
def test_a_client_without_a_timeout_answers(socket_dir: Path, pooled: bool) -> None:
    async def listed() -> int:
        async with ApiClient(
            server=f"unix://{socket_dir / 's.sock'}", timeout=None, pooled=pooled
        ) as client:
            return len((await client.list(Kind.REALM)).items)

    with list_server(socket_dir / "s.sock"):
        assert asyncio.run(listed()) == 0


def test_a_system_timeout_without_a_limit_of_ours_is_named() -> None:
    """A connect's ETIMEDOUT is a TimeoutError too: without a limit of ours it is reported
    as it is, not as 'did not answer within Nones' (a TypeError formatting None)."""
    client = ApiClient(server="unix:///nonexistent.sock", timeout=None)
    error = client._timed_out(TimeoutError(110, "Connection timed out"))
    assert isinstance(error, ServerUnreachable)
    assert "Connection timed out" in str(error)


@pytest.mark.parametrize(
    "args",
    [
        ["get", "realms", "--server", "{server}"],
        ["get", "realms", "--server={server}", "--request-timeout", "5s"],
        ["get", "realms", "-s", "{server}", "--context=", "-o", "name"],
        ["--server", "unix:///nonexistent.sock", "get", "realms", "-s{server}"],
    ],
)
def test_a_root_option_after_the_command_is_taken_as_kubectls(
    socket_dir: Path, args: list[str]
) -> None:
    """kubectl takes its global flags after the command (`kubectl get pods --context prod`);
    they were 'No such option', exit 2. Given twice, the later one wins (pflag's rule); an
    empty one is still refused (the third)."""
    with list_server(socket_dir / "s.sock") as socket:
        line = [word.replace("{server}", f"unix://{socket}") for word in args]
        done = subprocess.run(
            [*KUKECTL, *line],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "KUKEON_CONFIG": str(socket_dir / "none.yaml")},
        )
    if "--context=" in args:
        assert done.returncode == EXIT_USAGE
        assert "Invalid value for '--context'" in done.stderr
    else:
        assert done.returncode == 0, done.stderr  # the unreachable server: exit 1
        assert "No realms found" in done.stderr


def test_only_a_root_option_before_the_containers_command_moves() -> None:
    moved = _root_option_first(["get", "cells", "--token", "t", "-A"], "--token")
    assert moved == ["--token", "t", "get", "cells", "-A"]
    given_first = ["--token", "a", "logs", "web", "--token=b"]
    expected = ["--token", "a", "--token=b", "logs", "web"]
    assert _root_option_first(given_first, "--token") == expected
    # after `--` it is the container's command's; a command's own option is never reported
    assert _root_option_first(["exec", "web", "--", "curl", "--token", "t"], "--token") is None
    assert _root_option_first(["get", "cells", "--watch-timeout", "1s"], "--watch-timeout") is None
    assert _root_option_first(["get", "cells", "--token"], "--token") is None  # no value
