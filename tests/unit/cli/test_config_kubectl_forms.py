"""kubectl's `config view -o json|jsonpath= --minify`, `config get-contexts [NAME] -o name
--no-headers` and `config rename-context OLD NEW`: each was "No such option" or "No such
command" (no server needed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kukeon.cli.main import cli

Run = Callable[..., tuple[int, str, str]]
"""kukectl ARGS with the test's config file: exit code, stdout, stderr."""


@pytest.fixture
def kukectl(tmp_path: Path) -> Run:
    path = tmp_path / "config.yaml"

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, ["--config", str(path), *args])
        return result.exit_code, result.stdout, result.stderr

    server = ["--server", "https://10.0.0.5:6443"]
    assert run("config", "set-context", "dev", *server, "--token", "s3cret0123456789")[0] == 0
    assert run("config", "set-context", "prod", *server, "--realm", "p")[0] == 0
    return run


def test_view_formats_and_minify(kukectl: Run) -> None:
    run = kukectl
    code, out, _ = run("config", "view", "-o", "json")
    document = json.loads(out)
    assert (code, document["contexts"][0]["token"]) == (0, "REDACTED")  # masked, as yaml
    code, out, _ = run("config", "view", "-o=jsonpath={.contexts[*].name}")
    assert (code, out) == (0, "dev prod")
    code, out, _ = run("config", "view", "--minify")
    assert [c["name"] for c in yaml.safe_load(out)["contexts"]] == ["dev"]
    assert run("config", "view", "-o", "wide")[0] == 2


def test_get_contexts_by_name(kukectl: Run) -> None:
    run = kukectl
    assert run("config", "get-contexts", "-o", "name")[:2] == (0, "dev\nprod\n")
    code, out, _ = run("config", "get-contexts", "--no-headers", "prod")
    assert (code, out.split()) == (0, ["prod", "https://10.0.0.5:6443", "p"])
    code, out, err = run("config", "get-contexts", "prod", "nope", "-o", "name")
    assert (code, out) == (1, "prod\n")
    assert "context nope not found in " in err


def test_rename_context(kukectl: Run) -> None:
    run = kukectl
    assert run("config", "rename-context", "dev", "dev2")[:2] == (
        0,
        "context 'dev' renamed to 'dev2'\n",
    )
    assert run("config", "current-context")[1] == "dev2\n"  # still current, renamed
    code, _, err = run("config", "rename-context", "dev2", "prod")
    assert code == 1
    assert "the context 'prod' already exists" in err
    assert run("config", "rename-context", "nope", "x")[0] == 2
    assert run("config", "get-contexts", "-o", "name")[1] == "dev2\nprod\n"
