"""nestedCgroupRuntime without a host: what each driver says about delegating a container's
own cgroup (``nesting()``), and the runtime spec built from it on cgroup v2 and v1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kukeon.runtime.cgroups import CgroupNesting, open_driver, parse_mountinfo
from kukeon.runtime.cgroups.mode import unified_nsdelegate
from kukeon.runtime.containerd.spec import RuntimeSpecError, build_runtime_spec
from tests.unit.runtime.test_cgroup_mode import HYBRID, LEGACY, UNIFIED
from tests.unit.runtime.test_spec import make_container, make_context

UNIFIED_WITHOUT_NSDELEGATE = UNIFIED.replace("rw,nsdelegate,memory_recursiveprot", "rw")
GUARDED_V2 = CgroupNesting(version=2, guarded=True)


def _cgroup_mount(spec: dict[str, Any]) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = spec["mounts"]
    [mount] = [m for m in mounts if m["destination"] == "/sys/fs/cgroup"]
    return mount


def _namespaces(spec: dict[str, Any]) -> set[str]:
    return {n["type"] for n in spec["linux"]["namespaces"]}


# --- what the drivers say ------------------------------------------------------------------


def test_v2_with_nsdelegate_is_guarded() -> None:
    mounts = parse_mountinfo(UNIFIED)
    assert mounts.unified_nsdelegate
    nesting = open_driver(mounts=mounts).nesting()
    assert nesting == GUARDED_V2


def test_v2_without_nsdelegate_is_not_guarded_and_says_why() -> None:
    nesting = open_driver(mounts=parse_mountinfo(UNIFIED_WITHOUT_NSDELEGATE)).nesting()
    assert (nesting.version, nesting.guarded) == (2, False)
    assert "nsdelegate" in nesting.risk


@pytest.mark.parametrize("layout", [HYBRID, LEGACY], ids=["hybrid", "legacy"])
def test_v1_is_never_guarded(layout: str) -> None:
    nesting = open_driver(mounts=parse_mountinfo(layout)).nesting()
    assert (nesting.version, nesting.guarded) == (1, False)
    assert "cgroup v1" in nesting.risk
    assert "device" in nesting.risk


def test_a_hybrid_hosts_unified_mount_is_not_taken_for_nsdelegate() -> None:
    # the cgroup2 mount of this kind of host has no nsdelegate; filtering keeps the flag
    # only with the mount it belongs to
    mounts = parse_mountinfo(HYBRID)
    assert not mounts.unified_nsdelegate
    assert not parse_mountinfo(UNIFIED).under(Path("/elsewhere")).unified_nsdelegate


def test_nsdelegate_read_from_a_mountinfo_file(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(UNIFIED)
    assert unified_nsdelegate(Path("/sys/fs/cgroup"), mountinfo_path=mountinfo)
    assert not unified_nsdelegate(Path("/fake/tree"), mountinfo_path=mountinfo)
    assert not unified_nsdelegate(Path("/sys/fs/cgroup"), mountinfo_path=tmp_path / "none")


# --- the spec ---------------------------------------------------------------------------------


def test_without_nesting_the_cgroup_mount_stays_read_only() -> None:
    spec = build_runtime_spec(make_container(), context=make_context())
    assert "ro" in _cgroup_mount(spec)["options"]
    assert "cgroup" in _namespaces(spec)


def test_v2_nested_container_gets_a_writable_cgroup2_in_its_own_namespace() -> None:
    spec = build_runtime_spec(make_container(), context=make_context(cgroup_nesting=GUARDED_V2))
    mount = _cgroup_mount(spec)
    # runc mounts a fresh cgroup2 there, rooted at the namespace root: the task's own leaf
    assert mount["type"] == "cgroup"
    assert "rw" in mount["options"]
    assert "ro" not in mount["options"]
    assert "cgroup" in _namespaces(spec)
    assert spec["linux"]["cgroupsPath"] == "/kukeon/r1/s1/st1/cell1/web"
    # the rest of the sandbox is unchanged: /sys itself stays read-only, limits still apply
    [sysfs] = [m for m in spec["mounts"] if m["destination"] == "/sys"]
    assert "ro" in sysfs["options"]
    assert "maskedPaths" in spec["linux"]


def test_v2_nested_keeps_the_containers_limits_on_its_cgroup() -> None:
    container = make_container(resources={"memoryLimitBytes": 64 << 20, "pidsLimit": 100})
    spec = build_runtime_spec(container, context=make_context(cgroup_nesting=GUARDED_V2))
    assert spec["linux"]["resources"]["memory"] == {"limit": 64 << 20}
    assert spec["linux"]["resources"]["pids"] == {"limit": 100}


@pytest.mark.parametrize(
    "nesting",
    [
        CgroupNesting(version=1, guarded=False, risk="v1 risk"),
        CgroupNesting(version=2, guarded=False, risk="no nsdelegate"),
    ],
    ids=["v1", "v2-without-nsdelegate"],
)
def test_unguarded_host_refuses_an_unprivileged_container(nesting: CgroupNesting) -> None:
    with pytest.raises(RuntimeSpecError) as caught:
        build_runtime_spec(make_container(), context=make_context(cgroup_nesting=nesting))
    message = str(caught.value)
    assert "privileged" in message
    assert nesting.risk in message
    assert f"cgroup v{nesting.version}" in message


def test_unguarded_host_delegates_to_a_privileged_container() -> None:
    nesting = CgroupNesting(version=1, guarded=False, risk="v1 risk")
    spec = build_runtime_spec(
        make_container(privileged=True), context=make_context(cgroup_nesting=nesting)
    )
    mount = _cgroup_mount(spec)
    assert "rw" in mount["options"]
    # runc mounts each v1 hierarchy in the container's cgroup namespace: rooted at its cgroup
    assert "cgroup" in _namespaces(spec)


@pytest.mark.parametrize("privileged", [False, True])
def test_host_cgroup_is_refused_in_a_nested_cell(privileged: bool) -> None:
    container = make_container(hostCgroup=True, privileged=privileged)
    with pytest.raises(RuntimeSpecError) as caught:
        build_runtime_spec(container, context=make_context(cgroup_nesting=GUARDED_V2))
    assert "hostCgroup" in str(caught.value)
