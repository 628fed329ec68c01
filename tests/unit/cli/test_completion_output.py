"""`kukectl get -o <TAB>` completes the output formats, as kubectl's (it completed nothing:
get's -o takes templates, so it is no click choice); `config get-contexts` and
`rename-context` complete the contexts, as the other config commands."""

from __future__ import annotations

from pathlib import Path

from tests.unit.cli.test_completion import Complete, environment, server, tab  # noqa: F401


def test_get_output_formats(tab: Complete) -> None:  # noqa: F811 - the imported fixture
    formats = ["table", "wide", "yaml", "json", "name", "jsonpath=", "custom-columns="]
    assert tab("kukectl get cells -o ") == formats
    assert tab("kukectl get cells --output j") == ["json", "jsonpath="]
    assert tab("kukectl apply -f x -o ") == ["name", "yaml", "json"]  # a choice, as before


def test_the_new_config_commands_complete_context_names(
    tab: Complete,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    (tmp_path / "config.yaml").write_text(
        "contexts:\n  - {name: local, server: unix:///x.sock}\n  - {name: lab}\n"
    )
    assert tab("kukectl config get-contexts ") == ["local", "lab"]
    assert tab("kukectl config rename-context l") == ["local", "lab"]
    assert tab("kukectl config rename-context local ") == []  # the new name is the user's
