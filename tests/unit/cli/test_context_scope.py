"""A context's realm, space and stack (kubectl's context namespace): where commands act
when they give no --realm, --space or --stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kukeon.cli.main import cli
from tests.unit.cli.listserver import list_server

ROOT = "/apis/kukeon.io/v1beta1"


@pytest.fixture
def kukectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, list[str]]]:
    for name in ("KUKEON_SERVER", "KUKEON_TOKEN", "KUKEON_CA", "KUKEON_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "config.yaml"))
    paths: list[str] = []
    with list_server(tmp_path / "k.sock", seen=paths):
        yield tmp_path / "k.sock", paths


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_set_context_keeps_a_scope_and_shows_it(
    kukectl: tuple[Path, list[str]], tmp_path: Path
) -> None:
    socket, _ = kukectl
    server = f"unix://{socket}"
    assert _run("config", "set-context", "team", "--server", server, "--realm", "shop")[0] == 0
    assert _run("config", "set-context", "team", "--space", "web", "--stack", "front")[0] == 0
    stored = yaml.safe_load((tmp_path / "config.yaml").read_text())["contexts"][0]
    assert stored == {
        "name": "team",
        "server": server,
        "realm": "shop",
        "space": "web",
        "stack": "front",
    }
    code, listing = _run("config", "get-contexts")
    assert listing.splitlines()[1].split()[-3:] == ["shop", "web", "front"]
    assert _run("config", "set-context", "team", "--stack", "")[0] == 0  # '' unsets
    assert "stack" not in yaml.safe_load((tmp_path / "config.yaml").read_text())["contexts"][0]
    # kubectl's form: --current without NAME changes the current context
    assert _run("config", "set-context", "--current", "--space", "api")[0] == 0
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["contexts"][0]["space"] == "api"
    assert _run("config", "set-context", "--space", "api")[0] == 2  # no NAME, no --current
    code, output = _run("config", "set-context", "team", "--realm", "Not_A_Name")
    assert code == 2
    assert "--realm" in output
    assert "realm: shop" in (tmp_path / "config.yaml").read_text()  # nothing written


def test_commands_act_in_the_contexts_scope_unless_told_otherwise(
    kukectl: tuple[Path, list[str]],
) -> None:
    socket, paths = kukectl
    server = f"unix://{socket}"
    _run("config", "set-context", "team", "--server", server, "--realm", "shop", "--space", "web")
    _run("config", "set-context", "other", "--server", server, "--realm", "lab")

    for args in (
        ("get", "cells"),
        ("get", "cells", "--realm", "prod"),
        ("get", "cells", "--realm", "shop", "--stack", "back"),
        ("get", "secrets"),
        ("get", "stacks"),
        ("--context", "other", "get", "cells"),
        ("image", "ls"),
    ):
        code, output = _run(*args)
        assert code == 0, (args, output)
    assert paths == [
        f"{ROOT}/realms/shop/spaces/web/stacks/default/cells",
        # another realm: the context's space is not one of it
        f"{ROOT}/realms/prod/spaces/default/stacks/default/cells",
        f"{ROOT}/realms/shop/spaces/web/stacks/back/cells",
        # a Secret's space is the context's, as if --space were typed
        f"{ROOT}/realms/shop/spaces/web/stacks/-/secrets",
        f"{ROOT}/realms/shop/spaces/web/stacks",
        f"{ROOT}/realms/lab/spaces/default/stacks/default/cells",
        f"{ROOT}/realms/shop/images",
    ]


def test_all_parents_override_the_contexts_scope(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cell(realm: str, name: str) -> dict[str, object]:
        return {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {"realmId": realm, "spaceId": "default", "stackId": "default",
                     "containers": [{"id": "main", "image": "busybox"}]},
        }  # fmt: skip

    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "config.yaml"))
    for name in ("KUKEON_SERVER", "KUKEON_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    socket = tmp_path / "list.sock"
    with list_server(socket, [cell("shop", "a"), cell("lab", "b")]):
        _run("config", "set-context", "team", "--server", f"unix://{socket}", "--realm", "shop")
        code, output = _run("get", "cells", "-A", "-o", "name")
        assert (code, output.split()) == (0, ["cell/a", "cell/b"])
        code, output = _run("get", "cells", "-A", "--realm", "lab", "-o", "name")
        assert (code, output.split()) == (0, ["cell/b"])
