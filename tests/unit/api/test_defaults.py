"""Space defaults into containers: precedence, shallowness and idempotence, as properties."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kukeon.api import (
    Capabilities,
    ContainerSpec,
    Resources,
    Space,
    SpaceContainerDefaults,
    SpaceDefaults,
    SpaceSpec,
    TmpfsMount,
    apply_space_defaults_to_container,
    parse_resource,
)
from kukeon.api.defaults import DEFAULTABLE_FIELDS
from tests.unit.api.samples import space_doc

words = st.sampled_from(["ALL", "NET_RAW", "NET_BIND_SERVICE", "SYS_ADMIN", "CHOWN"])
users = st.sampled_from(["1000", "1000:1000", "nobody", "0:0"])
capabilities = st.builds(
    Capabilities, drop=st.lists(words, max_size=3), add=st.lists(words, max_size=3)
)
tmpfs = st.lists(
    st.builds(
        TmpfsMount,
        path=st.sampled_from(["/tmp", "/run", "/var/tmp"]),
        size_bytes=st.none() | st.integers(0, 2**30),
        options=st.lists(st.sampled_from(["noexec", "nosuid"]), max_size=2),
    ),
    min_size=1,
    max_size=2,
)
resources = st.builds(
    Resources,
    memory_limit_bytes=st.none() | st.just(0) | st.integers(1 << 20, 2**34),
    cpu_shares=st.none() | st.just(0) | st.integers(2, 1024),
    pids_limit=st.none() | st.integers(0, 4096),
)
security_opts = st.lists(st.sampled_from(["no-new-privileges", "seccomp=unconfined"]), min_size=1)

# Each defaultable field: either unset (in both spellings kukeon treats as unset) or set.
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "user": st.none() | st.just("") | users,
    "read_only_root_filesystem": st.none() | st.booleans(),
    "capabilities": st.none() | capabilities,
    "security_opts": st.just([]) | security_opts,
    "tmpfs": st.just([]) | tmpfs,
    "resources": st.none() | resources,
}


@st.composite
def defaultable(draw: st.DrawFn) -> dict[str, Any]:
    return {name: draw(strategy) for name, strategy in FIELD_VALUES.items()}


@st.composite
def containers(draw: st.DrawFn) -> ContainerSpec:
    return ContainerSpec(
        id="app",
        image="busybox",
        env=draw(st.lists(st.sampled_from(["A=1", "B=2"]), max_size=2)),
        **draw(defaultable()),
    )


@st.composite
def spaces(draw: st.DrawFn) -> SpaceSpec:
    if draw(st.booleans()):
        return SpaceSpec(defaults=draw(st.sampled_from([None, SpaceDefaults()])))
    return SpaceSpec(
        defaults=SpaceDefaults(container=SpaceContainerDefaults(**draw(defaultable())))
    )


def unset(value: Any) -> bool:
    return value is None or value == "" or value == []


@given(space=spaces(), container=containers())
def test_applying_twice_changes_nothing(space: SpaceSpec, container: ContainerSpec) -> None:
    once = apply_space_defaults_to_container(space, container)
    assert apply_space_defaults_to_container(space, once) == once


@given(space=spaces(), container=containers())
def test_container_beats_space_beats_built_in(space: SpaceSpec, container: ContainerSpec) -> None:
    merged = apply_space_defaults_to_container(space, container)
    defaults = space.defaults.container if space.defaults else None
    for field in DEFAULTABLE_FIELDS:
        own = getattr(container, field)
        default = getattr(defaults, field) if defaults else None
        result = getattr(merged, field)
        if not unset(own):
            assert result == own, field  # the container's own value, whole
        elif default is not None and not unset(default):
            assert result == default, field  # the space's value, whole: no merge
        else:
            assert unset(result), field  # built-in: left unset for the runtime
    untouched = set(ContainerSpec.model_fields) - set(DEFAULTABLE_FIELDS)
    assert {f: getattr(merged, f) for f in untouched} == {
        f: getattr(container, f) for f in untouched
    }


@given(space=spaces(), container=containers())
def test_inputs_are_not_modified_or_shared(space: SpaceSpec, container: ContainerSpec) -> None:
    space_before, container_before = space.model_copy(deep=True), container.model_copy(deep=True)
    merged = apply_space_defaults_to_container(space, container)
    assert (space, container) == (space_before, container_before)
    merged.security_opts.append("changed")
    merged.tmpfs.append(TmpfsMount(path="/changed"))
    assert (space, container) == (space_before, container_before)


@given(space=spaces(), container=containers())
def test_space_or_its_spec_give_the_same_result(space: SpaceSpec, container: ContainerSpec) -> None:
    resource = Space.model_validate({"metadata": {"name": "s"}, "spec": space.model_dump()})
    assert apply_space_defaults_to_container(resource, container) == (
        apply_space_defaults_to_container(space, container)
    )


def test_a_container_capabilities_replace_the_space_ones_outright() -> None:
    # The example of kukeon's Space manifest reference.
    space = parse_resource(
        space_doc(
            defaults={
                "container": {
                    "user": "1000:1000",
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                    "securityOpts": ["no-new-privileges"],
                    "tmpfs": [{"path": "/tmp", "sizeBytes": 268435456}],
                    "resources": {"memoryLimitBytes": 4294967296, "pidsLimit": 512},
                }
            }
        )
    )
    assert isinstance(space, Space)
    container = ContainerSpec(
        id="app", image="busybox", capabilities=Capabilities(drop=["CAP_NET_RAW"])
    )
    merged = apply_space_defaults_to_container(space, container)
    assert merged.capabilities == Capabilities(drop=["CAP_NET_RAW"])
    assert merged.user == "1000:1000"
    assert merged.read_only_root_filesystem is True
    assert merged.security_opts == ["no-new-privileges"]
    assert merged.tmpfs == [TmpfsMount(path="/tmp", size_bytes=268435456)]
    assert merged.resources == Resources(memory_limit_bytes=4294967296, pids_limit=512)


def test_an_explicit_false_opts_out_of_a_read_only_default() -> None:
    space = SpaceSpec(
        defaults=SpaceDefaults(container=SpaceContainerDefaults(read_only_root_filesystem=True))
    )
    unset_flag = ContainerSpec(id="a", image="b")
    opted_out = ContainerSpec(id="a", image="b", read_only_root_filesystem=False)
    assert apply_space_defaults_to_container(space, unset_flag).read_only_root_filesystem is True
    assert apply_space_defaults_to_container(space, opted_out).read_only_root_filesystem is False


def test_a_space_without_defaults_leaves_the_container_as_is() -> None:
    container = ContainerSpec(id="a", image="b", user="7")
    assert apply_space_defaults_to_container(SpaceSpec(), container) == container
