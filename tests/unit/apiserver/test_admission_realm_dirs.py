"""Allowed host directories of each realm's own: a ``{realm}`` component of
``allowedHostPaths`` or ``secretDirs`` stands for the realm of the cell asking. Without it
the lists are the node's, shared by every realm's editors: realm ``evil``'s editor read
``secretDirs/team-db`` with ``fromFile`` (helper-123). A bind may still reach into no
realm's secret directory, its own included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Cell, parse_resource
from kukeon.api.realm import SecurityLevel
from kukeon.apiserver.admission import HostAllowances, check_cell, normalize_directory
from kukeon.apiserver.settings import ApiSettings
from kukeon.daemon.config import DaemonConfig

ALLOW = HostAllowances(
    host_paths=("/srv/data/{realm}", "/srv/shared"),
    secret_dirs=("/etc/kukeon/secrets/{realm}",),
)


def _cell(realm: str, **container: Any) -> Cell:
    res = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": "web"},
            "spec": {
                "realmId": realm,
                "containers": [{"id": "main", "image": "busybox", **container}],
            },
        }
    )
    assert isinstance(res, Cell)
    return res


def _refused(cell: Cell) -> list[str]:
    found = check_cell(cell, level=SecurityLevel.RESTRICTED, allowances=ALLOW, space=None)
    return [f"{violation.field}: {violation.message}" for violation in found]


def test_a_realm_reads_its_own_secret_directory_only() -> None:
    own = {"secrets": [{"name": "db", "fromFile": "/etc/kukeon/secrets/team/db"}]}
    assert _refused(_cell("team", **own)) == []
    [refusal] = _refused(_cell("evil", **own))
    assert refusal.startswith("spec.containers[0].secrets[0].fromFile:"), refusal
    assert "/etc/kukeon/secrets/evil" in refusal


def test_a_realm_binds_under_its_own_directory_and_the_shared_ones() -> None:
    def bind(source: str) -> dict[str, Any]:
        return {"volumes": [{"source": source, "target": "/d"}]}

    assert _refused(_cell("team", **bind("/srv/data/team/x"))) == []
    assert _refused(_cell("evil", **bind("/srv/shared/x"))) == []
    [refusal] = _refused(_cell("evil", **bind("/srv/data/team/x")))
    assert "is not under one of /srv/data/evil, /srv/shared" in refusal


@pytest.mark.parametrize(
    "source", ["/etc/kukeon/secrets", "/etc/kukeon/secrets/team", "/etc/kukeon/secrets/evil/a"]
)
def test_no_bind_reaches_a_realms_secret_directory(source: str) -> None:
    everything = HostAllowances(host_paths=("/",), secret_dirs=ALLOW.secret_dirs)
    cell = _cell("evil", volumes=[{"source": source, "target": "/d"}])
    [violation] = check_cell(
        cell, level=SecurityLevel.RESTRICTED, allowances=everything, space=None
    )
    assert "overlaps the secret directory /etc/kukeon/secrets" in violation.message


@pytest.mark.parametrize("directory", ["/srv/x{realm}", "/srv/{space}", "/srv/{realm}}"])
def test_braces_other_than_a_whole_realm_component_are_refused(directory: str) -> None:
    with pytest.raises(ValueError, match="whole component"):
        normalize_directory(directory)


def test_the_configuration_keeps_the_placeholder() -> None:
    settings = ApiSettings(
        socket_path=None,
        allowed_host_paths=("/srv/data//{realm}/",),
        secret_dirs=("/etc/s/{realm}",),
    )
    assert settings.host_allowances.host_paths == ("/srv/data/{realm}",)
    config = DaemonConfig(secret_dirs=(Path("/etc/s/{realm}/keys"),))
    assert config.secret_dirs == (Path("/etc/s/{realm}/keys"),)
