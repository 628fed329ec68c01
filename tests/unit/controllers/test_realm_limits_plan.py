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
