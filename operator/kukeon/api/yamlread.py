"""YAML read as JSON's data model: the one loader of every YAML kukeon reads.

Request bodies, manifests (``kukectl -f``, ``kukectl edit``, the web console's
``/ui/manifest``), kukeond's and kukectl's configuration, the token and key files are all
YAML read as JSON, as Kubernetes reads its YAML (``sigs.k8s.io/yaml`` converts YAML to
JSON first): strings, numbers, booleans, null, mappings and sequences. PyYAML's safe
loader also makes bytes (``!!binary``), sets (``!!set``), lists of pairs (``!!omap``,
``!!pairs``) and dates (an explicit ``!!timestamp``), which no JSON document holds: they
reached the models as values no client can send as JSON, were stored or rejected with a
message about a Python type, and could not be written back out. A node with such a tag is
refused here (``NotJsonDataError``, a ``yaml.YAMLError``), naming the tag and its line and
column. The scalars are YAML 1.2's, as kukeon's Go reader reads them: ``yes``, ``on``,
``no``, ``off`` stay text, timestamps stay text (pydantic parses those that are fields),
no base-60 numbers. Such a word written plain (not quoted) is text that remembers it was
YAML 1.1's boolean (``YamlBoolWord``): a boolean field takes it as that boolean, as
kubectl's reader (YAML 1.1) and go-yaml v3 into a ``bool`` do, while the same word quoted,
or a JSON string, is refused there (``api.meta.Bool``); every other field reads text. A
key repeated in one mapping is an error, not a silently lost line.

JSON has no NaN or infinity (the JSON readers refuse them), so neither has this reader:
``.nan``, ``.inf``, ``-.inf`` and a float too large (``1.0e+999``) are refused
(``NotJsonNumberError``), naming the value and its line. A mapping's key is JSON's, a
string: an integer, float or boolean key is written as text the way ``sigs.k8s.io/yaml``
writes it (``1: x`` is ``"1"``, ``true: y`` ``"true"``, ``1.5: w`` ``"1.5"``, ``.inf: v``
``".inf"``), so two keys that become one string (``1`` and ``"1"``) are a repeated key; a
null key (``null: z``, ``~: z``, ``? z``) or a mapping or sequence as a key has no text and
is refused as sigs.k8s.io/yaml refuses it.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode

from .yamlwords import YamlBoolWord

__all__ = [
    "JSON_TAGS",
    "CJsonYamlLoader",
    "NotJsonDataError",
    "NotJsonNumberError",
    "YamlBoolWord",
    "finite_json_float",
    "is_finite_yaml_float",
    "load_yaml",
    "refuse_json_constant",
    "short_tag",
    "use_kukeon_scalars",
]

_YAML = "tag:yaml.org,2002:"
_BOOL_TAG = _YAML + "bool"
_INT_TAG = _YAML + "int"
_FLOAT_TAG = _YAML + "float"
_MERGE_TAG = _YAML + "merge"
JSON_TAGS = frozenset(
    _YAML + name for name in ("str", "int", "float", "bool", "null", "map", "seq")
)
"""The tags of JSON's values; any other node is refused."""

_STR_TAG = _YAML + "str"
_PLAIN_STYLES = (None, "")  # a plain scalar's style: PyYAML's and libyaml's


_YAML11_BOOL_WORDS = frozenset(
    spelling
    for word in ("yes", "no", "on", "off")
    for spelling in (word, word.capitalize(), word.upper())
)
"""PyYAML's YAML 1.1 booleans but for true and false (which are booleans here too)."""

_DROPPED_TAGS = {_BOOL_TAG, _INT_TAG, _FLOAT_TAG, _YAML + "timestamp"}
# YAML 1.1's numbers without its base-60 forms: `22:22` (a port mapping) was the integer
# 1342 and `1:30` 90, where kubectl's YAML reads text; 0644 (octal), 0x1F and 1_000 stay.
_INT = re.compile(
    r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"
)
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
    r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


def use_kukeon_scalars(loader: type[yaml.SafeLoader]) -> None:
    """Give ``loader`` (a SafeLoader, C or Python) the plain scalars kukeon reads: YAML 1.2
    booleans (`yes` stays text), no implicit timestamps, no base-60 numbers."""
    loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    loader.add_implicit_resolver(
        _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    loader.add_implicit_resolver(_INT_TAG, _INT, list("-+0123456789"))
    loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))


def short_tag(tag: str) -> str:
    """``!!binary`` for ``tag:yaml.org,2002:binary``, as it is written; others as they are."""
    return "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag


def not_json_message(tag: str) -> str:
    return (
        f"the YAML tag {short_tag(tag)} is not accepted: YAML is read as JSON data (text, "
        "numbers, booleans, null, mappings, sequences); write the value as text"
    )


class NotJsonDataError(ConstructorError):
    """A node whose tag makes a value JSON has not (bytes, a set, a date, a Python object)."""

    def __init__(self, tag: str, mark: Mark | None) -> None:
        super().__init__(None, None, not_json_message(tag), mark)
        self.tag = tag


