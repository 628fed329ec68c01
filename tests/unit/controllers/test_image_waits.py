"""A cell that waits for its image is requeued when an import or pull records it (issue:
`kukectl image import` left a cell `ImageUnavailable` until its back-off ran out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from kukeon.controllers.imagewaits import RECENT_ARRIVALS, ImageWaits

from .test_image_provider import BUSYBOX, provider, pulls  # noqa: F401 - fixture

CELL = ("r", "s", "st", "c")
OTHER = ("r2", "s", "st", "d")


def waits() -> tuple[ImageWaits, list[tuple[str, ...]]]:
    woken: list[tuple[str, ...]] = []

    def trigger(kind: Kind, key: tuple[str, ...]) -> bool:
        assert kind is Kind.CELL
        woken.append(key)
        return True

    return ImageWaits(trigger), woken


def test_an_arrival_wakes_the_cells_waiting_for_any_spelling_of_it() -> None:
    found, woken = waits()
    found.waiting(CELL, "busybox", since=found.begin(CELL))
    found.waiting(OTHER, "busybox:1", since=found.begin(OTHER))
    assert found.arrived(["docker.io/library/alpine:latest"]) == 0
    assert found.arrived([BUSYBOX]) == 1
    assert woken == [CELL]
    # Woken once: its next pass says again whether it still waits.
    assert found.arrived([BUSYBOX]) == 0
    assert found.arrived(["docker.io/library/busybox:1"]) == 1
    assert woken == [CELL, OTHER]


def test_an_arrival_during_the_pass_wakes_the_cell_when_its_wait_is_said() -> None:
    found, woken = waits()
    since = found.begin(CELL)
    found.arrived(["kukeon.io/test/other:v1"])  # imported while the pass pulled in vain
    found.waiting(CELL, "kukeon.io/test/other:v1", since=since)
    assert woken == [CELL]
    since = found.begin(CELL)
    found.arrived(["kukeon.io/test/else:v1"])
    found.waiting(CELL, "kukeon.io/test/other:v1", since=since)
    assert woken == [CELL]  # another image: it waits on


def test_a_pass_older_than_every_arrival_remembered_is_woken() -> None:
    found, woken = waits()
    since = found.begin(CELL)
    for index in range(RECENT_ARRIVALS + 1):
        found.arrived([f"kukeon.io/test/image{index}:v1"])
    found.waiting(CELL, "kukeon.io/test/other:v1", since=since)
    assert woken == [CELL]


def test_a_new_pass_or_a_deleted_cell_waits_no_more() -> None:
    found, woken = waits()
    found.waiting(CELL, "busybox", since=found.begin(CELL))
    found.begin(CELL)  # its next pass: the image is not its trouble any more, maybe
    assert found.arrived([BUSYBOX]) == 0
    found.waiting(CELL, "busybox", since=found.begin(CELL))
    spec = {
        "realmId": "r",
        "spaceId": "s",
        "stackId": "st",
        "containers": [{"id": "a", "image": "busybox"}],
    }
    cell = Cell.model_validate({"metadata": {"name": "c"}, "spec": spec})
    found.changed(cell, False)
    assert found.arrived([BUSYBOX]) == 1
    found.waiting(CELL, "busybox", since=found.begin(CELL))
    found.changed(cell, True)
    assert found.arrived([BUSYBOX]) == 0
    assert woken == [CELL]


@pytest.mark.usefixtures("pulls")
async def test_imports_and_pulls_say_what_arrived(tmp_path: Path) -> None:
    images, _ = provider(tmp_path)
    arrived: list[list[str]] = []
    images.on_arrival = lambda names: arrived.append(list(names))
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"oci archive")
    await images.import_archive(namespace="realm-a", path=archive)
    await images.import_archive(namespace="realm-x", path=archive, share=False)
    await images.ensure(namespace="realm-b", image="busybox", credentials=())  # the kept one
    await images.pull(namespace="realm-c", image="kukeon.io/test/other:v1", credentials=())
    await images.ensure(namespace="realm-c", image="kukeon.io/test/else:v1", credentials=())
    await images.ensure(namespace="realm-c", image="kukeon.io/test/else:v1", credentials=())
    assert arrived == [
        [BUSYBOX],
        [BUSYBOX],
        [BUSYBOX],
        ["kukeon.io/test/other:v1"],
        ["kukeon.io/test/else:v1"],  # pulled once; the next pass found it there
    ]
