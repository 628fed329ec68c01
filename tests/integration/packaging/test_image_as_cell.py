"""The kukeon image run the way kukeon runs anything: as a cell, by a real kukeond.

The image built offline is imported into the test realm's containerd namespace, a Cell
naming it is written to the registry, and kukeond's cell controller creates and starts
the container (its own cgroup, netns on the space's bridge, log file). The container runs
`kukectl version --client`; the test reads the exit code from the cell's status and the
output from the log file the controller writes.

The same kukeond also answers the image's HEALTHCHECK command (taken from the built
image's configuration and run here with the host's python) on its API socket.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from kukeon.api import AnyResource, Cell, Kind
from tests.fixtures.kukeond import Kukeond

from .conftest import BuiltImage

# The first test to ask for the image pays for building it (debootstrap on a new machine).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


def _exited(cell: AnyResource) -> bool:
    assert isinstance(cell, Cell)
    return any(status.exit_code is not None for status in cell.status.containers)


async def test_kukectl_version_runs_as_a_kukeon_cell(
    kukeond: Kukeond, kukeon_image: BuiltImage
) -> None:
    k = kukeond
    await k.hierarchy()
    controllers = k.daemon.controllers
    assert controllers is not None
    await controllers.images.import_archive(namespace=k.namespace, path=kukeon_image.archive)

    await k.apply(
        {
            "kind": "Cell",
            "metadata": {"name": "kukectl"},
            "spec": {
                "realmId": k.realm,
                "spaceId": "s1",
                "stackId": "st1",
                "containers": [
                    {
                        "id": "version",
                        "image": kukeon_image.name,
                        "command": "kukectl",
                        "args": ["version", "--client"],
                        "restartPolicy": "never",
                    }
                ],
            },
        }
    )
    key = (k.realm, "s1", "st1", "kukectl")
    cell = await k.wait_for(Kind.CELL, key, until=_exited, within=120)

    assert isinstance(cell, Cell)
    [container] = cell.status.containers
    log = k.config.state_dir.joinpath("cells", *key, "logs", "version.log")
    output = log.read_text() if log.exists() else "(no log file)"
    assert container.exit_code == 0, f"{container.model_dump(exclude_none=True)}\n{output}"
    assert f"Client Version: {kukeon_image.version}" in output


async def test_image_healthcheck_passes_against_a_running_kukeond(
    kukeond: Kukeond, kukeon_image: BuiltImage
) -> None:
    test = kukeon_image.config["Docker"]["config"]["Healthcheck"]["Test"]
    assert test[:2] == ["CMD", "/opt/kukeon/bin/python"]
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        *test[2:],
        env={**os.environ, "KUKEON_RUN_DIR": str(kukeond.config.run_dir)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(probe.communicate(), 30)
    assert probe.returncode == 0, (stdout + stderr).decode()
