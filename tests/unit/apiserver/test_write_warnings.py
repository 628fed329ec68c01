"""A container's ``command`` written as a whole command line is warned of at write time."""

from __future__ import annotations

from typing import Any

from kukeon.api import parse_resource
from kukeon.apiserver.writewarnings import command_line_warnings


def _cell(*containers: dict[str, Any]) -> Any:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": "c"},
            "spec": {"containers": list(containers)},
        }
    )


def test_a_command_line_is_named_with_its_field_and_the_way_to_write_it() -> None:
    cell = _cell(
        {"id": "a", "image": "i", "command": "/bin/app"},
        {"id": "b", "image": "i", "command": "sh -c 'echo \"hi\" > /x'"},
    )
    [text] = command_line_warnings(cell, None)
    assert text.startswith("spec.containers[1].command: 'sh -c \\'echo \"hi\" > /x\\'' is"), text
    assert "command: sh, args: [-c, 'LINE']" in text


def test_a_program_with_args_or_one_word_is_not_warned_of() -> None:
    cell = _cell(
        {"id": "a", "image": "i", "command": "sh", "args": ["-c", "echo hi"]},
        {"id": "b", "image": "i", "command": "/opt/my app/run", "args": ["x"]},
        {"id": "c", "image": "i"},
        {"id": "d", "image": "i", "command": "  /bin/app  "},
    )
    assert command_line_warnings(cell, None) == []


def test_a_cellsets_template_is_warned_of_and_a_long_command_is_cut() -> None:
    cellset = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": "s"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "s"}},
                "template": {
                    "metadata": {"labels": {"app": "s"}},
                    "spec": {"containers": [{"id": "a", "image": "i", "command": "x " * 100}]},
                },
            },
        }
    )
    [text] = command_line_warnings(cellset, None)
    assert text.startswith("spec.template.spec.containers[0].command: 'x x "), text
    assert "'... (200 characters) is run as one program" in text
