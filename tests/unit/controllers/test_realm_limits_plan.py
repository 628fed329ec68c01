"""What a realm's cgroup is given: its `spec.limits`, pids otherwise kukeond's default
(only where the host has the pids controller), every field each time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kukeon.api import Realm, parse_resource
from kukeon.controllers.realm import RealmController
from kukeon.runtime.cgroups import CgroupLimits

from .hostfakes import make_host


def _realm(spec: dict[str, Any]) -> Realm:
    found = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": "r"},
            "spec": spec,
        }
    )
    assert isinstance(found, Realm)
    return found


def _controller(tmp_path: Path, default_pids: int | None) -> RealmController:
    fake = make_host(tmp_path)
    settings = dataclasses.replace(fake.host.settings, realm_pids_limit=default_pids)
    return RealmController(host=dataclasses.replace(fake.host, settings=settings))


def test_a_realms_own_limits_win_and_pids_default_to_kukeonds(tmp_path: Path) -> None:
    controller = _controller(tmp_path, 16384)
    own = _realm({"limits": {"memoryBytes": 1 << 30, "pids": 100}})
    assert controller.limits_of(own) == CgroupLimits(memory_max_bytes=1 << 30, pids_max=100)
    assert controller.limits_of(_realm({})) == CgroupLimits(pids_max=16384)
    assert controller.limits_of(_realm({"limits": {"memoryBytes": 1 << 30}})) == CgroupLimits(
        memory_max_bytes=1 << 30, pids_max=16384
    )


def test_no_default_pids_without_the_controller_or_the_setting(tmp_path: Path) -> None:
    assert _controller(tmp_path, 16384).limits_of(_realm({}), pids_offered=False) == (
        CgroupLimits()
    )
    assert _controller(tmp_path, None).limits_of(_realm({})) == CgroupLimits()
    # A realm that asks for a pids ceiling gets it even where the default would not apply.
    asked = _realm({"limits": {"pids": 10}})
    assert _controller(tmp_path, None).limits_of(asked, pids_offered=False).pids_max == 10


def test_no_realm_limit_above_the_kukeon_roots(tmp_path: Path) -> None:
    """The kernel holds a realm to its parent's pids.max: the realm's own file says so."""
    fake = make_host(tmp_path)
    settings = dataclasses.replace(
        fake.host.settings, realm_pids_limit=16384, root_pids_limit=10_000
    )
    controller = RealmController(host=dataclasses.replace(fake.host, settings=settings))
    assert controller.limits_of(_realm({})).pids_max == 10_000
    assert controller.limits_of(_realm({"limits": {"pids": 50_000}})).pids_max == 10_000
    assert controller.limits_of(_realm({"limits": {"pids": 100}})).pids_max == 100
    # No root ceiling (hostReservedPids 0): the realm's own limit, as asked.
    unlimited = dataclasses.replace(settings, root_pids_limit=None)
    controller = RealmController(host=dataclasses.replace(fake.host, settings=unlimited))
    assert controller.limits_of(_realm({"limits": {"pids": 50_000}})).pids_max == 50_000


async def test_materialise_keeps_the_root_and_says_when_the_realm_is_capped(
    tmp_path: Path,
) -> None:
    fake = make_host(tmp_path)
    settings = dataclasses.replace(fake.host.settings, root_pids_limit=10_000)
    controller = RealmController(host=dataclasses.replace(fake.host, settings=settings))
    ctx: Any = None

    capped = await controller.materialise(_realm({"limits": {"pids": 50_000}}), ctx)
    within = await controller.materialise(_realm({"limits": {"pids": 100}}), ctx)

    assert fake.cgroups.root_pids == [10_000, 10_000]
    assert capped.state == "Ready"
    assert capped.reason == "PidsLimitCapped"
    assert capped.message is not None
    assert "10000" in capped.message
    assert within.reason is None
    assert within.message is None


async def test_materialise_says_a_credential_without_a_server_address_is_sent_nowhere(
    tmp_path: Path,
) -> None:
    """A credential stored before serverAddress was required is no longer sent to every
    registry: the realm's node entry says so (`kukectl describe realm`), with any cap."""
    fake = make_host(tmp_path)
    settings = dataclasses.replace(fake.host.settings, root_pids_limit=10_000)
    controller = RealmController(host=dataclasses.replace(fake.host, settings=settings))
    ctx: Any = None
    legacy = [
        {"username": "corp-bot", "password": "p", "serverAddress": "ghcr.io"},
        {"username": "robot", "password": "p"},
    ]

    entry = await controller.materialise(_realm({"registryCredentials": legacy}), ctx)
    both = await controller.materialise(
        _realm({"registryCredentials": legacy, "limits": {"pids": 50_000}}), ctx
    )

    assert entry.state == "Ready"
    assert entry.reason == "RegistryCredentialIgnored"
    assert entry.message is not None
    assert "registryCredentials[1] (user 'robot') has no serverAddress" in entry.message
    assert "sends it to no registry" in entry.message
    assert "corp-bot" not in entry.message
    assert both.reason == "PidsLimitCapped"
    assert both.message is not None
    assert "10000" in both.message
    assert "registryCredentials[1]" in both.message
