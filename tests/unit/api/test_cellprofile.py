"""The CellProfile model: its scope, its template, `${NAME}` references, the cell a run makes."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import (
    PROFILE_ENV,
    PROFILE_LABEL,
    Cell,
    CellProfile,
    CellSpec,
    InvalidResource,
    key_of,
    parent_of,
    parse_resource,
    to_document,
)
from kukeon.api.cellprofile import CELL_IDENTITY_FIELDS, CellTemplate, references, substitute
from kukeon.api.meta import Kind
from kukeon.api.profilerun import (
    CellProfileRun,
    ParameterErrors,
    cell_document,
    generated_name,
    parameter_values,
)


def profile_doc(cell: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellProfile",
        "metadata": {"name": "worker", "realm": "r"},
        "spec": {
            "cell": cell or {"containers": [{"id": "main", "image": "busybox"}]},
            **spec,
        },
    }


def causes(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidResource) as raised:
        parse_resource(doc)
    return {cause.field: cause.message for cause in raised.value.causes}


def test_a_profile_is_scoped_as_a_secret_is() -> None:
    realm_wide = parse_resource(profile_doc())
    assert isinstance(realm_wide, CellProfile)
    assert key_of(realm_wide) == ("r", "-", "-", "worker")
    assert parent_of(realm_wide) == (Kind.REALM, ("r",))
    doc = profile_doc()
    doc["metadata"] |= {"space": "s", "stack": "st"}
    assert parent_of(parse_resource(doc)) == (Kind.STACK, ("r", "s", "st"))
    doc["metadata"] = {"name": "worker", "stack": "st"}
    assert "metadata.realm" in causes(doc)


def test_the_template_is_a_cell_spec_without_its_identity() -> None:
    identity = {"id", "realm_id", "space_id", "stack_id"}
    assert set(CellTemplate.model_fields) == set(CellSpec.model_fields) - identity
    cell = {
        "id": "x",
        "realmId": "other",
        "containers": [{"id": "main", "image": "busybox", "cellId": "x", "containerdId": "y"}],
    }
    found = causes(profile_doc(cell))
    assert "leave it out" in found["spec.cell.id"]
    assert "leave it out" in found["spec.cell.realmId"]
    assert "derived" in found["spec.cell.containers[0].cellId"]
    assert "derived" in found["spec.cell.containers[0].containerdId"]
    assert all(not message.startswith("unknown") for message in found.values())
    assert set(CELL_IDENTITY_FIELDS) == {"id", "realmId", "spaceId", "stackId"}


def test_the_cells_own_rules_apply_to_the_template() -> None:
    cell = {"containers": [{"id": "a", "image": "x"}, {"id": "a", "image": "y"}]}
    assert "duplicate container id" in causes(profile_doc(cell))["spec.cell.containers[1].id"]
    assert "spec.cell.containers" in causes(profile_doc({"containers": []}))
    bad_image = {"containers": [{"id": "a", "image": ""}]}
    assert "spec.cell.containers[0].image" in causes(profile_doc(bad_image))


def test_every_reference_must_be_declared() -> None:
    cell = {
        "containers": [
            {"id": "a", "image": "${IMAGE}", "args": ["${MISSING}"], "env": ["X=${OPEN"]},
        ],
        "nodeSelector": {"${KEY}": "v"},
    }
    found = causes(profile_doc(cell, parameters=[{"name": "IMAGE"}, {"name": "KEY"}]))
    assert "'${MISSING}'" in found["spec.cell.containers[0].args[0]"]
    assert "not closed" in found["spec.cell.containers[0].env[0]"]
    assert "not into keys" in found["spec.cell.nodeSelector.${KEY}"]
    assert "spec.cell.containers[0].image" not in found


def test_parameters_are_well_formed() -> None:
    parameters = [
        {"name": "A"},
        {"name": "A"},
        {"name": "B", "required": True, "default": "x"},
        {"name": "1bad"},
    ]
    found = causes(profile_doc(parameters=parameters))
    assert "duplicate" in found["spec.parameters[1].name"]
    assert "required" in found["spec.parameters[2].default"]
    assert "spec.parameters[3].name" in found
    assert "spec.prefix" in causes(profile_doc(prefix="p" * 57))
    assert "spec.prefix" in causes(profile_doc(prefix="Not_A_Label"))


def test_references_and_substitution() -> None:
    assert list(references("${A}-${B} $${C} ${")) == ["A", "B", None]
    assert substitute("${A}-${B} $${C} $$ $HOME", {"A": "1", "B": "2"}) == "1-2 ${C} $$ $HOME"
    with pytest.raises(KeyError):
        substitute("${Z}", {})


def profile(**spec: Any) -> CellProfile:
    cell = {
        "containers": [
            {"id": "main", "image": "${IMAGE}", "args": ["${MSG}", "$${HOME}"], "env": ["A=1"]},
            {"id": "side", "image": "busybox", "env": [f"{PROFILE_ENV}=spoofed"]},
        ],
    }
    parameters = [
        {"name": "IMAGE", "default": "busybox:1.36"},
        {"name": "MSG", "required": True, "description": "what to say"},
        {"name": "OPTIONAL"},
    ]
    parsed = parse_resource(profile_doc(cell, parameters=parameters, **spec))
    assert isinstance(parsed, CellProfile)
    return parsed


def test_parameter_values_defaults_required_and_unknown() -> None:
    assert parameter_values(profile(), {"MSG": "hi"}) == {
        "IMAGE": "busybox:1.36",
        "MSG": "hi",
        "OPTIONAL": "",
    }
    with pytest.raises(ParameterErrors) as raised:
        parameter_values(profile(), {"NOPE": "1"})
    fields = {cause.field: cause.message for cause in raised.value.causes}
    assert "no parameter 'NOPE'" in fields["parameters.NOPE"]
    assert "what to say" in fields["parameters.MSG"]


def test_the_cell_a_run_makes() -> None:
    made = profile()
    values = parameter_values(made, {"MSG": "hi", "IMAGE": "alpine"})
    doc = cell_document(made, scope=("r", "s", "st"), name="worker-abc123", values=values)
    cell = parse_resource(doc)
    assert isinstance(cell, Cell)
    assert key_of(cell) == ("r", "s", "st", "worker-abc123")
    assert cell.metadata.labels == {PROFILE_LABEL: "worker"}
    main, side = cell.spec.containers
    assert main.image == "alpine"
    assert main.args == ["hi", "${HOME}"]
    assert main.env == ["A=1", f"{PROFILE_ENV}=worker"]
    assert side.env == [f"{PROFILE_ENV}=worker"]  # the profile's own name, not the template's
    # the template is untouched: a later run starts from it again
    assert made.spec.cell.containers[0].image == "${IMAGE}"


def test_generated_names() -> None:
    name = generated_name(profile())
    assert name.startswith("worker-")
    assert len(name) == len("worker-") + 6
    int(name.rsplit("-", 1)[1], 16)
    assert generated_name(profile(prefix="job")).startswith("job-")
    long_name = profile_doc()
    long_name["metadata"]["name"] = "a" * 60 + "-bc"
    parsed = parse_resource(long_name)
    assert isinstance(parsed, CellProfile)
    assert len(generated_name(parsed)) <= 63


def test_a_profile_round_trips_through_its_document() -> None:
    made = profile(prefix="job")
    again = parse_resource(to_document(made))
    assert again == made


def test_a_run_body_is_checked_field_by_field() -> None:
    assert CellProfileRun.model_validate({"profile": "p"}).parameters == {}
    with pytest.raises(ValueError, match="profile"):
        CellProfileRun.model_validate({"profile": "Not A Label"})
    with pytest.raises(ValueError, match="parameters"):
        CellProfileRun.model_validate({"profile": "p", "parameters": {"A": 1}})
    with pytest.raises(ValueError, match="extra"):
        CellProfileRun.model_validate({"profile": "p", "image": "x"})
