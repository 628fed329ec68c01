"""The kukeon image run the way kukeon runs anything: as a cell, by a real kukeond.

The image built offline is imported into the test realm's containerd namespace, a Cell
naming it is written to the registry, and kukeond's cell controller creates and starts
the container (its own cgroup, netns on the space's bridge, log file). The container runs
`kukectl version`, once for the client alone and once against that kukeond's API socket
bound into the cell; the test reads the exit code from the cell's status and the output
from the log file the controller writes.

The same kukeond also answers the image's HEALTHCHECK command (taken from the built
image's configuration and run here with the host's python) on its API socket.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import pytest

from kukeon.api import AnyResource, Cell, Kind
from kukeon.api.container import ContainerStatus
from kukeon.runtime.containerd.crilog import plain_text
from tests.fixtures.kukeond import Kukeond

from .conftest import BuiltImage

# The first test to ask for the image pays for building it (debootstrap on a new machine).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


def _exited(cell: AnyResource) -> bool:
    assert isinstance(cell, Cell)
    return any(status.exit_code is not None for status in cell.status.containers)


async def run_as_cell(
    k: Kukeond, image: BuiltImage, name: str, container: dict[str, Any]
) -> tuple[ContainerStatus, str]:
    """Run one container of the image as a cell until it exits: its status and its log."""
    await k.apply(
        {
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {
                "realmId": k.realm,
                "spaceId": "s1",
                "stackId": "st1",
                "containers": [
                    {"id": "main", "image": image.name, "restartPolicy": "never", **container}
                ],
            },
        }
    )
    key = (k.realm, "s1", "st1", name)
    cell = await k.wait_for(Kind.CELL, key, until=_exited, within=120)
    assert isinstance(cell, Cell)
    [status] = cell.status.containers
    log = k.config.state_dir.joinpath("cells", *key, "logs", "main.log")
    return status, plain_text(log.read_bytes()) if log.exists() else "(no log file)"


@pytest.fixture
async def realm_with_image(kukeond: Kukeond, kukeon_image: BuiltImage) -> Kukeond:
    await kukeond.hierarchy()
    controllers = kukeond.daemon.controllers
    assert controllers is not None
    await controllers.images.import_archive(namespace=kukeond.namespace, path=kukeon_image.archive)
    return kukeond


async def test_kukectl_runs_as_a_kukeon_cell_alone_and_against_the_server(
    realm_with_image: Kukeond, kukeon_image: BuiltImage
) -> None:
    """Two cells side by side in one realm (importing the image into a realm takes 7-9 s):
    `kukectl version --client`, and kukectl reaching the running kukeond through its
    socket, bound in.

    The socket admits root and the host's `kukeon` group only, so the second container runs
    as root (of the container) instead of the image's unprivileged user.
    """
    k = realm_with_image
    (client, client_output), (server, server_output) = await asyncio.gather(
        run_as_cell(
            k,
            kukeon_image,
            "kukectl-client",
            {"command": "kukectl", "args": ["version", "--client"]},
        ),
        run_as_cell(
            k,
            kukeon_image,
            "kukectl-server",
            {
                "command": "kukectl",
                "args": ["--server", "unix:///run/kukeon/kukeond.sock", "version"],
                "user": "0",
                "volumes": [{"source": str(k.config.run_dir), "target": "/run/kukeon"}],
            },
        ),
    )
    assert client.exit_code == 0, f"{client.model_dump(exclude_none=True)}\n{client_output}"
    assert f"Client Version: {kukeon_image.version}" in client_output
    assert server.exit_code == 0, f"{server.model_dump(exclude_none=True)}\n{server_output}"
    assert f"Client Version: {kukeon_image.version}" in server_output
    assert f"Server Version: {kukeon_image.version}" in server_output


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
