"""`kukectl apply|create -f ... -o name`, kubectl's: each object's KIND/NAME alone on stdout,
for `| xargs`; the option was refused ('No such option -o')."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kukeon.api import parse_resource
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


def test_only_name_is_offered() -> None:
    result = CliRunner().invoke(cli, ["apply", "-f", "-", "-o", "yaml"], input=MANIFEST)
    assert result.exit_code == 2
