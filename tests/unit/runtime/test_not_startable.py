"""runc's refusals to exec a command, told apart from host faults."""

from __future__ import annotations

import pytest

from kukeon.runtime.containerd.errors import not_startable_reason

PREFIX = "failed to create shim task: OCI runtime create failed: runc create failed: "
PREFIX += "unable to start container process: "


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        (PREFIX + 'exec: "nosuch": executable file not found in $PATH: unknown', "CommandNotFound"),
        (
            PREFIX + 'exec: "/nonexistent": stat /nonexistent: no such file or directory: unknown',
            "CommandNotFound",
        ),
        (PREFIX + 'exec: "/etc": is a directory: unknown', "CommandNotExecutable"),
        (PREFIX + 'exec: "/etc/passwd": permission denied: unknown', "CommandNotExecutable"),
        ("exec /bin/app: exec format error", "CommandNotExecutable"),
        ("failed to mount rootfs component: no such file or directory", None),
        ("connection refused", None),
        (PREFIX + "error during container init: open /dev/ptmx: no such file or directory", None),
    ],
)
def test_reason(detail: str, reason: str | None) -> None:
    assert not_startable_reason(detail) == reason
