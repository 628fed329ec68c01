"""`kukectl delete -o name`: kubectl's, each object deleted said as ``kind/name`` and nothing
else (it was refused: "No such option: -o")."""

from __future__ import annotations

from typing import cast

import pytest
from click.testing import CliRunner

from kukeon.cli.delete import _delete_targets, _Deletion
from kukeon.cli.main import cli
from kukeon.client.apiclient import ApiClient

from .test_delete_levels import APP, FinalizingServer


def test_o_name_says_each_object_as_kind_slash_name() -> None:
    result = CliRunner().invoke(
        cli, ["delete", "cell/a", "cell/b", "-o", "name", "--dry-run=client"]
    )
    assert (result.exit_code, result.output) == (0, "cell/a\ncell/b\n")
    result = CliRunner().invoke(cli, ["delete", "cell", "a", "--dry-run=client"])
    assert result.output == "cell/a deleted (client dry run)\n"


def test_o_takes_only_name() -> None:
    result = CliRunner().invoke(cli, ["delete", "cell", "a", "-o", "yaml", "--dry-run=client"])
    assert result.exit_code == 2
    assert "'yaml' is not 'name'" in result.output


async def test_o_name_of_deletions_sent_says_only_their_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = FinalizingServer(APP)
    how = _Deletion(
        cascade=False,
        orphan=False,
        wait=True,
        timeout=60,
        ignore_not_found=False,
        server_dry=False,
        names_only=True,
    )
    assert await _delete_targets(cast(ApiClient, server), APP, [], how)
    assert capsys.readouterr().out == "cell/api\nstack/web\nspace/front\nrealm/shop\n"
