"""runc's words for a bind whose source is missing, read back to the paths the cell named:
runc quotes them with Go's %q after `error mounting` and writes them raw after `stat`, so a
path with a newline (a client's, or a profile value put in one) is still that refusal."""

from __future__ import annotations

import pytest

from kukeon.runtime.containerd.errors import missing_mount_source

PREFIX = (
    "failed to create shim task: OCI runtime create failed: runc create failed: unable to "
    "start container process: error during container init: "
)


def refusal(quoted_source: str, quoted_target: str, raw_source: str) -> str:
    return (
        f'{PREFIX}error mounting "{quoted_source}" to rootfs at "{quoted_target}": '
        f"stat {raw_source}: no such file or directory: unknown"
    )


@pytest.mark.parametrize(
    ("quoted_source", "quoted_target", "raw_source", "source", "target"),
    [
        ("/srv/later", "/data", "/srv/later", "/srv/later", "/data"),
        ("/tmp/a\\nb", "/a\\nb", "/tmp/a\nb", "/tmp/a\nb", "/a\nb"),
        ('/tmp/say \\"hi\\"', "/q", '/tmp/say "hi"', '/tmp/say "hi"', "/q"),
        ("/tmp/ñ名🙂", "/u", "/tmp/ñ名🙂", "/tmp/ñ名🙂", "/u"),
        ("/tmp/a\\x00", "/x", "/tmp/a\x00", "/tmp/a\\x00", "/x"),  # kept as written
    ],
)
def test_the_paths_are_read_back(
    quoted_source: str, quoted_target: str, raw_source: str, source: str, target: str
) -> None:
    assert missing_mount_source(refusal(quoted_source, quoted_target, raw_source)) == (
        source,
        target,
    )


def test_another_failure_is_none() -> None:
    assert missing_mount_source(PREFIX + 'error mounting "/a" to rootfs at "/b": EPERM') is None
