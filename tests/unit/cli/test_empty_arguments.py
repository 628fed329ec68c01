"""What names nothing is a usage error (exit 2) before any request: an empty name, image
reference or signal. Each was sent: an empty path segment the server has no route for
("no such API path", exit 1), `wait realm '' --for=delete` met at once (exit 0), and
`kill -s ''` refused by the server (exit 1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from kukeon.cli.runner import EXIT_USAGE

NOWHERE = ["--server", "unix:///nonexistent/kukeond.sock"]


@pytest.mark.parametrize(
    "args",
    [
        ["get", "cell", ""],
        ["get", "realms", "a", ""],
        ["describe", "cell", ""],
        ["delete", "cell", ""],
        ["delete", "realm", ""],
        ["label", "cell", "", "a=b"],
        ["annotate", "cell", "", "a=b"],
        ["patch", "cell", "", "-p", "{}"],
        ["edit", "cell", ""],
        ["wait", "realm", "", "--for=delete"],
        ["kill", ""],
        ["logs", ""],
        ["exec", "", "--", "ls"],
        ["attach", ""],
        ["restart", ""],
        ["stop", ""],
        ["start", ""],
        ["port-forward", "", "80"],
        ["top", "cell", ""],
        ["top", "node", ""],
        ["scale", "cellset", "", "--replicas", "1"],
        ["scale", "", "--replicas", "1"],
    ],
)
def test_an_empty_name_is_a_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*NOWHERE, *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "empty name" in result.output
    assert "no such API path" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["image", "rm", ""],
        ["image", "rm", "busybox", ""],
        ["image", "inspect", ""],
        ["image", "pull", ""],
    ],
)
def test_an_empty_image_reference_is_a_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*NOWHERE, *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "an empty image reference" in result.output


@pytest.mark.parametrize("signal", ["", "0", "-9", "65", "\u00b2", "NOPE", "SIG", "RTMIN+31"])
def test_a_kill_signal_that_names_no_signal_is_a_usage_error(signal: str) -> None:
    result = CliRunner().invoke(cli, [*NOWHERE, "kill", "-s", signal, "web"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "is no signal" in result.output


@pytest.mark.parametrize("signal", ["TERM", "sigkill", "hup", "9", "SIGUSR1", "SIGRTMIN+3", "37"])
def test_a_kill_signal_is_read_as_kukeond_reads_it(signal: str) -> None:
    result = CliRunner().invoke(cli, [*NOWHERE, "kill", "-s", signal, "web"])
    assert result.exit_code != EXIT_USAGE, result.output  # sent: the socket is missing


@pytest.mark.parametrize("verb", ["apply", "create", "delete", "diff"])
def test_an_empty_manifest_file_name_is_a_usage_error(
    verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-f ''` read the current directory: every file there, as manifests."""
    (tmp_path / "stray.yaml").write_text("kind: Realm\nmetadata: {name: stray}\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [*NOWHERE, verb, "-f", ""])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "an empty file name" in result.output


def test_copying_a_device_into_a_cell_fails_as_copying_one_out_does(tmp_path: Path) -> None:
    """`cp /dev/zero web:/tmp/z` warned, copied nothing and exited 0."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for source in ("/dev/zero", str(fifo)):
        result = CliRunner().invoke(cli, [*NOWHERE, "cp", source, "web:/tmp/z"])
        assert result.exit_code == 1, result.output
        assert "nothing was copied" in result.output
