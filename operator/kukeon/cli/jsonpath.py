"""The JSONPath of kubectl's `-o jsonpath=`, `-o custom-columns=` and `--sort-by`, over the
documents kukectl prints (camelCase fields, as `-o json` shows them).

A path is `.a.b`, `.a[0]`, `.a[*].b`, `.a[-1]`, a slice `.a[1:3]` (`[start:end:step]`, as
Python's and kubectl's), a filter `.a[?(@.type=="Ready")]` or
`.metadata.labels.app\\.kubernetes\\.io/name` (an escaped dot stays in the key), or a
recursive descent `..name` (every `name` at any depth, as kubectl's); `$` or a leading `.`
is the root. A filter keeps the elements of a list for which a path below `@`
exists (`[?(@.ip)]`) or compares to a literal with `==`, `!=`, `<`, `<=`, `>` or `>=` (a
string, a number, true, false or null; numbers by value, text by text), as kubectl's. A
template mixes text with `{PATH}`, `{"literal"}` and `{range PATH}...{end}`, as kubectl's;
several values of one expression are joined by a space. What it does not read (unions
`[0,1]`, `&&` in a filter) is refused with an error naming it, never ignored.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from typing import Any, NamedTuple

_MISSING = object()


class JsonPathError(ValueError):
    """A path or template kukectl cannot evaluate; the message says what and where."""


class _Filter(NamedTuple):
    """`[?(@.path OP literal)]`, or `[?(@.path)]` (``compare`` None: the path exists)."""

    path: list[Step]
    compare: Callable[[Any, Any], bool] | None
    literal: Any


class _Descend(NamedTuple):
    """`..`: the value and every object or list below it (kubectl's recursive descent)."""


Step = str | int | slice | _Filter | _Descend | None
"""A key, an index, a slice, a filter, `..`, or None: every element."""

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_FILTER = re.compile(
    r"\?\(\s*@(?P<path>.*?)\s*(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<literal>.+?))?\s*\)"
)
_SLICE = re.compile(r"(?P<start>-?\d*):(?P<stop>-?\d*)(?::(?P<step>-?\d+))?")
_WORDS = {"true": True, "false": False, "null": None}


def _closing(text: str, start: int, path: str) -> int:
    """Where the `]` that closes the `[` at ``start`` is: quotes and a filter's own
    brackets and parentheses skipped."""
    depth, quote = 0, ""
    for at in range(start + 1, len(text)):
        char = text[at]
        if quote:
            quote = "" if char == quote and text[at - 1] != "\\" else quote
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in ")]" and depth:
            depth -= 1
        elif char == "]":
            return at
    raise JsonPathError(f"unclosed [ in {path!r}")


def _filter_literal(text: str) -> Any:
    """A filter's literal: a quoted string, a number, true, false or null; else _MISSING."""
    quoted = _literal(text)
    if quoted is not None:
        return quoted
    if text in _WORDS:
        return _WORDS[text]
    if re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text):
        return json.loads(text)
    return _MISSING


def _bracket(inside: str, path: str) -> Step:
    """What `[inside]` selects."""
    if inside == "*":
        return None
    if re.fullmatch(r"-?\d+", inside):
        return int(inside)
    if len(inside) >= 2 and inside[0] == inside[-1] and inside[0] in "'\"":
        return inside[1:-1]
    if (sliced := _SLICE.fullmatch(inside)) is not None:
        start, stop, step = (int(n) if n else None for n in sliced.group("start", "stop", "step"))
        if step == 0:
            raise JsonPathError(f"[{inside}] in {path!r}: a slice's step is not 0")
        return slice(start, stop, step)
    found = _FILTER.fullmatch(inside)
    if found is None or "&&" in inside or "||" in inside:
        raise JsonPathError(
            f"unsupported [{inside}] in {path!r} (read: [N], [*], [start:end], "
            "[?(@.path)] and [?(@.path OP literal)], OP one of == != < <= > >=)"
        )
    compare = _COMPARISONS.get(found.group("op") or "")
    literal = _filter_literal(found.group("literal") or "") if compare else None
    if literal is _MISSING:
        raise JsonPathError(
            f"[{inside}] in {path!r}: {found.group('literal')!r} is no literal "
            "(a quoted string, a number, true, false or null)"
        )
    return _Filter(_steps(found.group("path")), compare, literal)


def _steps(path: str) -> list[Step]:
    """`.a.b[0][*]` as ["a", "b", 0, None] (None: every element)."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[Step] = []
    position = 0
    while position < len(text):
        char = text[position]
        if text.startswith("..", position):
            steps.append(_Descend())  # the key after it is read as `.KEY` next
            position += 1
        elif char == ".":
            match = re.compile(r"((?:\\.|[^.\[\\])*)").match(text, position + 1)
            assert match is not None
            key = match.group(1).replace("\\.", ".")
            if key:
                steps.append(key)
            position = match.end()
        elif char == "[":
            end = _closing(text, position, path)
            steps.append(_bracket(text[position + 1 : end].strip(), path))
            position = end + 1
        else:
            raise JsonPathError(f"{path!r}: expected . or [ at {text[position:][:20]!r}")
    return steps


def _compared(value: Any, keep: _Filter) -> bool:
    """``value OP literal``: numbers by value, text with text; values of different kinds are
    never equal and not ordered."""
    numbers = all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in (value, keep.literal)
    )
    if numbers or type(value) is type(keep.literal):
        return bool(keep.compare(value, keep.literal)) if keep.compare else False
    return keep.compare is operator.ne


def _kept(item: Any, keep: _Filter) -> bool:
    """Whether a filter keeps ``item``: its path exists, or one of its values compares true."""
    found = _values(item, keep.path)
    if keep.compare is None:
        return bool(found)
    return any(_compared(value, keep) for value in found)


def _selected(value: Any, step: Step) -> list[Any]:
    """What one step reaches from ``value``."""
    if step is None:
        if isinstance(value, list):
            return list(value)
        return list(value.values()) if isinstance(value, dict) else []
    if isinstance(step, int):
        return [value[step]] if isinstance(value, list) and -len(value) <= step < len(value) else []
    if isinstance(step, slice):
        return value[step] if isinstance(value, list) else []
    if isinstance(step, _Filter):
        return [item for item in value if _kept(item, step)] if isinstance(value, list) else []
    if isinstance(step, _Descend):
        return _descendants(value)
    return [value[step]] if isinstance(value, dict) and step in value else []


def _descendants(value: Any) -> list[Any]:
    """``value`` and every non-empty object or list below it, depth first in document
    order: what kubectl's `..` gives the next step (a scalar is no place to look in)."""
    found: list[Any] = []
    pending = [value]
    while pending:
        current = pending.pop()
        children = list(current.values()) if isinstance(current, dict) else current
        if isinstance(current, dict | list) and children:
            found.append(current)
            pending.extend(reversed(children))
    return found


def _values(document: Any, steps: list[Step]) -> list[Any]:
    current: list[Any] = [document]
    for step in steps:
        current = [found for value in current for found in _selected(value, step)]
    return current


def values(document: Any, path: str) -> list[Any]:
    """Every value `path` reaches in `document` (none when a field is absent)."""
    return _values(document, _steps(path))


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
