"""kubectl's `rollout history NAME --revision N`: that revision's template (it was "No such
option '--revision'"); -o yaml|json print the template alone."""

from __future__ import annotations

import json

import click
import pytest
import yaml
from click.testing import CliRunner

from kukeon.api import CellSet, parse_resource
from kukeon.cli.cellsets import history_lines, revision_text
from kukeon.cli.main import cli

TEMPLATE = {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"id": "m"}]}}


def _set() -> CellSet:
    template = {
        "metadata": {"labels": {"app": "w"}},
        "spec": {"containers": [{"id": "m", "image": "a:2"}]},
    }
    revisions = [
        {"revision": 1, "templateHash": "aaaa", "template": TEMPLATE},
        {"revision": 2, "templateHash": "bbbb", "changeCause": "set image", "template": template},
    ]
    found = parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "CellSet", "metadata": {"name": "web"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}}, "template": template},
         "status": {"revisions": revisions}}
    )  # fmt: skip
    assert isinstance(found, CellSet)
    return found


def test_a_revision_is_its_template_under_a_title() -> None:
    text = revision_text(_set(), 1, None)
    lines = text.splitlines()
    assert lines[:3] == ["cellset/web with revision #1", "Change cause: <none>", "Cell template:"]
    assert yaml.safe_load("\n".join(line[2:] for line in lines[3:])) == TEMPLATE
    assert revision_text(_set(), 2, None).splitlines()[1] == "Change cause: set image"
    assert json.loads(revision_text(_set(), 1, "json")) == TEMPLATE
    assert yaml.safe_load(revision_text(_set(), 1, "yaml")) == TEMPLATE
    assert [line.split()[0] for line in history_lines(_set())] == ["REVISION", "1", "2"]


def test_a_revision_not_kept_is_an_error_naming_those_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(click.exceptions.Exit) as exited:
        revision_text(_set(), 5, None)
    assert exited.value.exit_code == 1
    assert "cellset/web has no revision 5 (kept: 1, 2)" in capsys.readouterr().err


def test_output_needs_a_revision() -> None:
    args = ["--server", "unix:///nonexistent/k.sock", "rollout", "history", "cellset/web"]
    result = CliRunner().invoke(cli, [*args, "-o", "yaml"])
    assert result.exit_code == 2
    assert "give --revision N" in result.output