def not_json_number_message(text: str) -> str:
    return (
        f"the YAML value {text} is not a JSON number: JSON has no NaN or infinity (a JSON "
        "body with NaN or Infinity is refused alike); write a finite number, or text"
    )


class NotJsonNumberError(ConstructorError):
    """A float JSON cannot hold: ``.nan``, ``.inf``, ``-.inf``, or one too large."""

    def __init__(self, text: str, mark: Mark | None) -> None:
        super().__init__(None, None, not_json_number_message(text), mark)


def refuse_json_constant(name: str) -> Any:
    """``json.loads``' ``parse_constant``: Python's decoder reads NaN and Infinity, JSON has
    neither."""
    raise ValueError(f"{name} is not a JSON number")


def finite_json_float(text: str) -> float:
    """``json.loads``' ``parse_float``: a number past a float's range (``1e999``) is refused
    as NaN and Infinity are, where Python's decoder made it an infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def is_finite_yaml_float(text: str) -> bool:
    """Whether a scalar resolved as ``!!float`` is a number JSON has (as PyYAML reads it)."""
    value = text.replace("_", "").lower()
    if value.lstrip("+-") in (".inf", ".nan"):
        return False
    try:
        return math.isfinite(float(value))
    except ValueError:
        return True  # not a number at all: the constructor says so


def _go_float32_text(value: float) -> str:
    """``strconv.FormatFloat(value, 'g', -1, 32)``, which sigs.k8s.io/yaml writes a float
    key as: the value as a float32 (beyond its range an infinity), in the shortest digits
    that read back as it, exponent form below 1e-4 and from 1e6 on; ``.inf``, ``-.inf``
    and ``.nan`` for the values JSON has not."""
    try:
        single: float = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:  # past float32's range: Go's float32() is an infinity
        single = math.copysign(math.inf, value)
    if math.isnan(single):
        return ".nan"
    if math.isinf(single):
        return ".inf" if single > 0 else "-.inf"
    digits, text = 1, f"{single:.0e}"
    while struct.unpack("f", struct.pack("f", float(text)))[0] != single:
        digits += 1
        text = f"{single:.{digits - 1}e}"
    mantissa, exponent = text.split("e")
    exp = int(exponent)
    if exp < -4 or exp >= 6:
        return f"{mantissa.rstrip('0').rstrip('.') if '.' in mantissa else mantissa}e{exp:+03d}"
    return f"{single:.{max(digits - 1 - exp, 0)}f}"


class _JsonData:
    """The constructor of a SafeLoader, C or Python, limited to JSON's values."""

    repeated_keys: list[tuple[int, str]] | None = None
    """When a list (set on one loader): a key repeated in a mapping is recorded here (the
    mapping's start index in the text, the key) and its last value kept, instead of being
    refused (the API's ``fieldValidation=Warn|Ignore``)."""

    def _construct(self, node: Node, deep: bool) -> Any:
        if node.tag not in JSON_TAGS:
            raise NotJsonDataError(node.tag, node.start_mark)
        return super().construct_object(node, deep=deep)  # type: ignore[misc]

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        value = self._construct(node, deep)
        if isinstance(value, float) and not math.isfinite(value):
            raise NotJsonNumberError(str(node.value), node.start_mark)
        if (
            isinstance(node, ScalarNode)
            and node.tag == _STR_TAG
            and node.style in _PLAIN_STYLES
            and value in _YAML11_BOOL_WORDS
        ):
            return YamlBoolWord(value)
        return value

    def _key(self, mapping: MappingNode, key_node: Node, deep: bool) -> str:
        """A mapping key as JSON's text, as sigs.k8s.io/yaml converts it."""
        key = self._construct(key_node, deep)
        if isinstance(key, str):
            return key
        if isinstance(key, bool):
            return "true" if key else "false"
        if isinstance(key, int):
            return str(key)
        if isinstance(key, float):
            return _go_float32_text(key)
        what = "null" if key is None else "a mapping or sequence"
        raise ConstructorError(
            "while constructing a mapping",
            mapping.start_mark,
            f"found a key that is {what}: a JSON object's key is text (a string, number or "
            "boolean written as text); write the key as text",
            key_node.start_mark,
        )

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<`: merged below, its keys overridden
                continue
            key = self._key(node, key_node, deep)
            if key in seen and self.repeated_keys is not None:
                self.repeated_keys.append((node.start_mark.index, key))
            elif key in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        self.flatten_mapping(node)  # type: ignore[attr-defined]
        return {
            self._key(node, key_node, deep): self.construct_object(value_node, deep=deep)
            for key_node, value_node in node.value
        }


_C_BASE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CJsonYamlLoader(_JsonData, _C_BASE):  # type: ignore[valid-type,misc]
    """The same on libyaml's parser when PyYAML was built with it (10x faster to scan)."""


use_kukeon_scalars(CJsonYamlLoader)


def load_yaml(text: str) -> Any:
    """One YAML document as JSON data (``yaml.safe_load``'s replacement); ``yaml.YAMLError``
    (``NotJsonDataError`` among them) when it is not."""
    return yaml.load(text, Loader=CJsonYamlLoader)  # a SafeLoader: no Python objects
