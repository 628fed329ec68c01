"""The JSONPath of kubectl's `-o jsonpath=`, `-o custom-columns=` and `--sort-by`, over the
documents kukectl prints (camelCase fields, as `-o json` shows them).

A path is `.a.b`, `.a[0]`, `.a[*].b`, `.a[-1]` or `.metadata.labels.app\\.kubernetes\\.io/name`
(an escaped dot stays in the key); `$` or a leading `.` is the root. A template mixes text
with `{PATH}`, `{"literal"}` and `{range PATH}...{end}`, as kubectl's; several values of one
expression are joined by a space. That is the part of kubectl's JSONPath people use; filters
(`[?(@.x==1)]`) and slices are refused with an error naming them, never ignored.
"""

from __future__ import annotations

import json
import re
from typing import Any

_MISSING = object()


class JsonPathError(ValueError):
    """A path or template kukectl cannot evaluate; the message says what and where."""


def _steps(path: str) -> list[str | int | None]:
    """`.a.b[0][*]` as ["a", "b", 0, None] (None: every element)."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[str | int | None] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char == ".":
            match = re.compile(r"((?:\\.|[^.\[\\])*)").match(text, position + 1)
            assert match is not None
            key = match.group(1).replace("\\.", ".")
            if key:
                steps.append(key)
            position = match.end()
        elif char == "[":
            end = text.find("]", position)
            if end < 0:
                raise JsonPathError(f"unclosed [ in {path!r}")
            inside = text[position + 1 : end].strip()
            if inside == "*":
                steps.append(None)
            elif re.fullmatch(r"-?\d+", inside):
                steps.append(int(inside))
            elif len(inside) >= 2 and inside[0] == inside[-1] and inside[0] in "'\"":
                steps.append(inside[1:-1])
            else:
                raise JsonPathError(f"unsupported [{inside}] in {path!r} (filters and slices)")
            position = end + 1
        else:
            raise JsonPathError(f"{path!r}: expected . or [ at {text[position:][:20]!r}")
    return steps


def values(document: Any, path: str) -> list[Any]:
    """Every value `path` reaches in `document` (none when a field is absent)."""
    current: list[Any] = [document]
    for step in _steps(path):
        found: list[Any] = []
        for value in current:
            if step is None:
                if isinstance(value, list):
                    found.extend(value)
                elif isinstance(value, dict):
                    found.extend(value.values())
            elif isinstance(step, int):
                if isinstance(value, list) and -len(value) <= step < len(value):
                    found.append(value[step])
            elif isinstance(value, dict) and step in value:
                found.append(value[step])
        current = found
    return current


def text_of(value: Any) -> str:
    """A value as kubectl prints it: strings bare, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value, separators=(",", ":"))


_TOKEN = re.compile(r"\{((?:\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|[^{}])*)\}")


def _literal(expression: str) -> str | None:
    if len(expression) >= 2 and expression[0] == expression[-1] and expression[0] in "'\"":
        try:
            decoded: str = json.loads('"' + expression[1:-1].replace('"', '\\"') + '"')
        except json.JSONDecodeError as exc:
            raise JsonPathError(f"bad string literal {expression}") from exc
        return decoded
    return None


def render_template(template: str, document: Any) -> str:
    """kubectl's `-o jsonpath=TEMPLATE` over `document`."""
    parts: list[tuple[str, str]] = []  # ("text", s) or ("expr", s)
    position = 0
    for match in _TOKEN.finditer(template):
        if match.start() > position:
            parts.append(("text", template[position : match.start()]))
        parts.append(("expr", match.group(1).strip()))
        position = match.end()
    if position < len(template):
        parts.append(("text", template[position:]))
    for kind, text in parts:
        # As kubectl's: a { always opens an expression (a literal one is {"{"}).
        if kind == "text" and "{" in text:
            unclosed = text[text.index("{") :]
            raise JsonPathError(f"unclosed expression {unclosed!r} in template {template!r}")
    output, rest = _render(parts, 0, document, top=True)
    if rest != len(parts):
        raise JsonPathError("{end} without {range ...}")
    return output


def _render(
    parts: list[tuple[str, str]], start: int, document: Any, *, top: bool
) -> tuple[str, int]:
    out: list[str] = []
    index = start
    while index < len(parts):
        kind, value = parts[index]
        if kind == "text":
            out.append(value)
        elif value == "end":
            if top:
                raise JsonPathError("{end} without {range ...}")
            return "".join(out), index
        elif value.startswith("range "):
            items = values(document, value.removeprefix("range "))
            end = _matching_end(parts, index + 1)
            for item in items:
                text, _ = _render(parts[: end + 1], index + 1, item, top=False)
                out.append(text)
            index = end
        else:
            literal = _literal(value)
            if literal is not None:
                out.append(literal)
            else:
                out.append(" ".join(text_of(v) for v in values(document, value)))
        index += 1
    if not top:
        raise JsonPathError("{range ...} without {end}")
    return "".join(out), index


def _matching_end(parts: list[tuple[str, str]], start: int) -> int:
    depth = 0
    for index in range(start, len(parts)):
        kind, value = parts[index]
        if kind != "expr":
            continue
        if value.startswith("range "):
            depth += 1
        elif value == "end":
            if depth == 0:
                return index
            depth -= 1
    raise JsonPathError("{range ...} without {end}")


def relaxed_path(path: str) -> str:
    """A path of `custom-columns` or `--sort-by` as kubectl's RelaxedJSONPathExpression reads
    it: `metadata.name`, `.metadata.name`, `{metadata.name}` and `{.metadata.name}` alike."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text and text[0] not in ".[$":
        text = "." + text
    _steps(text)  # refuse a bad path before any request
    return text


def parse_columns(spec: str) -> list[tuple[str, str]]:
    """`NAME:.metadata.name,IP:.status.network.ip` as [(header, path), ...]."""
    columns: list[tuple[str, str]] = []
    for part in spec.split(","):
        header, sep, path = part.partition(":")
        if not sep or not header.strip() or not path.strip():
            raise JsonPathError(f"custom column {part!r} is not HEADER:PATH")
        columns.append((header.strip(), relaxed_path(path)))
    return columns


def sort_key(path: str) -> Any:
    """A sort key for documents by `--sort-by PATH`: numbers by value, then text, absent last."""
    inner = relaxed_path(path)

    def key(document: Any) -> tuple[int, float, str]:
        found = values(document, inner)
        if not found:
            return (2, 0.0, "")
        first = found[0]
        if isinstance(first, int | float) and not isinstance(first, bool):
            return (0, float(first), "")
        return (1, 0.0, text_of(first))

    return key
