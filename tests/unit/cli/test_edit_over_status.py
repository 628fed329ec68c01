"""`kukectl edit` of an object kukeond writes while the editor is open: a status write (a
crash-looping cell's restart) moves its resourceVersion, not what the file owns, so the
edit is written over the newer version (it was refused with "changed on the server since it
was opened", the edit lost). A change of its labels, annotations or spec by someone else is
still refused, never overwritten."""

from __future__ import annotations

from typing import Any

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli.edit import CHANGED_ON_SERVER, _write_back
from kukeon.client.apiclient import ApiRequestError
from tests.unit.cli.test_apply_manifest_version import STORED

KEY = ("r", "s", "st", "web")


def _cell(version: str, *, status_writes: int = 0, app: str = "web") -> AnyResource:
    document: dict[str, Any] = {
        **STORED,
        "metadata": {**STORED["metadata"], "resourceVersion": version, "labels": {"app": app}},
        "status": {"state": "Running" if status_writes % 2 else "Failed"},
    }
    return parse_resource(document)


class MovingServer:
    """Holds the cell; each ``get`` answers the next of ``versions`` (the last one stays),
    and an update is a Conflict unless it carries the version last read."""

    def __init__(self, *versions: AnyResource) -> None:
        self.versions = list(versions)
        self.read = self.versions[0]
        self.field_validation: str | None = None
        self.written: list[AnyResource] = []

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        self.read = self.versions.pop(0) if len(self.versions) > 1 else self.versions[0]
        return self.read

    async def update(self, res: AnyResource) -> AnyResource:
        if res.metadata.resource_version != self.read.metadata.resource_version:
            raise ApiRequestError(409, "Conflict", "has been modified")
        self.written.append(res)
        return res


async def test_an_edit_goes_over_a_status_write_made_while_the_editor_was_open() -> None:
    opened = _cell("9")
    server = MovingServer(_cell("12", status_writes=3))
    problem = await _write_back(server, KEY, _cell("9", app="edited"), opened)  # type: ignore[arg-type]
    assert problem is None
    [written] = server.written
    assert written.metadata.labels == {"app": "edited"}
    assert written.metadata.resource_version == "12"  # the CAS guard is the version read now


async def test_a_change_of_what_the_file_owns_is_refused_not_overwritten() -> None:
    opened = _cell("9")
    server = MovingServer(_cell("12", app="theirs"))
    problem = await _write_back(server, KEY, _cell("9", app="edited"), opened)  # type: ignore[arg-type]
    assert problem == CHANGED_ON_SERVER
    assert server.written == []


async def test_a_status_write_between_the_read_and_the_write_is_read_again() -> None:
    opened = _cell("9")
    server = MovingServer(_cell("12", status_writes=3), _cell("14", status_writes=4))
    real_update = server.update
    first = True

    async def racing(res: AnyResource) -> AnyResource:
        nonlocal first
        if first:  # kukeond's status write lands between edit's read and its update
            first = False
            raise ApiRequestError(409, "Conflict", "has been modified")
        return await real_update(res)

    server.update = racing  # type: ignore[method-assign]
    problem = await _write_back(server, KEY, _cell("9", app="edited"), opened)  # type: ignore[arg-type]
    assert problem is None
    assert [w.metadata.resource_version for w in server.written] == ["14"]
