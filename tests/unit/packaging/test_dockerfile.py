"""The Dockerfile's promises that can be checked without building it.

The image build itself (offline, with buildah) is in tests/integration/packaging. Here the
HEALTHCHECK command is taken out of the Dockerfile and run against a small HTTP server on
a unix socket, so the probe is known to tell a healthy kukeond from a sick or absent one.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest

from kukeon.daemon.config import load_config
from kukeon.daemon.endpoints import api_settings
from tests.unit.packaging.healthz import HealthzServer

if TYPE_CHECKING:
    from kukeon.daemon.app import Daemon

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def healthcheck_command() -> list[str]:
    (arguments,) = [rest for keyword, rest in instructions() if keyword == "HEALTHCHECK"]
    _options, _, command = arguments.partition("CMD ")
    parsed: list[str] = json.loads(command)
    return parsed


def image_environment() -> dict[str, str]:
    """The runtime stage's ENV (``KEY=VALUE`` words, quotes removed as Docker does), the
    ``$VAR`` references left as written."""
    stages = [index for index, (keyword, _) in enumerate(instructions()) if keyword == "FROM"]
    environment: dict[str, str] = {}
    for keyword, rest in instructions()[stages[-1] :]:
        if keyword == "ENV":
            for word in shlex.split(rest):
                name, _, value = word.partition("=")
                environment[name] = value
    return environment


def test_builds_in_two_stages_from_one_base() -> None:
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE} AS runtime"]
    copies = [rest for keyword, rest in instructions() if keyword == "COPY"]
    assert "--from=builder /opt/kukeon /opt/kukeon" in copies


def test_labels_carry_version_source_and_title() -> None:
    labels = " ".join(rest for keyword, rest in instructions() if keyword == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert 'org.opencontainers.image.source="${SOURCE}"' in labels
    assert 'org.opencontainers.image.title="kukeon"' in labels


def test_runs_as_an_unprivileged_user_by_default() -> None:
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users == ["kukeon"]


def test_documents_what_kukeond_needs_from_the_host() -> None:
    text = DOCKERFILE.read_text()
    for needed in (
        "--user 0",
        "--privileged",
        "--pid=host",
        "--network=host",
        "/run/containerd/containerd.sock",
        "/sys/fs/cgroup",
        "/var/lib/kukeon",
        "/run/kukeon",
        "/etc/cni/net.d",
        "/usr/lib/cni",
    ):
        assert needed in text, needed


def test_kukeond_in_the_image_keeps_the_api_socket_root_s() -> None:
    """The image's group kukeon is gid 10001, whoever holds it on the host: kukeond run
    from the image gives its socket no group unless it is given the host's gid."""
    environment = image_environment()
    assert environment["KUKEON_API_SOCKET_GROUP"] == ""
    config = load_config(environ=environment)
    assert config.api_socket_group == ""
    assert api_settings(cast("Daemon", SimpleNamespace(config=config))).socket_group is None
    given = load_config(environ={**environment, "KUKEON_API_SOCKET_GROUP": "2000"})
    assert api_settings(cast("Daemon", SimpleNamespace(config=given))).socket_group == "2000"


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # A short path: unix socket paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="kk-hc-") as directory:
        yield Path(directory)


def probe(run_dir: Path) -> subprocess.CompletedProcess[str]:
    command = healthcheck_command()
    assert command[0] == "/opt/kukeon/bin/python"
    return subprocess.run(
        [sys.executable, *command[1:]],
        env={**os.environ, "KUKEON_RUN_DIR": str(run_dir)},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_healthcheck_passes_when_healthz_answers_200(run_dir: Path) -> None:
    server = HealthzServer(run_dir / "kukeond.sock", 200)
    try:
        result = probe(run_dir)
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    assert server.requests[0].startswith(b"GET /healthz HTTP/1.0\r\n")


def test_healthcheck_fails_when_healthz_answers_an_error(run_dir: Path) -> None:
    server = HealthzServer(run_dir / "kukeond.sock", 503)
    try:
        result = probe(run_dir)
    finally:
        server.close()
    assert result.returncode != 0


def test_healthcheck_fails_without_a_socket(run_dir: Path) -> None:
    assert probe(run_dir).returncode != 0


def test_healthcheck_options_are_bounded() -> None:
    (arguments,) = [rest for keyword, rest in instructions() if keyword == "HEALTHCHECK"]
    options = shlex.split(arguments.partition("CMD ")[0])
    assert "--timeout=5s" in options
    assert any(option.startswith("--interval=") for option in options)
