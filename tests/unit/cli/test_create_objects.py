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
