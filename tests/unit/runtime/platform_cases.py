"""Which index entry a host runs: one table for archive import and for registry pulls.

Each case is the wanted platform, the platforms an index offers in order (``None`` for an
entry without one) and the position that must be chosen (``None``: nothing runs there).
It follows containerd's ``platforms.Only``: ``arm`` without variant is ``arm/v7``,
``arm64/v8`` is ``arm64``, an arm host runs older arm variants, an arm64 host runs 32-bit
arm, an amd64 host runs 386, and the first of equally good entries wins.
"""

from __future__ import annotations

from typing import NamedTuple

from kukeon.runtime.containerd.oci import Platform


class PlatformCase(NamedTuple):
    wanted: Platform
    offered: tuple[Platform | None, ...]
    chosen: int | None


def linux(architecture: str, variant: str = "") -> Platform:
    return Platform("linux", architecture, variant)


AMD64 = linux("amd64")
ARM64 = linux("arm64", "v8")
ARM_V7 = linux("arm", "v7")
ARM_V6 = linux("arm", "v6")

PLATFORM_CASES: dict[str, PlatformCase] = {
    "arm v7 picks v7 over v6": PlatformCase(ARM_V7, (ARM_V6, ARM_V7), 1),
    "arm v7 falls back to the newest older variant": PlatformCase(
        ARM_V7, (linux("arm", "v5"), ARM_V6), 1
    ),
    "arm v6 cannot run v7": PlatformCase(ARM_V6, (ARM_V7, AMD64), None),
    "arm without variant is arm v7": PlatformCase(ARM_V7, (ARM_V6, linux("arm")), 1),
    "arm v6 cannot run arm without variant": PlatformCase(ARM_V6, (linux("arm"),), None),
    "arm64 prefers arm64 to 32-bit arm": PlatformCase(ARM64, (ARM_V7, linux("arm64")), 1),
    "arm64 without variant is arm64 v8": PlatformCase(linux("arm64"), (ARM64,), 0),
    "arm64 runs 32-bit arm v7": PlatformCase(ARM64, (AMD64, ARM_V7), 1),
    "arm64 v8 and none are equal, the first wins": PlatformCase(
        ARM64, (AMD64, ARM64, linux("arm64")), 1
    ),
    "arm64 variant given as a bare number": PlatformCase(ARM64, (AMD64, linux("arm64", "8")), 1),
    "amd64 prefers the baseline": PlatformCase(AMD64, (ARM64, linux("amd64", "v3"), AMD64), 2),
    "amd64 v3 runs v2 before v1": PlatformCase(
        linux("amd64", "v3"), (AMD64, linux("amd64", "v2")), 1
    ),
    "amd64 v1 is amd64": PlatformCase(AMD64, (linux("amd64", "v1"),), 0),
    "amd64 runs 386 when nothing better": PlatformCase(AMD64, (ARM64, linux("386")), 1),
    "amd64 cannot run arm64": PlatformCase(AMD64, (ARM64, ARM_V7), None),
    "another os does not run": PlatformCase(AMD64, (Platform("windows", "amd64"),), None),
    "an entry without platform is the last resort": PlatformCase(AMD64, (ARM64, None), 1),
    "a matching entry beats one without platform": PlatformCase(AMD64, (None, AMD64), 1),
    "case does not matter": PlatformCase(Platform("Linux", "AMD64"), (AMD64,), 0),
}
