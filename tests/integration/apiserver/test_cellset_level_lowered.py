"""A CellSet does not outlive its realm's security level: the cells its controller creates
are admitted at the level the realm has then, as the editor's own write of each would be.

Before, a set an editor wrote at ``privileged`` kept creating privileged cells after an
admin lowered the realm to ``restricted``: the controller wrote them to the store with no
admission at all, so the editor had only to delete the set's cells to get new ones the
realm forbids. Kubernetes admits a ReplicaSet's new pods as they are created (a Pod
Security level lowered since refuses them, the set reporting FailedCreate); kukeon now
does the same, and the cells already running are left alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from kukeon.api import AnyResource, Cell, CellSet, EventType, Kind
from kukeon.apiserver.admission import ADMISSION_ANNOTATION, Admission, HostAllowances
from kukeon.controllers.cellsets import CellSetController
from kukeon.framework import EventRecorder
from kukeon.store import Registry
from tests.integration.apiserver.conftest import (
    ADMIN_TOKEN,
    EDITOR_TOKEN,
    Api,
    Certs,
    create_tree,
    running_api,
    tls_session,
)

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
TEAM = f"{V}/realms/team"
STACK = f"{TEAM}/spaces/s/stacks/st"
MERGE = {"Content-Type": "application/merge-patch+json"}
KEY = ("team", "s", "st", "web")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, EventType]] = []

    def event(
        self, obj: AnyResource, reason: str, message: str, *, type: EventType = EventType.NORMAL
    ) -> None:
        self.events.append((reason, message, type))


@pytest.fixture
async def api(registry: Registry, certs: Certs, tokens_file: Path) -> AsyncIterator[Api]:
    """The API (admin alice, editor eddie of realm team), with realm team (at
    ``privileged``), space s and stack st in it."""
    async with running_api(registry, certs, tokens_file) as running:
        async with tls_session(running, ADMIN_TOKEN) as admin:
            await create_tree(admin, realm_spec={"securityLevel": "privileged"})
        yield running


def _set(name: str = "web", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"id": "main", "image": "busybox:latest", "root": True, "privileged": True}
                    ]
                },
            },
        },
    }


async def _level(admin: aiohttp.ClientSession, level: str) -> list[str]:
    """Set realm team's level; the answer's warnings."""
    patch = {"spec": {"securityLevel": level}}
    async with admin.patch(TEAM, json=patch, headers=MERGE) as response:
        assert response.status == 200, await response.text()
        return response.headers.getall("Warning", [])


async def _cells(registry: Registry, name: str = "web") -> list[Cell]:
    cells = (await registry.list(Kind.CELL, ("team",))).items
    return [
        c
        for c in cells
        if isinstance(c, Cell)
        and c.metadata.labels.get("kukeon.io/cellset") == name
        and c.metadata.deletion_timestamp is None
    ]


async def _set_of(registry: Registry, name: str = "web") -> CellSet:
    cellset = await registry.get(Kind.CELL_SET, (*KEY[:3], name))
    assert isinstance(cellset, CellSet)
    return cellset


def _failure(cellset: CellSet) -> str | None:
    found = [c for c in cellset.status.conditions if c.type == "ReplicaFailure"]
    return found[0].message if found else None


async def test_a_set_an_editor_wrote_makes_no_cell_the_lowered_level_forbids(
    api: Api, registry: Registry
) -> None:
    recorder = Recorder()
    admission = Admission(registry=registry, allowances=HostAllowances())
    controller = CellSetController(
        registry=registry,
        recorder=cast(EventRecorder, recorder),
        admission=admission.cell_refusal,
    )
    async with tls_session(api, ADMIN_TOKEN) as admin, tls_session(api, EDITOR_TOKEN) as editor:
        async with editor.post(f"{STACK}/cellsets", json=_set()) as response:
            assert response.status == 201, await response.text()
        await controller.run_pass()
        running = {c.metadata.name for c in await _cells(registry)}
        assert len(running) == 2  # admitted at privileged

        # The admin lowering the level is told of the cells it leaves running.
        (warning,) = await _level(admin, "restricted")
        assert "2 cells of realm 'team'" in warning, warning
        assert "security level restricted" in warning, warning
        for name in running:
            assert f"team/s/st/{name}" in warning, warning
        await controller.run_pass()
        # Cells already running are left alone (as Kubernetes leaves running pods).
        assert {c.metadata.name for c in await _cells(registry)} == running
        assert _failure(await _set_of(registry)) is None

        # The editor deletes them to have the set make new ones: it makes none.
        for name in running:
            async with editor.delete(f"{STACK}/cells/{name}") as response:
                assert response.status in (200, 202), await response.text()
        await controller.run_pass()
        assert await _cells(registry) == []
        refused = await _set_of(registry)
        message = _failure(refused)
        assert message is not None, refused.status
        assert 'security level of realm "team"' in message, message
        assert "restricted" in message, message
        assert "spec.template.spec.containers[0].privileged" in message, message
        warnings = [e for e in recorder.events if e[0] == "FailedCreate"]
        assert warnings == [("FailedCreate", message, EventType.WARNING)]

        # Not retried hot: passes while it holds write nothing and say it once.
        for _ in range(3):
            await controller.run_pass()
        again = await _set_of(registry)
        assert again.metadata.resource_version == refused.metadata.resource_version
        assert len([e for e in recorder.events if e[0] == "FailedCreate"]) == 1

        # The editor may not take the set out of admission by writing its metadata.
        notes = {"metadata": {"annotations": {ADMISSION_ANNOTATION: None}, "labels": {"x": "y"}}}
        async with editor.patch(f"{STACK}/cellsets/web", json=notes, headers=MERGE) as response:
            assert response.status == 200, await response.text()
        assert (await _set_of(registry)).metadata.annotations[ADMISSION_ANNOTATION] == "enforced"
        await controller.run_pass()
        assert await _cells(registry) == []

        # Raised again, the set converges (a raise warns of nothing).
        assert await _level(admin, "privileged") == []
        await controller.run_pass()
        assert len(await _cells(registry)) == 2
        assert _failure(await _set_of(registry)) is None


async def test_the_set_converges_once_its_template_is_fixed(api: Api, registry: Registry) -> None:
    admission = Admission(registry=registry, allowances=HostAllowances())
    controller = CellSetController(registry=registry, admission=admission.cell_refusal)
    async with tls_session(api, ADMIN_TOKEN) as admin, tls_session(api, EDITOR_TOKEN) as editor:
        async with editor.post(f"{STACK}/cellsets", json=_set(replicas=0)) as response:
            assert response.status == 201, await response.text()
        await _level(admin, "restricted")
        # Scaling it up is a spec write: the editor's own write is refused at once.
        scale = {"spec": {"replicas": 1}}
        async with editor.patch(f"{STACK}/cellsets/web", json=scale, headers=MERGE) as response:
            assert response.status == 403, await response.text()
        # An admin scales it; its cells are still the editor's template's, still refused.
        async with admin.patch(f"{STACK}/cellsets/web", json=scale, headers=MERGE) as response:
            assert response.status == 200, await response.text()
        await controller.run_pass()
        assert await _cells(registry) == []
        assert _failure(await _set_of(registry)) is not None
        fixed = _set(replicas=1)
        del fixed["spec"]["template"]["spec"]["containers"][0]["privileged"]
        async with editor.put(f"{STACK}/cellsets/web", json=fixed) as response:
            assert response.status == 200, await response.text()
        await controller.run_pass()
        assert len(await _cells(registry)) == 1
        assert _failure(await _set_of(registry)) is None


async def test_a_set_an_admin_wrote_keeps_its_power(api: Api, registry: Registry) -> None:
    admission = Admission(registry=registry, allowances=HostAllowances())
    controller = CellSetController(registry=registry, admission=admission.cell_refusal)
    async with tls_session(api, ADMIN_TOKEN) as admin:
        await _level(admin, "restricted")
        async with admin.post(f"{STACK}/cellsets", json=_set("ops", 1)) as response:
            assert response.status == 201, await response.text()
        cellset = await _set_of(registry, "ops")
        assert ADMISSION_ANNOTATION not in cellset.metadata.annotations
        await controller.run_pass()
        assert len(await _cells(registry, "ops")) == 1
