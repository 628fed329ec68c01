"""The images a resource names, each checked against the reference grammar (``imageref``).

Not a rule of the models: a document stored before this check (or put into etcd by other
means) with an image no registry could serve must stay readable, or its node would skip the
cell as invalid and lose sight of what runs; its node reports the image instead
(``InvalidImageReference``). The API server refuses such an image on every write
(``apiserver.imagerules``) and kukectl before it sends one, with the same message.
"""

from __future__ import annotations

from collections.abc import Sequence

from kukeon.api.cell import Cell
from kukeon.api.cellprofile import CellProfile, references, substitute
from kukeon.api.cellset import CellSet
from kukeon.api.container import ContainerSpec
from kukeon.api.imageref import reference_problem
from kukeon.api.kinds import AnyResource, to_document
from kukeon.api.validation import FieldError, InvalidResource, display_name


def image_errors(res: AnyResource, stored: AnyResource | None = None) -> list[FieldError]:
    """Each container image of ``res`` that is not a reference, its field path and why.

    An image the stored version of the object (``stored``) already gave the container of
    the same id is let through: a write that keeps it unchanged (a label, a stop, `apply`
    of what `get` printed) is not refused for a mistake it did not make. A profile's image
    holding a `${NAME}` is checked when a run fills it in (the run writes a cell).
    """
    errors: list[FieldError] = []
    kept = _images_by_id(stored)
    for path, container in containers_naming_images(res):
        image = container.image
        if isinstance(res, CellProfile):
            if any(True for _ in references(image)):
                continue
            image = substitute(image, {})  # `$${` is a literal `${`
        if kept.get(container.id) == container.image:
            continue
        problem = reference_problem(image)
        if problem is not None:
            errors.append(FieldError(f"{path}.image", problem))
    return errors


def refuse_bad_images(res: AnyResource) -> None:
    """InvalidResource naming each image of ``res`` that is not a reference: what kukectl
    checks before it sends an object it made, each line the API server's cause."""
    errors = image_errors(res)
    if errors:
        raise InvalidResource(res.kind.value, display_name(res.kind, to_document(res)), errors)


def containers_naming_images(res: AnyResource | None) -> list[tuple[str, ContainerSpec]]:
    """The containers of a cell, a set's template or a profile, with their field paths."""
    containers: Sequence[ContainerSpec]
    if isinstance(res, Cell):
        prefix, containers = "spec.containers", res.spec.containers
    elif isinstance(res, CellSet) and res.spec.template.spec is not None:
        prefix, containers = "spec.template.spec.containers", res.spec.template.spec.containers
    elif isinstance(res, CellProfile):
        prefix, containers = "spec.cell.containers", res.spec.cell.containers
    else:
        return []
    return [(f"{prefix}[{index}]", container) for index, container in enumerate(containers)]


def _images_by_id(res: AnyResource | None) -> dict[str, str]:
    return {container.id: container.image for _, container in containers_naming_images(res)}
