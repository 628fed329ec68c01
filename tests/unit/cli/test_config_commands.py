"""kukectl config: set-context, use-context, get-contexts, view (no server needed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kukeon.cli.main import cli


def test_context_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "kukeon" / "config.yaml"
    runner = CliRunner()

    def kukectl(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, ["--config", str(path), *args])
        return result.exit_code, result.output

    assert kukectl("config", "set-context", "local", "--server", "unix:///run/k.sock") == (
        0,
        "context 'local' created\n",
    )
    code, _ = kukectl(
        "config", "set-context", "prod", "--server", "https://10.0.0.5:6443", "--token", "s3cret"
    )
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds tokens
    stored = yaml.safe_load(path.read_text())
    assert stored["currentContext"] == "local"  # the first context became current
    assert stored["contexts"][1] == {
        "name": "prod",
        "server": "https://10.0.0.5:6443",
        "token": "s3cret",
    }

    assert kukectl("config", "use-context", "prod") == (0, "switched to context 'prod'\n")
    code, listing = kukectl("config", "get-contexts")
    assert [line.rstrip() for line in listing.splitlines()] == [
        "CURRENT   NAME    SERVER                  REALM   SPACE   STACK",
        "          local   unix:///run/k.sock",
        "*         prod    https://10.0.0.5:6443",
    ]
    code, view = kukectl("config", "view")
    assert "s3cret" not in view
    assert "REDACTED" in view

    code, _ = kukectl("config", "set-context", "prod", "--certificate-authority", "ca.crt")
    assert code == 0
    prod = yaml.safe_load(path.read_text())["contexts"][1]
    assert prod["token"] == "s3cret"  # kept
    assert prod["certificateAuthority"].endswith("/ca.crt")

    code, output = kukectl("config", "use-context", "nope")
    assert code == 2
    assert "context 'nope' not found" in output
    code, output = kukectl("config", "set-context", "bad", "--server", "http://x:1")
    assert code == 2
    assert "https" in output


def test_a_planted_temporary_file_never_receives_the_token(tmp_path: Path) -> None:
    """The file was written through ``config.yaml.tmp`` opened without O_EXCL: in a
    directory others may write (``KUKEON_CONFIG=/tmp/...``), a file planted there kept its
    owner and mode (the token readable, the config theirs to rewrite), and a symbolic link
    there had the token written wherever it pointed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    path = shared / "config.yaml"
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    planted = shared / "config.yaml.tmp"
    planted.symlink_to(victim)
    result = CliRunner().invoke(
        cli, ["--config", str(path), "config", "set-context", "prod", "--token", "s3cret"]
    )
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "untouched\n"
    assert not path.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text())["contexts"][0]["token"] == "s3cret"
    assert sorted(p.name for p in shared.iterdir()) == ["config.yaml", "config.yaml.tmp"]


