"""`kukectl explain KIND[.field.path]`: the documentation of a kind's fields, as kubectl has it.

The schema is the one the CRDs in `crds/` are written from (`kukeon.api.schema`, generated
from the pydantic models), so it ships with the package, needs no server, and cannot drift
from what the API accepts. Unlike the CRDs, `metadata` keeps its fields here. A path walks
through lists (`spec.containers.image`) and maps (their values) as kubectl's does.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Mapping
from typing import Any

import click

from kukeon.api import GROUP, VERSION, Kind
from kukeon.api.schema import structural_schema
from kukeon.client.paths import KINDS, kind_for_alias

from .params import unknown_kind
from .runner import EXIT_SERVER, EXIT_USAGE, fail, print_text

Schema = Mapping[str, Any]


def type_name(node: Schema) -> str:
    """kubectl's spelling of a schema node's type: string, []Object, map[string]string..."""
    kind = node.get("type", "Object")
    if kind == "array":
        items = node.get("items")
        return "[]" + (type_name(items) if isinstance(items, Mapping) else "Object")
    if kind == "object":
        values = node.get("additionalProperties")
        if isinstance(values, Mapping) and "properties" not in node:
            return f"map[string]{type_name(values)}"
        return "Object"
    return str(kind)


def _element(node: Schema) -> Schema:
    """What a path step looks into: the items of a list, the values of a map, else itself."""
    while True:
        if node.get("type") == "array" and isinstance(node.get("items"), Mapping):
            node = node["items"]
        elif isinstance(node.get("additionalProperties"), Mapping) and "properties" not in node:
            node = node["additionalProperties"]
        else:
            return node


def fields_of(node: Schema) -> Mapping[str, Schema]:
    """The fields a path step may name below ``node``."""
    properties = _element(node).get("properties")
    return properties if isinstance(properties, Mapping) else {}


def _required(node: Schema) -> set[str]:
    return set(_element(node).get("required") or ())


# A sentence ends at a period and a space, but not the period of "e.g." or "i.e." (the
# descriptions' abbreviations): "Permissions of a tmpfs root, e.g. 0755; ..." was cut to
# "Permissions of a tmpfs root, e.g." in a kind's FIELDS.
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\. ")


def _one_line(description: str) -> str:
    """The first sentence (or line) of a description."""
    first = description.strip().split("\n\n")[0].replace("\n", " ")
    end = _SENTENCE_END.search(first)
    return first if end is None else first[: end.start() + 1]


def _description(node: Schema) -> str:
    """A field's description, else its elements' (a list of containers: the container's)."""
    return str(node.get("description") or _element(node).get("description") or "")


class ExplainError(Exception):
    """The path names no field."""


def resolve(kind: Kind, path: list[str]) -> tuple[Schema, str]:
    """The schema node at ``path`` of ``kind`` and its name (the kind's for an empty path)."""
    node: Schema = structural_schema(kind, with_metadata=True)
    walked = [KINDS[kind].kind.value.lower()]
    for step in path:
        fields = fields_of(node)
        if step not in fields:
            known = ", ".join(fields) or "none: it has no fields"
            raise ExplainError(
                f'field "{step}" does not exist in {".".join(walked)} (its fields: {known})'
            )
        node = fields[step]
        walked.append(step)
    return node, path[-1] if path else kind.value


def _field_lines(node: Schema, depth: int, recursive: bool) -> Iterator[str]:
    required = _required(node)
    indent = "  " * depth
    for name, child in fields_of(node).items():
        flag = " -required-" if name in required else ""
        yield f"{indent}{name}\t<{type_name(child)}>{flag}"
        if recursive:
            yield from _field_lines(child, depth + 1, recursive)
            continue
        description = _description(child)
        if description:
            yield f"{indent}  {_one_line(description)}"
        yield ""


def field_tree(kind: Kind) -> dict[str, Any]:
    """Every field path of ``kind`` as nested names (what completion offers)."""

    def tree(node: Schema) -> dict[str, Any]:
        return {name: tree(child) for name, child in fields_of(node).items()}

    return tree(structural_schema(kind, with_metadata=True))


def render(kind: Kind, path: list[str], *, recursive: bool = False) -> str:
    """kubectl explain's page: kind, version, the field, its description and its fields."""
    node, name = resolve(kind, path)
    lines = [f"GROUP:      {GROUP}", f"KIND:       {kind.value}", f"VERSION:    {VERSION}", ""]
    if path:
        lines += [f"FIELD: {name} <{type_name(node)}>", ""]
    facts = []
    if node.get("enum"):
        facts.append("ENUM:    " + ", ".join(str(value) for value in node["enum"]))
    if "default" in node:
        facts.append(f"DEFAULT: {node['default']}")
    if facts:
        lines += [*facts, ""]
    lines.append("DESCRIPTION:")
    description = _description(node) or "<empty>"
    for paragraph in description.strip().split("\n\n"):
        lines += textwrap.wrap(
            " ".join(paragraph.split()), width=80, initial_indent="    ", subsequent_indent="    "
        )
        lines.append("")
    if fields_of(node):
        lines.append("FIELDS:")
        lines += _field_lines(node, 1, recursive)
    return "\n".join(lines).rstrip() + "\n"


@click.command("explain")
@click.argument("resource", metavar="KIND[.FIELD.PATH]")
@click.option("--recursive", is_flag=True, help="Print every field below, as a tree of types.")
def explain(resource: str, recursive: bool) -> None:
    """Describe a kind's fields from its schema (no server needed), as kubectl explain.

    \b
    Examples:
      kukectl explain cells                      # the kind and its top-level fields
      kukectl explain cell.spec.containers       # a field: type, description, sub-fields
      kukectl explain cell.spec.containers.restartPolicy
      kukectl explain cell --recursive           # every field, as a tree
    """
    kind_text, _, rest = resource.partition(".")
    kind = kind_for_alias(kind_text)
    if kind is None:
        fail(unknown_kind(kind_text), EXIT_USAGE)
    path = rest.split(".") if rest else []
    if any(not step for step in path):
        fail(f"{resource!r}: a field path is KIND.field.field, without empty steps", EXIT_USAGE)
    try:
        print_text(render(kind, path, recursive=recursive))
    except ExplainError as exc:
        fail(f"{resource}: {exc}", EXIT_SERVER)
