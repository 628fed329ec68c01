"""kubectl's imperative creates: `kukectl create realm|space|stack|cellset NAME` (client
dry runs: the documents they would send)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kukeon.cli.main import cli

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]


@pytest.fixture(autouse=True)
def no_context(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "none.yaml"))


def _made(*args: str) -> dict[str, Any]:
    words = list(args)
    at = words.index("--") if "--" in words else len(words)
    words[at:at] = ["--dry-run=client", "-o", "yaml"]
    result = CliRunner().invoke(cli, [*NO_SERVER, "create", *words])
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(result.output)
    assert isinstance(document, dict)
    return document


def test_the_hierarchy() -> None:
    realm = _made("realm", "prod")
    assert (realm["kind"], realm["metadata"]["name"]) == ("Realm", "prod")
    space = _made("space", "web", "--realm", "prod")
    assert (space["kind"], space["spec"]["realmId"]) == ("Space", "prod")
    stack = _made("stack", "site", "--realm", "prod", "--space", "web")
    assert (stack["spec"]["realmId"], stack["spec"]["spaceId"]) == ("prod", "web")
    # the scope given to create itself, as kubectl's -n before the subcommand
    before = _made("--realm", "prod", "stack", "site")
    assert (before["spec"]["realmId"], before["spec"]["spaceId"]) == ("prod", "default")
    assert _made("space", "web")["spec"]["realmId"] == "default"


def test_a_cellset_as_kubectl_create_deployment() -> None:
    made = _made(
        "cellset", "web", "--image", "nginx:1.27", "--replicas", "3", "-e", "A=1",
        "--realm", "prod", "--space", "web", "--stack", "site", "--", "-g", "daemon off;",
    )  # fmt: skip
    spec = made["spec"]
    assert (spec["realmId"], spec["spaceId"], spec["stackId"]) == ("prod", "web", "site")
    assert spec["replicas"] == 3
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    assert spec["template"]["metadata"]["labels"] == {"app": "web"}
    [container] = spec["template"]["spec"]["containers"]
    assert (container["id"], container["image"]) == ("web", "nginx:1.27")
    assert (container["env"], container["args"]) == (["A=1"], ["-g", "daemon off;"])


def test_invalid_names_and_missing_image_are_usage_errors() -> None:
    for args in (["realm", "Bad_Name"], ["space", "ok", "--realm", "-x"], ["cellset", "web"]):
        result = CliRunner().invoke(cli, [*NO_SERVER, "create", *args, "--dry-run=client"])
        assert result.exit_code == 2, (args, result.output)


@pytest.mark.parametrize("send", ["--dry-run=client", "--dry-run=server"])
def test_a_port_no_node_can_publish_is_a_usage_error(send: str) -> None:
    """`create cellset -p 80` was sent and refused by the server (exit 1) where `-p
    99999:80` was exit 2: both are judged before anything is sent, as `run -p` is."""
    for publish, named in (
        ("80", "'80' gives no host port: write hostPort:containerPort"),
        ("99999:80", "port 99999 of '99999:80' is not between 1 and 65535"),
    ):
        args = ["create", "cellset", "web", "--image", "busybox", "-p", publish, send]
        result = CliRunner().invoke(cli, [*NO_SERVER, *args])
        assert result.exit_code == 2, result.output
        assert f"spec.template.spec.containers[0].ports[0]: {named}" in result.output
