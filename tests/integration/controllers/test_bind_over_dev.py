"""A realm's editor cannot give runc a /dev/null of their own, so runc masks what it masks.

runc hides /proc/kcore, /proc/keys, /proc/timer_list, /sys/firmware... by binding the
container's /dev/null over each; a bind volume over /dev makes the bound directory the
container's devices. The editor plants ``null``, a link to the host's
``kernel.core_pattern``, in their realm's ``allowedHostPaths`` directory from one cell and
binds that directory at /dev in another: on a kukeond that does not look, runc bound the
host's core_pattern over /proc/keys and /proc/timer_list (runc before 1.2.8 follows the
link, CVE-2025-31133) and the container's command ran. The target need not say /dev: a
link in a volume mounted before it leads runc there. A real kukeond over TLS, the editor's
token."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond
from tests.fixtures.tlskukeond import TlsKukeond, tls_kukeond  # noqa: F401 - the fixture
from tests.integration.controllers.helpers import cell_doc, container, made_directory

pytestmark = pytest.mark.integration

ALLOWED = Path("/tmp/kukeon-bind-over-dev/{realm}")
"""The realms' directories (the test makes its realm's, and removes them all after it)."""
CELLS = ("plant", "over", "through")
CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")
"""What the attack reaches: runc reopened the container's stdout/stderr on it, so a command
that ran would write its output there (a busybox usage text was found in it on a host where
the attack had been tried with the check off)."""


@pytest.fixture
def allowed() -> Iterator[Path]:
    with made_directory(ALLOWED.parent) as top:
        yield top


@pytest.fixture
def core_pattern() -> Iterator[str]:
    """The host's core_pattern, put back after the test if it changed, whatever happened."""
    before = CORE_PATTERN.read_text()
    yield before
    if CORE_PATTERN.read_text() != before:
        CORE_PATTERN.write_text(before)


def cell(k: Kukeond, name: str, script: str, volumes: list[dict[str, str]]) -> dict[str, Any]:
    box = container(k, "app", script=script, volumes=volumes, restartPolicy="never")
    return {"apiVersion": "kukeon.io/v1beta1", **cell_doc(k, name, [box])}


async def _settled(k: Kukeond, name: str) -> Cell:
    done = await k.wait_for(
        Kind.CELL,
        (k.realm, "s1", "st1", name),
        until=lambda c: str(c.status.state) in ("Ready", "Failed"),
        within=60,
    )
    assert isinstance(done, Cell)
    return done


@pytest.mark.kukeond_config(allowed_host_paths=(ALLOWED,))
async def test_a_dev_null_of_the_editors_own_never_masks_and_the_command_never_runs(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    allowed: Path,
    core_pattern: str,
) -> None:
    node = tls_kukeond
    k = node.k
    own = allowed / k.realm
    for directory in ("dev", "box", "out"):
        (own / directory).mkdir(parents=True)
    await k.hierarchy()
    cells = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/spaces/s1/stacks/st1/cells"
    plant = cell(
        k,
        "plant",
        "ln -s /proc/sys/kernel/core_pattern /data/dev/null && ln -s /dev /data/box/link "
        "&& exec sleep 1000",
        [{"source": str(own), "target": "/data"}],
    )
    # The bound directory at /dev, and at /mnt/link: /mnt's link leads runc to /dev.
    ran = "grep -c core_pattern /proc/self/mountinfo > /out/$0; exec sleep 1000"
    over = cell(
        k,
        "over",
        ran.replace("$0", "over"),
        [
            {"source": str(own / "dev"), "target": "/dev"},
            {"source": str(own / "out"), "target": "/out"},
        ],
    )
    through = cell(
        k,
        "through",
        ran.replace("$0", "through"),
        [
            {"source": str(own / "out"), "target": "/out"},
            {"source": str(own / "box"), "target": "/mnt"},
            {"source": str(own / "dev"), "target": "/mnt/link"},
        ],
    )
    try:
        async with node.session("editor") as editor:
            async with editor.post(cells, json=plant) as response:
                assert response.status == 201, await response.text()
            planted = await _settled(k, "plant")  # its own /dev/null is the device
            assert str(planted.status.state) == "Ready", planted.status
            async with asyncio.timeout(20):
                while not (own / "box" / "link").is_symlink():  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            for body in (over, through):
                async with editor.post(cells, json=body) as response:
                    assert response.status == 201, await response.text()
        for name in ("over", "through"):
            done = await _settled(k, name)
            assert str(done.status.state) == "Failed", (name, done.status)
            assert done.status.reason == "BindSourceRefused", (name, done.status)
            message = done.status.message or ""
            assert "is a regular file, not masked" in message, (name, message)
            assert "the task was deleted before its command ran" in message, (name, message)
            assert not (own / "out" / name).exists(), f"{name}'s command ran"
        assert await asyncio.to_thread(CORE_PATTERN.read_text) == core_pattern
    finally:
        for name in CELLS:
            await k.registry.delete(Kind.CELL, (k.realm, "s1", "st1", name))
        for name in CELLS:
            await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", name))
