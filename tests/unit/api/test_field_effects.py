"""A field the models accept must have its effect or be refused (issue 19).

The walker below finds every field of every kind's model, as a user writes it
(`Cell.spec.containers[].restartPolicy`), and `field_effects.REGISTRY` must give each one a
verdict: the test proving its effect, the test proving its refusal, why it is stored only,
or what is missing (then it is a known gap). So a new field cannot be added silently, and a
removed one leaves no stale entry. Cited tests are checked to exist by reading their files
with `ast`; nothing is run.
"""

from __future__ import annotations

import ast
import types
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from kukeon.api.kinds import KIND_MODELS
from tests.unit.api.field_effects import (
    FIELDS,
    KNOWN_GAPS,
    REGISTRY,
    STATUS_FIELDS,
    Effect,
    Refused,
    StoredOnly,
    Unverified,
)

ROOT = Path(__file__).resolve().parents[3]

_SEQUENCES = (list, tuple, set, frozenset, Sequence)
_MAPPINGS = (dict, Mapping)


def _holds_a_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_a_model(arg) for arg in get_args(annotation))


def models_in(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The models a field's type holds, each with the path step that reaches it:
    ``""`` (the model itself), ``"[]"`` (an item of a list), ``"{}"`` (a value of a map)."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return models_in(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    if origin in _SEQUENCES:
        return [("[]" + step, model) for step, model in models_in(args[0])]
    if origin in _MAPPINGS:
        return [("{}" + step, model) for step, model in models_in(args[1])]
    if origin is Union or origin is types.UnionType:
        return [found for arg in args for found in models_in(arg)]
    if _holds_a_model(annotation):
        # A container the walker does not know would hide its fields: teach it the shape.
        raise TypeError(f"the walker cannot enter {annotation!r}")
    return []


def walk(model: type[BaseModel], prefix: str) -> list[str]:
    """Every field of ``model`` below ``prefix``, by its manifest (camelCase) name.

    A field holding models (directly, in a list, a map or a union) is entered instead of
    being listed: its own fields carry the verdicts. A model without fields is a leaf.
    """
    paths: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}.{field.alias or name}"
        inner = [(step, found) for step, found in models_in(field.annotation) if found.model_fields]
        if not inner:
            paths.append(path)
        for step, found in inner:
            paths.extend(walk(found, path + step))
    return paths


@cache
def walked() -> tuple[str, ...]:
    paths: list[str] = []
    for kind, model in KIND_MODELS.items():
        paths.extend(walk(model, kind.value))
    return tuple(paths)


def _is_status(path: str) -> bool:
    return path.split(".")[1] == "status"


# --- the walker itself ---------------------------------------------------------------------


def test_the_walker_sees_nested_lists_maps_unions_and_irregular_aliases() -> None:
    paths = set(walked())
    assert len(paths) == len(walked()), "a path is walked twice"
    for expected in (
        "Cell.spec.containers[].restartPolicy",
        "Cell.spec.containers[].hostPID",  # an explicit alias, not the generated camelCase
        "Cell.spec.containers[].tty.onInit[].runOn",  # a list inside an optional model
        "Cell.spec.containers[].secrets[].secretRef.key",
        "Realm.spec.registryCredentials[].passwordSecretRef.name",
        "Space.spec.network.egress.allow[].ports",
        "Space.status.nodes{}.subnet",  # a map of models
        "Cell.status.containers[].lastState.exitCode",
        "Secret.metadata.realm",  # a kind's own metadata model
        "Secret.spec",  # a model without fields is a leaf
    ):
        assert expected in paths
    # entered, not listed: their fields carry the verdicts
    for entered in ("Cell.spec.containers", "Cell.spec.containers[].tty", "Realm.metadata"):
        assert entered not in paths


def test_the_walker_refuses_a_shape_it_cannot_enter() -> None:
    class Inner(BaseModel):
        x: int

    try:
        models_in(type[Inner])
    except TypeError:
        return
    raise AssertionError("a model behind an unknown generic was skipped silently")


# --- the registry --------------------------------------------------------------------------


def test_every_field_has_a_verdict() -> None:
    missing = [path for path in walked() if path not in REGISTRY]
    assert not missing, (
        "fields without a verdict: add each to tests/unit/api/field_effects.py as Effect(test), "
        "Refused(test), StoredOnly(why) or Unverified(what is missing) + KNOWN_GAPS:\n  "
        + "\n  ".join(missing)
    )


def test_no_verdict_for_a_field_that_is_gone() -> None:
    paths = set(walked())
    stale = sorted(path for path in REGISTRY if path not in paths)
    assert not stale, "verdicts for fields the models no longer have:\n  " + "\n  ".join(stale)


def test_status_fields_are_listed_apart_and_spec_fields_are_not() -> None:
    assert len(set(STATUS_FIELDS)) == len(STATUS_FIELDS)
    assert set(STATUS_FIELDS) == {path for path in walked() if _is_status(path)}
    assert not [path for path in FIELDS if _is_status(path)]


def test_every_verdict_says_why() -> None:
    for path, verdict in REGISTRY.items():
        if isinstance(verdict, Effect | Refused):
            assert "::test_" in verdict.test, path
        elif isinstance(verdict, StoredOnly):
            assert verdict.why.strip(), path
        else:
            assert verdict.missing.strip(), path


def test_the_unverified_fields_are_the_known_gaps() -> None:
    unverified = {path for path, verdict in REGISTRY.items() if isinstance(verdict, Unverified)}
    closed = sorted(KNOWN_GAPS - unverified)
    opened = sorted(unverified - KNOWN_GAPS)
    assert not opened, "new fields without a proven effect (add to KNOWN_GAPS):\n  " + "\n  ".join(
        opened
    )
    assert not closed, "gaps that are closed (remove from KNOWN_GAPS):\n  " + "\n  ".join(closed)


# --- the cited tests -----------------------------------------------------------------------


@cache
def _test_functions(relative: str) -> frozenset[str]:
    """The names of every test function (sync or async, top level or in a class) of a file."""
    tree = ast.parse((ROOT / relative).read_text(), filename=relative)
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    )


def test_every_cited_test_exists() -> None:
    broken: list[str] = []
    for path, verdict in REGISTRY.items():
        if not isinstance(verdict, Effect | Refused):
            continue
        file, _, function = verdict.test.partition("::")
        if not (ROOT / file).is_file():
            broken.append(f"{path}: no file {file}")
        elif function not in _test_functions(file):
            broken.append(f"{path}: no test {function} in {file}")
    assert not broken, "verdicts citing tests that do not exist:\n  " + "\n  ".join(broken)
