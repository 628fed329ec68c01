"""Request bodies decoded with bounds: size, nesting depth, duplicate keys, YAML aliases.

Python's JSON decoder and PyYAML's composer both recurse once per level of nesting, so a
body nested 10,000 deep used to end in a ``RecursionError`` (a 500 and a traceback). Here
the depth is measured first without recursing -- for JSON by counting brackets outside
strings, for YAML by a composer that refuses to descend past the limit -- and the decoders
only ever see documents shallower than ``MAX_DEPTH``. A key given twice in one object is
refused (the last one silently winning hides mistakes and smuggles values past reviews),
and so are YAML aliases, which let a few hundred bytes expand into gigabytes once the
document is encoded as JSON for etcd.

Every failure is a ``BodyError`` carrying the HTTP code, a message that quotes at most a
few hundred characters of the input, and the key path when there is one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

import yaml
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode

from kukeon.api.meta import quote

MAX_DEPTH = 100
"""Deepest nesting of objects/arrays a body may have; a kukeon document needs about 8."""

# The bodies above this size are decoded in a worker thread so the event loop keeps serving.
THREAD_THRESHOLD = 64 * 1024


class BodyError(ValueError):
    """A body that cannot be decoded: the HTTP code, the message and the key path."""

    def __init__(self, code: int, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


# --- JSON -----------------------------------------------------------------------------------

# A JSON string, escapes included, in the unrolled form that never backtracks.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, computed without recursion.

    Strings are removed first (a bracket inside one is text); what remains is reduced to its
    brackets and their running sum taken. Exact for valid JSON; for invalid JSON it is an
    estimate, and the decoder reports the real problem.
    """
    outside = _JSON_STRING.sub(b"", raw)
    brackets = outside.translate(None, _BRACKETS)
    if not brackets:
        return 0
    return max(0, max(accumulate(_STEP[b] for b in brackets)))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _Duplicates:
    """Objects that had a key twice while decoding, to name their path afterwards."""

    def __init__(self) -> None:
        self.found: dict[int, str] = {}

    def hook(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result and id(result) not in self.found:
                self.found[id(result)] = key
            result[key] = value
        return result


def _find_path(root: Any, target_id: int) -> str:
    """The path of the object with ``id`` target_id in the decoded tree (an iterative walk)."""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        value, path = stack.pop()
        if id(value) == target_id:
            return path
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))
    return ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def decode_json(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON body as Python values; BodyError when it is too deep, malformed or repeats a key."""
    depth = json_depth(raw)
    if depth > max_depth:
        raise BodyError(
            400, f"the request body is nested {depth} levels deep, over the limit of {max_depth}"
        )
    duplicates = _Duplicates()
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=duplicates.hook, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"the request body is not UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise BodyError(
            400,
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})",
        ) from None
    except (ValueError, RecursionError) as exc:
        # Numbers with thousands of digits, NaN/Infinity; RecursionError cannot happen
        # below the depth limit, and is still not allowed to become a 500.
        raise BodyError(400, f"the request body is not valid JSON: {quote(str(exc))}") from None
    if duplicates.found:
        target, key = next(iter(duplicates.found.items()))
        path = _join(_find_path(value, target), key)
        raise BodyError(422, f"duplicate key {quote(key)} at {quote(path)}", field=path)
    return value


# --- YAML -----------------------------------------------------------------------------------

_BOOL_TAG = "tag:yaml.org,2002:bool"
_DROPPED_TAGS = {_BOOL_TAG, "tag:yaml.org,2002:timestamp"}


class _Refused(yaml.YAMLError):
    def __init__(self, code: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars (as kukectl reads manifests), bounded composition.

    The composer descends once per nested collection; ``compose_node`` counts the levels
    and refuses to go past the limit *before* descending, so the recursion stays shallow.
    The path of the node being composed is kept alongside, for the error messages.
    """

    def __init__(self, stream: str, *, max_depth: int = MAX_DEPTH) -> None:
        super().__init__(stream)
        self.max_depth = max_depth
        self._depth = 0
        self._path: list[str] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        segment = None
        if isinstance(parent, MappingNode) and isinstance(index, ScalarNode):
            segment = f".{index.value}"
        elif parent is not None and isinstance(index, int):
            segment = f"[{index}]"
        if segment is not None:
            self._path.append(segment)
        try:
            if self.check_event(AliasEvent):
                where = quote(self._where()) if self._path else "the top level"
                raise _Refused(400, f"YAML aliases are not accepted (at {where})", self._where())
            nested = self.check_event(SequenceStartEvent, MappingStartEvent)
            if nested:
                self._depth += 1
                if self._depth > self.max_depth:
                    raise _Refused(
                        400, f"the request body is nested more than {self.max_depth} levels deep"
                    )
            try:
                node: Node | None = super().compose_node(parent, index)
            finally:
                if nested:
                    self._depth -= 1
            if isinstance(node, MappingNode):
                self._check_duplicates(node)
            return node
        finally:
            if segment is not None:
                self._path.pop()

    def _where(self) -> str:
        return "".join(self._path).lstrip(".")

    def _check_duplicates(self, node: MappingNode) -> None:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode):
                continue
            marker = (key_node.tag, key_node.value)
            if marker in seen:
                path = _join(self._where(), key_node.value)
                raise _Refused(422, f"duplicate key {quote(key_node.value)} at {quote(path)}", path)
            seen.add(marker)


_BoundedLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_BoundedLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _yaml_documents(text: str, max_depth: int) -> Iterator[Any]:
    loader = _BoundedLoader(text, max_depth=max_depth)
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            yield loader.get_data()
    finally:
        loader.dispose()


def decode_yaml(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """A single-document YAML body; BodyError when too deep, malformed, aliased or repeating."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"the request body is not UTF-8: {exc.reason}") from None
    try:
        documents = list(_at_most_two(_yaml_documents(text, max_depth)))
    except _Refused as exc:
        raise BodyError(exc.code, exc.message, field=exc.field) from None
    except yaml.YAMLError as exc:
        raise BodyError(400, f"the request body is not valid YAML: {quote(str(exc))}") from None
    except (ValueError, RecursionError) as exc:
        raise BodyError(400, f"the request body is not valid YAML: {quote(str(exc))}") from None
    if len(documents) != 1:
        raise BodyError(400, f"the request body must hold one YAML document, got {len(documents)}")
    return documents[0]


def _at_most_two(documents: Iterator[Any]) -> Iterator[Any]:
    # Two documents are enough to know there are too many; do not build the rest.
    for count, document in enumerate(documents):
        yield document
        if count >= 1:
            return


def is_yaml(content_type: str) -> bool:
    return "yaml" in content_type


def decode_body(raw: bytes, content_type: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The body as Python values, read as YAML when the content type says so, else JSON."""
    if is_yaml(content_type):
        return decode_yaml(raw, max_depth=max_depth)
    return decode_json(raw, max_depth=max_depth)
