"""`kukectl get -o <TAB>` completes the output formats, as kubectl's (it completed nothing:
get's -o takes templates, so it is no click choice)."""

from __future__ import annotations

from tests.unit.cli.test_completion import Complete, environment, server, tab  # noqa: F401


def test_get_output_formats(tab: Complete) -> None:  # noqa: F811 - the imported fixture
    formats = ["table", "wide", "yaml", "json", "name", "jsonpath=", "custom-columns="]
    assert tab("kukectl get cells -o ") == formats
    assert tab("kukectl get cells --output j") == ["json", "jsonpath="]
    assert tab("kukectl apply -f x -o ") == ["name", "yaml", "json"]  # a choice, as before
