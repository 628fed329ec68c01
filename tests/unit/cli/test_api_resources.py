"""`kukectl api-resources`: every kind with its short names and parents, no server."""

from __future__ import annotations

from click.testing import CliRunner

from kukeon.cli.main import cli
from kukeon.client.paths import KINDS, kind_for_alias


def test_every_kind_with_its_short_names_and_parents() -> None:
    result = CliRunner().invoke(cli, ["--server", "unix:///nonexistent.sock", "api-resources"])
    assert result.exit_code == 0, result.output
    header, *rows = [line.split() for line in result.output.splitlines()]
    assert header == ["NAME", "SHORTNAMES", "APIVERSION", "PARENTS", "KIND"]
    by_name = {row[0]: row for row in rows}
    assert set(by_name) == {info.plural for info in KINDS.values()}
    assert by_name["cells"] == ["cells", "ce", "kukeon.io/v1beta1", "realm,space,stack", "Cell"]
    assert by_name["realms"] == ["realms", "kukeon.io/v1beta1", "<none>", "Realm"]
    for row in rows:  # every short name shown is one kukectl takes for that kind
        if len(row) == 5:
            for short in row[1].split(","):
                assert kind_for_alias(short) == kind_for_alias(row[0])


def test_names_only() -> None:
    result = CliRunner().invoke(cli, ["api-resources", "-o", "name"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == sorted(info.plural for info in KINDS.values())
