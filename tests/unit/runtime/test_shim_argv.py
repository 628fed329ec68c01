"""Which command lines are a containerd shim's long-running process (runtime.containerd.shims)."""

from __future__ import annotations

import pytest

from kukeon.runtime.containerd.shims import parse_shim_argv

SHIM = "/usr/bin/containerd-shim-runc-v2"


def test_a_running_shims_flags_are_read() -> None:
    argv = [SHIM, "-namespace", "r.kukeon.io", "-id", "s_st_c_m", "-address", "/run/c.sock"]
    assert parse_shim_argv(argv) == {
        "namespace": "r.kukeon.io",
        "id": "s_st_c_m",
        "address": "/run/c.sock",
    }
    assert parse_shim_argv([SHIM, "--id=x", "-debug", "-address", "/a"]) == {
        "id": "x",
        "debug": "",
        "address": "/a",
    }


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["/bin/sleep", "-namespace", "n", "-id", "i", "-address", "/a"],
        # The short-lived invocations containerd runs to start and clean up a shim.
        [SHIM, "-namespace", "n", "-id", "i", "-address", "/a", "start"],
        [SHIM, "-namespace", "n", "-address", "/a", "-id", "i", "-bundle", "/b", "delete"],
    ],
)
def test_anything_else_is_not_a_running_shim(argv: list[str]) -> None:
    assert parse_shim_argv(argv) is None