def test_a_config_file_that_cannot_be_written_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only directory (root passes any mode, so the write is made to fail): exit 1
    naming the file, as kubectl, not an 'unexpected failure'."""

    def refuse(path: Path, data: str, **_: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("kukeon.cli.configfile.write_atomically", refuse)
    path = tmp_path / "config.yaml"
    result = CliRunner().invoke(cli, ["--config", str(path), "config", "set-context", "a"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: cannot write {path}: ")
    assert "unexpected" not in result.output


def test_a_new_context_without_server_connects_as_the_current_one(tmp_path: Path) -> None:
    """``set-context team --realm shop`` while a remote context is current made ``team``
    talk to the local socket (the model's default), so its commands failed to connect or,
    on a host with a kukeond of its own, acted there. A new context without --server now
    takes the current context's server, token and CA; with --server it takes none of them
    (no token goes to a server it was not made for)."""
    path = tmp_path / "config.yaml"
    ca = tmp_path / "ca.crt"

    def kukectl(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--config", str(path), "config", *args])
        return result.exit_code, result.output

    prod = ["--server", "https://10.0.0.5:6443", "--token", "s3cret"]
    assert kukectl("set-context", "prod", *prod, "--certificate-authority", str(ca))[0] == 0
    assert kukectl("set-context", "team", "--realm", "shop") == (
        0,
        "context 'team' created (the server and credentials of context 'prod')\n",
    )
    assert kukectl("set-context", "mine", "--token-file", "t") == (
        0,
        "context 'mine' created (the server and credentials of context 'prod')\n",
    )
    assert kukectl("set-context", "lab", "--server", "https://10.0.0.9:6443") == (
        0,
        "context 'lab' created\n",
    )
    contexts = {c.pop("name"): c for c in yaml.safe_load(path.read_text())["contexts"]}
    ca_path = str(ca.resolve())
    assert contexts["team"] == {
        "server": "https://10.0.0.5:6443",
        "token": "s3cret",
        "certificateAuthority": ca_path,
        "realm": "shop",
    }
    # A token of its own replaces the current context's token, of either kind.
    assert contexts["mine"] == {
        "server": "https://10.0.0.5:6443",
        "tokenFile": str((Path.cwd() / "t").resolve()),
        "certificateAuthority": ca_path,
    }
    assert contexts["lab"] == {"server": "https://10.0.0.9:6443"}
    assert contexts["prod"]["server"] == "https://10.0.0.5:6443"  # the source is unchanged

    # Giving a context one kind of token drops the other, which would have won unseen.
    assert kukectl("set-context", "team", "--token-file", "t")[0] == 0
    team = yaml.safe_load(path.read_text())["contexts"][1]
    assert "token" not in team
    assert team["tokenFile"].endswith("/t")
    code, output = kukectl("set-context", "team", "--token", "a", "--token-file", "t")
    assert code == 2
    assert "--token or --token-file, not both" in output


def test_a_first_context_without_server_is_the_local_socket(tmp_path: Path) -> None:
    """With no current context there is nothing to take: kukectl's default, the socket."""
    path = tmp_path / "config.yaml"
    result = CliRunner().invoke(cli, ["--config", str(path), "config", "set-context", "a"])
    assert result.output == "context 'a' created\n"
    [context] = yaml.safe_load(path.read_text())["contexts"]
    assert context == {"name": "a", "server": "unix:///run/kukeon/kukeond.sock"}


def test_set_context_says_the_overrides_it_does_not_store(tmp_path: Path) -> None:
    """``KUKEON_SERVER=https://n1:9443 kukectl config set-context team --realm shop`` made a
    context for the local socket and said nothing: the user's commands went to n1 while
    the variable was set and to the local daemon once it was gone. kukectl, as kubectl,
    writes none of its overrides into the file; it now says which one the context lacks,
    and how to store it, on stderr (the token itself never shown)."""
    path = tmp_path / "config.yaml"
    env = {"KUKEON_SERVER": "https://10.0.0.9:6443", "KUKEON_TOKEN": "s3cret", "KUKEON_CA": None}
    result = CliRunner(env=env).invoke(
        cli, ["--config", str(path), "config", "set-context", "team", "--realm", "shop"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "context 'team' created\n"
    [context] = yaml.safe_load(path.read_text())["contexts"]
    assert context["server"] == "unix:///run/kukeon/kukeond.sock"  # not the variable's
    assert "token" not in context
    lines = result.stderr.splitlines()
    assert lines == [
        "warning: KUKEON_SERVER=https://10.0.0.9:6443 overrides the server "
        "(unix:///run/kukeon/kukeond.sock) of context 'team' in every command while it is "
        "given, but is not written into the context (kubectl writes none of its overrides "
        "either): set-context team --server https://10.0.0.9:6443 stores it",
        "warning: KUKEON_TOKEN=(a token) overrides the token of context 'team' in every "
        "command while it is given, but is not written into the context (kubectl writes "
        "none of its overrides either): set-context team --token-file FILE stores it",
    ]
    assert "s3cret" not in result.output

    # The flags before the command are overrides too; one the context already holds is
    # not worth a word.
    result = CliRunner(env={**env, "KUKEON_TOKEN": None}).invoke(
        cli,
        [
            *("--config", str(path), "--certificate-authority", "/ca.crt"),
            *("config", "set-context", "team", "--server", "https://10.0.0.9:6443"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: --certificate-authority=/ca.crt overrides the certificate authority (none) "
        "of context 'team' in every command while it is given, but is not written into the "
        "context (kubectl writes none of its overrides either): set-context team "
        "--certificate-authority /ca.crt stores it\n"
    )


def test_delete_context(tmp_path: Path) -> None:
    """kubectl's `config delete-context NAME` was "No such command": a context could only
    be removed by editing the file. The current one may go too, leaving none current."""
    path = tmp_path / "config.yaml"

    def kukectl(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, ["--config", str(path), "config", *args])
        return result.exit_code, result.stdout, result.stderr

    assert kukectl("set-context", "a", "--server", "unix:///a.sock")[0] == 0  # current
    assert kukectl("set-context", "b", "--server", "unix:///b.sock")[0] == 0
    assert kukectl("delete-context", "b") == (0, f"deleted context b from {path}\n", "")
    assert [c["name"] for c in yaml.safe_load(path.read_text())["contexts"]] == ["a"]
    code, out, err = kukectl("delete-context", "a")
    assert (code, out) == (0, f"deleted context a from {path}\n")
    assert err == (
        "warning: this removed the current context; kukectl config use-context NAME picks another\n"
    )
    assert yaml.safe_load(path.read_text()).get("currentContext") is None
    code, _, err = kukectl("delete-context", "a")
    assert code == 2
    assert "context 'a' not found" in err
