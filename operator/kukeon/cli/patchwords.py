"""A patch's YAML 1.1 boolean words, resolved by the field they land in.

kukectl's YAML reader keeps YAML 1.2's scalars: an unquoted ``yes``/``no``/``on``/``off``
stays text, marked (`YamlBoolWord`). A manifest keeps the mark up to the model, whose
boolean fields take the word for its boolean; a patch goes to kukeond as JSON, where the
mark is lost. So kukectl resolves each marked word against the kind's model before
sending: in a boolean field it becomes true or false (as kubectl's YAML 1.1 reader makes
it), anywhere else (a label value, a command's argument) it stays the text written.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from kukeon.api.yamlwords import YamlBoolWord


def resolve_bool_words(document: Any, model: type[BaseModel]) -> Any:
    """``document`` (a patch of an object of ``model``) with each marked word in a boolean
    field of ``model`` turned into that boolean; the rest as it was."""
    return _resolve(document, model)


def _members(annotation: Any) -> tuple[Any, ...]:
    """The types a field's annotation may hold (a Union's or Optional's members, each
    without its ``Annotated`` validators)."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        found = (_members(member) for member in get_args(annotation) if member is not type(None))
        return tuple(member for members in found for member in members)
    return (annotation,)


def _resolve(value: Any, annotation: Any) -> Any:
    members = _members(annotation)
    if isinstance(value, YamlBoolWord):
        return value.boolean if bool in members else value
    for member in members:
        if isinstance(value, dict) and isinstance(member, type) and issubclass(member, BaseModel):
            return _resolve_object(value, member)
        origin, args = get_origin(member), get_args(member)
        if isinstance(value, list) and origin in (list, tuple, set, frozenset) and args:
            return [_resolve(item, args[0]) for item in value]
        if isinstance(value, dict) and origin is dict and len(args) == 2:
            return {key: _resolve(item, args[1]) for key, item in value.items()}
    return value


def _resolve_object(document: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    fields = {}
    for name, info in model.model_fields.items():
        fields[name] = info.annotation
        if info.alias is not None:
            fields[info.alias] = info.annotation
    return {
        key: _resolve(item, fields[key]) if key in fields else item
        for key, item in document.items()
    }
