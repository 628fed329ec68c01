"""A realm's `spec.limits.containerEphemeralStorageBytes`: the default and ceiling of each
of its containers' ephemeral-storage limit (`apply_realm_ephemeral_storage`)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kukeon.api import ContainerSpec, Realm
from kukeon.api.defaults import apply_realm_ephemeral_storage

MIB = 1024 * 1024


def spec(**resources: int) -> ContainerSpec:
    fields = {"id": "app", "image": "busybox"}
    return ContainerSpec.model_validate(
        {**fields, **({"resources": resources} if resources else {})}
    )


@pytest.mark.parametrize(
    ("resources", "ceiling", "expected"),
    [
        ({}, 4 * MIB, 4 * MIB),  # none: the realm's
        ({"memoryLimitBytes": 64 * MIB}, 4 * MIB, 4 * MIB),  # other limits kept beside it
        ({"ephemeralStorageLimitBytes": 0}, 4 * MIB, 4 * MIB),  # 0 is unset
        ({"ephemeralStorageLimitBytes": 2 * MIB}, 4 * MIB, 2 * MIB),  # less: its own
        ({"ephemeralStorageLimitBytes": 4 * MIB}, 4 * MIB, 4 * MIB),
        ({"ephemeralStorageLimitBytes": 1 << 30}, 4 * MIB, 4 * MIB),  # more: held to it
        ({}, None, None),  # no realm limit: as it was
        ({"ephemeralStorageLimitBytes": 1 << 30}, None, 1 << 30),
    ],
)
def test_the_realms_limit_is_each_containers_default_and_ceiling(
    resources: dict[str, int], ceiling: int | None, expected: int | None
) -> None:
    container = spec(**resources)
    effective = apply_realm_ephemeral_storage(container, ceiling)
    limit = effective.resources.ephemeral_storage_limit_bytes if effective.resources else None
    assert (limit or None) == expected
    if "memoryLimitBytes" in resources:
        assert effective.resources is not None
        assert effective.resources.memory_limit_bytes == resources["memoryLimitBytes"]
    assert container == spec(**resources)  # the argument is not modified


def test_the_realms_limit_is_at_least_a_containers_least() -> None:
    realm = {"metadata": {"name": "r"}, "spec": {"limits": {}}}
    with pytest.raises(ValidationError, match="containerEphemeralStorageBytes"):
        Realm.model_validate(
            {**realm, "spec": {"limits": {"containerEphemeralStorageBytes": 1024}}}
        )
    parsed = Realm.model_validate(
        {**realm, "spec": {"limits": {"containerEphemeralStorageBytes": 4 * MIB}}}
    )
    assert parsed.spec.limits is not None
    assert parsed.spec.limits.container_ephemeral_storage_bytes == 4 * MIB
