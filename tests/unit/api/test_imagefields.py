"""Which images of a resource a write may not name (``kukeon.api.imagefields``), and that the
models themselves still read such a document (a stored one must stay readable)."""

from __future__ import annotations

from typing import Any

from kukeon.api import Cell, CellProfile, CellSet, parse_resource
from kukeon.api.imagefields import image_errors
from kukeon.api.imageref import reference_problem
from kukeon.api.validation import FieldError
from tests.unit.api.samples import cell_doc, container
from tests.unit.api.test_cellprofile import profile_doc
from tests.unit.api.test_cellset import set_doc

BAD = "Docker.io/Library/BusyBox"  # upper-case path components: no registry serves it


def _cell(*images: str) -> Cell:
    cell = parse_resource(
        cell_doc(containers=[container(f"c{i}", image=image) for i, image in enumerate(images)])
    )
    assert isinstance(cell, Cell)
    return cell


def test_the_models_still_read_a_bad_image() -> None:
    """The check is the write's, not the model's: a stored cell naming it stays readable."""
    assert _cell(BAD).spec.containers[0].image == BAD


def test_each_bad_image_of_a_cell_is_named_with_the_parsers_message() -> None:
    cell = _cell("busybox", BAD, "x@sha256:abc")
    assert image_errors(cell) == [
        FieldError("spec.containers[1].image", reference_problem(BAD) or ""),
        FieldError("spec.containers[2].image", reference_problem("x@sha256:abc") or ""),
    ]
    assert "invalid image reference 'Docker.io/Library/BusyBox'" in image_errors(cell)[0].message


def test_an_image_the_stored_container_had_is_let_through() -> None:
    stored = _cell(BAD, "busybox")
    assert image_errors(_cell(BAD, "busybox"), stored) == []
    # Changed, or given to another container, it is checked again.
    assert [e.field for e in image_errors(_cell("busybox", BAD), stored)] == [
        "spec.containers[1].image"
    ]
    assert [e.field for e in image_errors(_cell(BAD + "2", "busybox"), stored)] == [
        "spec.containers[0].image"
    ]


def test_a_sets_template_is_checked() -> None:
    doc: dict[str, Any] = set_doc()
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = "a b"
    cellset = parse_resource(doc)
    assert isinstance(cellset, CellSet)
    assert [e.field for e in image_errors(cellset)] == ["spec.template.spec.containers[0].image"]


def test_a_profiles_image_is_checked_unless_a_run_fills_it_in() -> None:
    def profile(image: str) -> CellProfile:
        doc = profile_doc(
            {"containers": [{"id": "main", "image": image}]},
            parameters=[{"name": "TAG", "default": "1"}],
        )
        parsed = parse_resource(doc)
        assert isinstance(parsed, CellProfile)
        return parsed

    assert [e.field for e in image_errors(profile("Busybox:1"))] == [
        "spec.cell.containers[0].image"
    ]
    assert image_errors(profile("busybox:${TAG}")) == []  # the run's cell is checked
    assert image_errors(profile("busybox:1")) == []
    assert [e.field for e in image_errors(profile("busybox:$${TAG}"))] == [
        "spec.cell.containers[0].image"  # `$${` is a literal `${`
    ]
