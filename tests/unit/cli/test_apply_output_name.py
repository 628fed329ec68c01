"""`kukectl apply|create -f ... -o name`, kubectl's: each object's KIND/NAME alone on stdout,
for `| xargs`; the option was refused ('No such option -o'). And kubectl's -o yaml|json:
the objects as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kukeon.api import AnyResource, parse_resource
from kukeon.cli.main import cli
from kukeon.cli.manifests import Applier, Document, Reporter
from tests.unit.cli.test_apply_conflicts import BusyClient
from tests.unit.cli.test_apply_manifest_version import STORED

MANIFEST = """\
apiVersion: v1beta1
kind: Stack
metadata: {name: site}
spec: {realmId: shop, spaceId: web}
---
apiVersion: v1beta1
kind: Cell
metadata: {name: api}
spec:
  realmId: shop
  spaceId: web
  stackId: site
  containers: [{id: main, image: busybox}]
"""


@pytest.mark.parametrize("command", ["apply", "create"])
def test_a_client_dry_run_prints_the_names(tmp_path: Path, command: str) -> None:
    (tmp_path / "app.yaml").write_text(MANIFEST)
    args = [command, "-f", str(tmp_path / "app.yaml"), "--dry-run=client", "-o", "name"]
    result = CliRunner().invoke(cli, args)
    assert (result.exit_code, result.stdout) == (0, "stack/site\ncell/api\n")


async def test_what_was_written_is_printed_by_name() -> None:
    lines: list[str] = []
    document = Document(source="web.yaml", position=0, resource=parse_resource(STORED))
    reporter = Reporter(ok=lines.append, error=lines.append, names_only=True)
    applier = Applier(client=BusyClient(busy=0), reporter=reporter)  # type: ignore[arg-type]
    assert await applier.apply([document])
    assert lines == [f"cell/{STORED['metadata']['name']}"]


def test_only_name_yaml_and_json_are_offered() -> None:
    result = CliRunner().invoke(cli, ["apply", "-f", "-", "-o", "wide"], input=MANIFEST)
    assert result.exit_code == 2


@pytest.mark.parametrize("command", ["apply", "create"])
def test_a_client_dry_run_prints_the_objects_as_kubectl(command: str) -> None:
    """kubectl's apply|create -o yaml|json: one object alone, several as a List (it was
    "'yaml' is not 'name'", exit 2)."""
    args = [command, "-f", "-", "--dry-run=client", "-o"]
    listed = yaml.safe_load(CliRunner().invoke(cli, [*args, "yaml"], input=MANIFEST).stdout)
    assert (listed["kind"], [item["kind"] for item in listed["items"]]) == (
        "List",
        ["Stack", "Cell"],
    )
    one = MANIFEST.split("---\n")[1]
    result = CliRunner().invoke(cli, [*args, "json"], input=one)
    assert (result.exit_code, json.loads(result.stdout)["metadata"]["name"]) == (0, "api")


async def test_what_was_written_is_printed_as_the_object() -> None:
    document = Document(source="web.yaml", position=0, resource=parse_resource(STORED))
    lines: list[str] = []
    shown: list[AnyResource] = []
    reporter = Reporter(ok=lines.append, error=lines.append, objects=shown)
    client = BusyClient(busy=0)
    applier = Applier(client=client, reporter=reporter)  # type: ignore[arg-type]
    assert await applier.apply([document])
    assert lines == []  # no "unchanged" line beside the object
    assert shown == [parse_resource(STORED)]  # unchanged: the object as the server has it
    assert client.written == []
    changed = {**STORED, "metadata": {**STORED["metadata"], "labels": {"app": "other"}}}
    document = document._replace(resource=parse_resource(changed))
    assert await applier.apply([document])
    assert len(client.written) == 1
    assert shown[1:] == client.written  # configured: the server's answer to the update
