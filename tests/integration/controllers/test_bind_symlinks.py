"""A realm's editor cannot bind a host path outside its allowed directory by planting a
symbolic link in it: the first cell binds the realm's own ``allowedHostPaths`` directory
read-write and leaves a link to the host's root there, the second names a bind source
through that link (under the allowed directory as written, so admission lets it pass). A
real kukeond over TLS, the editor's token."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond
from tests.fixtures.tlskukeond import TlsKukeond, tls_kukeond  # noqa: F401 - the fixture
from tests.integration.controllers.helpers import cell_doc, container, made_directory

pytestmark = pytest.mark.integration

ALLOWED = Path("/tmp/kukeon-bindlinks/{realm}")
"""The realms' directories (the test makes its realm's, and removes them all after it)."""


@pytest.fixture
def allowed() -> Iterator[Path]:
    with made_directory(ALLOWED.parent) as top:
        yield top


async def _until(check: Callable[[], bool], within: float = 20) -> None:
    """Until the container did it (Ready says its task started, not that its script ran)."""
    async with asyncio.timeout(within):
        while not await asyncio.to_thread(check):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def bind_cell(k: Kukeond, name: str, source: str, script: str) -> dict[str, Any]:
    volume = {"source": source, "target": "/data"}
    box = container(k, "app", script=script, volumes=[volume], restartPolicy="never")
    return {"apiVersion": "kukeon.io/v1beta1", **cell_doc(k, name, [box])}


@pytest.mark.kukeond_config(allowed_host_paths=(ALLOWED,))
async def test_a_link_planted_in_an_allowed_directory_is_not_followed_out_of_it(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    allowed: Path,
    tmp_path: Path,
) -> None:
    node = tls_kukeond
    k = node.k
    own = allowed / k.realm
    own.mkdir()
    outside = tmp_path / "outside"  # a host directory no allowed path names
    outside.mkdir()
    await k.hierarchy()
    cells = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/spaces/s1/stacks/st1/cells"
    plant = bind_cell(k, "plant", str(own), "ln -s / /data/up && exec sleep 1000")
    reach = bind_cell(
        k, "reach", f"{own}/up{outside}", "echo escaped > /data/proof; exec sleep 1000"
    )
    inner = bind_cell(k, "inner", f"{own}/sub", "cat /data/note > /data/seen; exec sleep 1000")
    async with node.session("editor") as editor:
        async with editor.post(cells, json=plant) as response:
            assert response.status == 201, await response.text()
        await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "plant"), state="Ready")
        await _until((own / "up").is_symlink)  # the pinned directory is the allowed one
        async with editor.post(cells, json=reach) as response:
            assert response.status == 201, await response.text()  # as written: allowed
        (own / "sub").mkdir()
        (own / "sub" / "note").write_text("hello\n")
        async with editor.post(cells, json=inner) as response:
            assert response.status == 201, await response.text()
    done = await k.wait_for(
        Kind.CELL,
        (k.realm, "s1", "st1", "reach"),
        until=lambda c: str(c.status.state) == "Ready" or c.status.reason == "BindSourceRefused",
        within=60,
    )
    assert isinstance(done, Cell)
    assert not (outside / "proof").exists(), "the bind followed the link out of its directory"
    assert str(done.status.state) == "Failed", done.status
    assert f"{own}/up is a symbolic link" in (done.status.message or ""), done.status.message

    # A directory below the allowed one, reached by no link, is bound as before.
    await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "inner"), state="Ready")
    seen = own / "sub" / "seen"
    await _until(lambda: seen.exists() and seen.read_text() == "hello\n")

    # Deleting the cells unmounts their pins and removes the directories they were in.
    binds = k.config.state_dir / "binds"
    for name in ("plant", "reach", "inner"):
        await k.registry.delete(Kind.CELL, (k.realm, "s1", "st1", name))
    for name in ("plant", "reach", "inner"):
        await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", name))
    for name in ("plant", "reach", "inner"):  # the stack's level goes with the stack's
        assert not binds.joinpath(k.realm, "s1", "st1", name).exists()
    mounts = await asyncio.to_thread(Path("/proc/self/mountinfo").read_text)
    assert str(binds) not in mounts
