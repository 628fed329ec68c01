"""What kukectl reads of one manifest source (and of ``--patch-file``, ``--env-file``) is
bounded: ``create -f /dev/zero`` or a pipe that never closes read for ever and took memory
until the host had none; now the source is named with the limit (exit 2, as a bad manifest
file is reported)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from kukeon.cli.manifests import read_sources
from kukeon.cli.readlimit import MAX_SOURCE_BYTES, TooLarge, read_limited, size_text
from kukeon.cli.runner import EXIT_USAGE, ManifestProblems

NOWHERE = ["--server", "unix:///nonexistent/kukeond.sock"]


class Endless(io.RawIOBase):
    """A stream that never ends, as ``yes`` on a pipe: counts what was read of it."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        view[:] = b"y" * len(view)
        self.given += len(view)
        return len(view)


@pytest.mark.parametrize("command", ["create", "apply", "diff", "delete"])
def test_an_endless_file_is_named_with_the_limit(command: str) -> None:
    result = CliRunner().invoke(cli, [*NOWHERE, command, "-f", "/dev/zero"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "/dev/zero: over 64 MiB, the most kukectl reads of one manifest source" in result.output


def test_an_endless_stdin_stops_at_the_limit() -> None:
    endless = Endless()
    with pytest.raises(ManifestProblems) as info:
        read_sources(["-"], stdin=io.TextIOWrapper(io.BufferedReader(endless)))
    assert info.value.lines == [
        "<stdin>: over 64 MiB, the most kukectl reads of one manifest source"
    ]
    assert endless.given <= MAX_SOURCE_BYTES + 2 * 1024 * 1024  # one chunk and a buffer past


def test_a_source_at_the_limit_is_read_whole() -> None:
    assert read_limited(io.BytesIO(b"x" * 10), 10) == "x" * 10
    with pytest.raises(TooLarge, match="over 10 bytes"):
        read_limited(io.BytesIO(b"x" * 11), 10)
    with pytest.raises(TooLarge):
        read_limited(io.StringIO("x" * 11), 10)


def test_text_is_read_as_path_read_text_reads_it(tmp_path: Path) -> None:
    """Universal newlines, a byte-order mark kept (the YAML reader drops it), and a bad
    byte's offset counted from the start of the file, past the first chunk too."""
    crlf = tmp_path / "crlf.yaml"
    crlf.write_bytes(b"\xef\xbb\xbfkind: Realm\r\nmetadata:\r  name: a\n")
    (source,) = read_sources([str(crlf)])
    assert source.text == crlf.read_text(encoding="utf-8")
    assert read_limited(io.BytesIO(b"a\r\nb"), newlines=False) == "a\r\nb"
    late = tmp_path / "late.yaml"
    late.write_bytes(b"#" * (3 * 1024 * 1024) + b"\xbd")
    with pytest.raises(ManifestProblems, match=f"byte 0xbd at offset {3 * 1024 * 1024}"):
        read_sources([str(late)])


def test_a_patch_file_and_an_env_file_are_bounded() -> None:
    patch = CliRunner().invoke(cli, [*NOWHERE, "patch", "cell", "c1", "--patch-file", "/dev/zero"])
    assert patch.exit_code == EXIT_USAGE, patch.output
    assert "--patch-file /dev/zero: cannot read it: over 64 MiB" in patch.output
    run = CliRunner().invoke(
        cli, [*NOWHERE, "run", "c1", "--image", "i", "--env-file", "/dev/zero"]
    )
    assert run.exit_code == EXIT_USAGE, run.output
    assert "--env-file /dev/zero: cannot read it: over 64 MiB" in run.output


def test_a_patch_file_on_stdin_is_read() -> None:
    result = CliRunner().invoke(
        cli,
        [*NOWHERE, "patch", "cell", "c1", "--patch-file", "-"],
        input="{metadata: {labels: {a: b}}}",
    )
    assert "cannot reach the kukeon API" in result.output  # read, parsed, sent


def test_sizes_read_as_a_person_reads_them() -> None:
    assert [size_text(n) for n in (MAX_SOURCE_BYTES, 1024, 1536, 3)] == [
        "64 MiB",
        "1 KiB",
        "1536 bytes",
        "3 bytes",
    ]
