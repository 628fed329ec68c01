"""`kukectl patch -p` that is not a patch says what is wrong with it, where (exit 2,
nothing sent): a key given twice was "neither JSON nor YAML: while constructing a
mapping", the YAML error's context line, not its problem."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from kukeon.api import Kind
from kukeon.cli.main import cli
from kukeon.cli.runner import EXIT_USAGE
from kukeon.client.apiclient import ApiClient, ApiRequestError


@pytest.mark.parametrize(
    ("patch", "said"),
    [
        ('{"spec": {"desiredState": "Stopped", "desiredState": "Running"}}', "duplicate key"),
        ("spec: [1", "expected ',' or ']'"),
        ("spec: a: b", "mapping values are not allowed"),
    ],
)
def test_a_patch_that_does_not_read_says_why(patch: str, said: str) -> None:
    result = CliRunner().invoke(
        cli, ["--server", "unix:///nonexistent.sock", "patch", "cell", "web", "-p", patch]
    )
    assert result.exit_code == EXIT_USAGE
    assert "the patch is neither JSON nor YAML: " in result.output
    assert said in result.output
    assert "(line " in result.output
    assert "while constructing" not in result.output


@pytest.mark.parametrize(
    ("patch", "sent"),
    [
        # A boolean field takes a plain YAML 1.1 word for its boolean, as kubectl does.
        ("spec: {autoDelete: yes}", {"spec": {"autoDelete": True}}),
        (
            "spec: {containers: [{id: a, privileged: Off}]}",
            {"spec": {"containers": [{"id": "a", "privileged": False}]}},
        ),
        # Any other field keeps the text written (kubectl would send true there).
        ("metadata: {labels: {a: yes}}", {"metadata": {"labels": {"a": "yes"}}}),
        (
            "spec: {containers: [{id: a, args: [on]}]}",
            {"spec": {"containers": [{"id": "a", "args": ["on"]}]}},
        ),
        # Quoted, it is text everywhere: the server refuses it in a boolean field.
        ("spec: {autoDelete: 'yes'}", {"spec": {"autoDelete": "yes"}}),
    ],
)
def test_a_yaml_boolean_word_is_sent_as_its_fields_type(
    patch: str, sent: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    patches: list[dict[str, Any]] = []

    async def patched(
        self: ApiClient, kind: Kind, key: tuple[str, ...], document: dict[str, Any], **_: Any
    ) -> None:
        patches.append(document)
        raise ApiRequestError(404, "NotFound", "not found")

    monkeypatch.setattr(ApiClient, "patch", patched)
    # -o json: the patch alone (the default output reads the object first, for "no change")
    args = ["--server", "unix:///nonexistent.sock", "patch", "cell", "web", "-o", "json"]
    CliRunner().invoke(cli, [*args, "-p", patch])
    assert patches == [sent]
    assert json.loads(json.dumps(patches[0])) == sent  # JSON's types, as sent
