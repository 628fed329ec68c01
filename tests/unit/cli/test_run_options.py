"""`kukectl run`'s docker options as the container they describe, and its dry runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kukeon.cli.main import cli

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]


def _dry(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, [*NO_SERVER, "run", "web", "--image", "img", "--dry-run=client", "-o", "yaml", *args]
    )
    return result.exit_code, result.output


def _container(*args: str) -> dict[str, Any]:
    code, output = _dry(*args)
    assert code == 0, output
    document = yaml.safe_load(output)
    assert document["kind"] == "Cell"
    [container] = document["spec"]["containers"]
    return dict(container)


def test_the_words_after_the_image_are_the_entrypoints_arguments() -> None:
    plain = _container("--", "-g", "daemon off;")
    assert "command" not in plain
    assert plain["args"] == ["-g", "daemon off;"]
    replaced = _container("--entrypoint", "/bin/sh", "--", "-c", "echo hi")
    assert (replaced["command"], replaced["args"]) == ("/bin/sh", ["-c", "echo hi"])
    kubectl = _container("--command", "--", "sleep", "5")
    assert (kubectl["command"], kubectl["args"]) == ("sleep", ["5"])
    assert _dry("--command")[0] == 2  # no program
    # docker's --entrypoint '' clears the image's entrypoint: the words are the program and
    # its arguments (they were handed to the image's entrypoint, as if it had not been given)
    cleared = _container("--entrypoint", "", "--", "sh", "-c", "echo hi")
    assert (cleared["command"], cleared["args"]) == ("sh", ["-c", "echo hi"])
    assert _dry("--entrypoint", "")[0] == 2  # no program
    assert _dry("--command", "--entrypoint", "x", "--", "y")[0] == 2


def test_process_mounts_and_security_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "env"
    env_file.write_text('# comment\n\nA=1\nB="two words"\nFROM_SHELL\nNOT_SET\n')
    monkeypatch.setenv("FROM_SHELL", "here")
    monkeypatch.delenv("NOT_SET", raising=False)
    container = _container(
        "--env-file", str(env_file), "-e", "C=3", "-w", "/srv", "-u", "1000:100",
        "-v", "/data:/in:ro", "-v", "/logs:/out", "--tmpfs", "/run:size=2m,noexec",
        "--read-only", "--privileged", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL",
    )  # fmt: skip
    assert container["env"] == ["A=1", 'B="two words"', "FROM_SHELL=here", "C=3"]
    assert (container["workingDir"], container["user"]) == ("/srv", "1000:100")
    volumes = [(v["source"], v["target"], v.get("readOnly", False)) for v in container["volumes"]]
    assert volumes == [("/data", "/in", True), ("/logs", "/out", False)]
    assert container["tmpfs"] == [{"path": "/run", "sizeBytes": 2 << 20, "options": ["noexec"]}]
    # The kernel's own sizes that are no byte count (docker passes them on): a share of
    # the memory, a unit past g. They were exit 2 ('expected a number of bytes').
    shares = _container("--tmpfs", "/a:size=50%", "--tmpfs", "/b:size=1t,mode=1777")["tmpfs"]
    assert shares == [
        {"path": "/a", "options": ["size=50%"]},
        {"path": "/b", "options": ["size=1t", "mode=1777"]},
    ]
    assert container["readOnlyRootFilesystem"] is True
    assert container["privileged"] is True
    assert container["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}


def test_networks() -> None:
    assert _container("--network", "host")["hostNetwork"] is True
    assert _container("--network", "db", "--network", "cache")["networks"] == ["db", "cache"]
    code, output = _dry("--network", "none")
    assert code == 2
    assert "none" in output
    assert _dry("--network", "host", "--network", "db")[0] == 2


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-v", "data:/in"], "absolute host path"),
        (["-v", "/a"], "HOST_PATH:PATH"),
        (["-v", "/a:/b:rx"], "ro or rw"),
        (["--tmpfs", "/run:size=lots"], "number of bytes"),
        (["-w", "relative"], "workingDir"),
        (["--env-file", "/nonexistent/env"], "/nonexistent/env"),
        # What kukeond cannot publish is judged here, as a port out of range is (the
        # server's 422 was exit 1 for `-p 80` where `-p 99999:80` was exit 2).
        (["-p", "99999:80"], "not between 1 and 65535"),
        (["-p", "80"], "'80' gives no host port: write hostPort:containerPort"),
        (["-p", "[::1]:53:53/udp"], "only IPv4 host addresses"),
        (["-p", "8080:80", "-p", "8080:81"], "already claimed by spec.containers[0].ports[0]"),
        (["--network", "host", "-p", "8080:80"], "publishes nothing"),
    ],
)
def test_malformed_options_are_usage_errors_naming_them(args: list[str], named: str) -> None:
    code, output = _dry(*args)
    assert code == 2, output
    assert named in output


def test_dry_runs_and_output_do_not_mix_with_following() -> None:
    for following in (["--rm"], ["-i"], ["--wait"]):
        result = CliRunner().invoke(
            cli, [*NO_SERVER, "run", "w", "--image", "i", "--dry-run=server", *following]
        )
        assert result.exit_code == 2, result.output
    result = CliRunner().invoke(cli, [*NO_SERVER, "run", "w", "--image", "i", "--rm", "-o", "json"])
    assert result.exit_code == 2
    result = CliRunner().invoke(cli, [*NO_SERVER, "run", "w", "--image", "i", "--dry-run=client"])
    assert (result.exit_code, result.output) == (0, "cell/w created (dry run)\n")


@pytest.mark.parametrize("policy", ["always", "on-failure"])
def test_rm_refuses_a_restart_policy(policy: str) -> None:
    """docker's 'Conflicting options: --restart and --rm': `run --rm --restart always` was
    sent, and followed the container's restarts forever (it never was the last exit)."""
    args = [*NO_SERVER, "run", "w", "--image", "i", "--rm", "--restart", policy, "--", "true"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert f"--rm and --restart {policy} conflict" in result.stderr
    never = CliRunner().invoke(
        cli, [*NO_SERVER, "run", "w", "--image", "i", "--rm", "--restart", "never"]
    )
    assert never.exit_code == 1  # sent: no server here


def test_a_profile_takes_none_of_the_container_options() -> None:
    for option in (["-v", "/a:/b"], ["-w", "/x"], ["--privileged"], ["--entrypoint", "x"]):
        result = CliRunner().invoke(cli, [*NO_SERVER, "run", "--profile", "p", *option])
        assert result.exit_code == 2, (option, result.output)
        assert "cannot be given with --profile" in result.output


def test_env_files_are_read_as_dockers(tmp_path: Path) -> None:
    """A file saved by a Windows editor starts with a UTF-8 byte-order mark, which docker
    drops (its first variable was named '\\ufeffA'); lines end at '\\n' only (CR LF too), so
    a form feed or a U+2028 inside a value stays in it (str.splitlines cut the value there
    and took the rest as a bare KEY, silently dropped)."""
    env_file = tmp_path / "env"
    env_file.write_bytes("\ufeffA=1\r\nB=x\x0cy\u2028z\nC=3\n".encode())
    assert _container("--env-file", str(env_file))["env"] == ["A=1", "B=x\x0cy\u2028z", "C=3"]


def test_a_bare_env_option_takes_the_shells_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker's ``-e FOO``: FOO's value in the caller's shell, nothing when it has none; it
    was sent as 'FOO', which the API refuses (422: not KEY=VALUE)."""
    monkeypatch.setenv("FROM_SHELL", "here=too")
    monkeypatch.delenv("NOT_SET", raising=False)
    container = _container("-e", "FROM_SHELL", "-e", "NOT_SET", "-e", "A=")
    assert container["env"] == ["FROM_SHELL=here=too", "A="]
    assert not _container("-e", "NOT_SET").get("env")
