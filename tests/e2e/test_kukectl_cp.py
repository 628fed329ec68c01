"""`kukectl cp` and `kukectl port-forward` as a user runs them, against a real kukeond and
busybox cells: a directory into a cell and back with its modes, a file into a local
directory, a link in the container that points out skipped, the errors (no such path, an
image without tar), and an httpd in a cell reached through a local port."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Kind
from tests.fixtures.kukectl import KUKECTL, kukectl
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import SLEEPER, cell_doc, cell_key

pytestmark = pytest.mark.e2e

HTTPD = (
    "mkdir -p /www && echo hello-through-kukectl > /www/index.html && exec httpd -f -p 8080 -h /www"
)


async def _cell(k: Kukeond, name: str, args: list[str], **fields: Any) -> list[str]:
    main = {"id": "main", "image": k.image.name, "command": "sh", "args": args, **fields}
    await k.apply(cell_doc(k, name, [main]))
    await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready")
    return ["--realm", k.realm, "--space", "s1", "--stack", "st1"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


async def test_cp_both_ways_keeps_contents_and_modes(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    await k.hierarchy()
    scope = await _cell(k, "box", SLEEPER)
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "run.sh").write_text("#!/bin/sh\necho run\n")
    (site / "secret").write_bytes(os.urandom(200_000))
    (site / "sub" / "page.html").write_text("<h1>hi</h1>\n")
    (site / "run.sh").chmod(0o755)
    (site / "secret").chmod(0o600)
    (site / "sub").chmod(0o750)

    code, out, err = await kukectl(k, "cp", str(site), "box:/tmp/", *scope)  # into /tmp
    assert (code, out, err) == (0, "", "")
    code, out, _ = await kukectl(
        k, "exec", "box", *scope, "--", "sh", "-c", "stat -c '%a %u %n' /tmp/site/* | sort"
    )
    assert code == 0
    assert sorted(out.splitlines()) == [
        "600 0 /tmp/site/secret",
        "750 0 /tmp/site/sub",
        "755 0 /tmp/site/run.sh",
    ]

    back = tmp_path / "back"  # does not exist: becomes the copy
    code, out, err = await kukectl(k, "cp", "box:/tmp/site", str(back), *scope)
    assert (code, err) == (0, "")
    for name in ("run.sh", "secret", "sub/page.html"):
        assert (back / name).read_bytes() == (site / name).read_bytes()
        assert _mode(back / name) == _mode(site / name)
    assert _mode(back / "sub") == 0o750

    # A file into an existing local directory lands inside it, as cp(1) and docker cp.
    code, _, err = await kukectl(k, "cp", "box:/etc/passwd", str(tmp_path), *scope)
    assert (code, err) == (0, "")
    assert (tmp_path / "passwd").read_text().startswith("root:x:0:0:")
    # ... and a file given a new name in the container.
    code, _, err = await kukectl(k, "cp", str(site / "run.sh"), "box:/tmp/renamed.sh", *scope)
    assert (code, err) == (0, "")
    code, out, _ = await kukectl(k, "exec", "box", *scope, "--", "/tmp/renamed.sh")
    assert (code, out) == (0, "run\n")


async def test_cp_into_an_existing_directory_copies_inside_it(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """As docker cp and kubectl cp: DEST a directory in the container (a link to one
    followed inside the container only) gets the copy inside it under SRC's name; an absent
    DEST is the copy. Before, a directory's files were merged into DEST, and a file onto a
    directory failed ('not every file could be put in place: dst: Is a directory')."""
    k = kukeond
    await k.hierarchy()
    scope = await _cell(k, "box", SLEEPER)
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hi\n")
    (tmp_path / "run.sh").write_text("run\n")
    both = tmp_path / "both"  # on the host, and at the same path in the box
    host_only = tmp_path / "host-only"  # on the host only
    both.mkdir()
    host_only.mkdir()
    script = (
        f"mkdir -p /srv/dst /data {both} && ln -s /data /srv/to-data "
        f"&& ln -s ../../../../../../../{both} /srv/out-both && ln -s {host_only} /srv/out-host"
    )
    code, _, err = await kukectl(k, "exec", "box", *scope, "--", "sh", "-c", script)
    assert code == 0, err
    for source, dest in (
        (site, "box:/srv/dst"),  # a directory into an existing one: /srv/dst/site
        (tmp_path / "run.sh", "box:/srv/dst"),  # a file: /srv/dst/run.sh
        (site, "box:/srv/new"),  # no such DEST: the copy is /srv/new
        (site, "box:/srv/to-data"),  # a link to /data: /data/site
        (tmp_path / "run.sh", "box:/srv/out-both"),  # the box's own {both}/run.sh
        (tmp_path / "run.sh", "box:/srv/out-host"),  # no such directory in the box
        (tmp_path / "run.sh", "box:."),  # the working directory (/): /run.sh
    ):
        code, out, err = await kukectl(k, "cp", str(source), dest, *scope)
        assert (code, out, err) == (0, "", ""), dest
    show = (
        "cd /srv && find dst new /data | sort && cat /run.sh "
        f"{both}/run.sh out-host && ls -ld out-host | cut -c1"
    )
    code, out, err = await kukectl(k, "exec", "box", *scope, "--", "sh", "-c", show)
    assert code == 0, err
    assert out.split() == [
        "/data",
        "/data/site",
        "/data/site/index.html",
        "dst",
        "dst/run.sh",
        "dst/site",
        "dst/site/index.html",
        "new",
        "new/index.html",
        *["run"] * 3,
        "-",  # the link that led nowhere in the box is replaced by the copy
    ]
    assert list(both.iterdir()) == []
    assert list(host_only.iterdir()) == []


async def test_cp_skips_links_that_leave_the_destination(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    await k.hierarchy()
    scope = await _cell(k, "box", SLEEPER)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    script = (
        f"mkdir -p /tmp/d && echo ok > /tmp/d/file && ln -s {victim} /tmp/d/escape "
        "&& ln -s ../../../../../../etc /tmp/d/up && ln -s file /tmp/d/inside"
    )
    code, _, _ = await kukectl(k, "exec", "box", *scope, "--", "sh", "-c", script)
    assert code == 0
    code, _, err = await kukectl(k, "cp", "box:/tmp/d", str(tmp_path / "out"), *scope)
    assert code == 0, err
    assert "warning: skipping symbolic link d/escape" in err
    assert "warning: skipping symbolic link d/up" in err
    assert not (tmp_path / "out" / "escape").exists()
    assert not (tmp_path / "out" / "up").is_symlink()
    assert os.readlink(tmp_path / "out" / "inside") == "file"
    assert victim.read_text() == "precious"


async def test_cp_errors_are_one_line_and_exit_1(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    await k.hierarchy()
    scope = await _cell(k, "box", SLEEPER)
    code, _, err = await kukectl(k, "cp", "box:/nope", str(tmp_path / "x"), *scope)
    assert code == 1
    assert "No such file or directory" in err
    assert not (tmp_path / "x").exists()

    code, _, err = await kukectl(k, "cp", str(tmp_path / "missing"), "box:/tmp/x", *scope)
    assert code == 1
    assert "no such file or directory" in err

    code, _, err = await kukectl(k, "cp", "a", "b", *scope)  # neither side in a cell
    assert code == 2

    code, _, err = await kukectl(k, "cp", "ghost:/etc/hosts", str(tmp_path), *scope)
    assert code == 1
    assert "ghost' not found" in err

    code, _, _ = await kukectl(k, "exec", "box", *scope, "--", "rm", "/bin/tar")
    assert code == 0
    code, _, err = await kukectl(k, "cp", "box:/etc/passwd", str(tmp_path / "p"), *scope)
    assert code == 1
    assert "has no tar" in err
    assert len(err.strip().splitlines()) == 1


def _tar_of(files: dict[str, str]) -> bytes:
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as archive:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    return packed.getvalue()


async def test_cp_dash_is_a_tar_stream_both_ways_as_docker_cp(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """`cp - CELL:DIR` unpacks a tar read from stdin in DIR; `cp CELL:PATH -` writes PATH's
    tar to stdout. Both wrote or read a local file named '-' before."""
    k = kukeond
    await k.hierarchy()
    scope = await _cell(k, "tarbox", SLEEPER)
    sent = _tar_of({"notes/a.txt": "alpha\n", "notes/b.txt": "beta\n"})
    code, out, err = await kukectl(k, "cp", "-", "tarbox:/tmp", *scope, stdin=sent)
    assert (code, out, err) == (0, "", "")
    code, out, _ = await kukectl(k, "exec", "tarbox", *scope, "--", "cat", "/tmp/notes/b.txt")
    assert (code, out) == (0, "beta\n")

    code, out, err = await kukectl(k, "cp", "tarbox:/tmp/notes", "-", *scope)
    assert (code, err) == (0, "")
    got: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(out.encode()), mode="r") as archive:
        for member in archive:
            if (reader := archive.extractfile(member)) is not None:  # a directory has none
                got[member.name] = reader.read()
    assert got == {"notes/a.txt": b"alpha\n", "notes/b.txt": b"beta\n"}

    code, _, err = await kukectl(k, "cp", "tarbox:/nope", "-", *scope)
    assert code == 1
    assert "No such file or directory" in err
    code, _, err = await kukectl(k, "cp", "-", "tarbox:/tmp", *scope, stdin=b"no tar here\n")
    assert code == 1
    assert "the stream is not a tar archive kukeond can read" in err  # before tar sees it
    code, _, err = await kukectl(k, "cp", "-", "tarbox:", *scope, stdin=sent)
    assert code == 2


async def test_port_forward_reaches_an_httpd_in_the_cell(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    # Ready once httpd listens (the task's start is earlier: at load, seconds earlier).
    listening = {"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}
    scope = await _cell(k, "web", ["-c", HTTPD], **listening)
    env = {**os.environ, "KUKEON_SERVER": f"unix://{k.config.api_socket}"}
    process = await asyncio.create_subprocess_exec(
        KUKECTL,
        "port-forward",
        "cell/web",  # kubectl's pod/web (it took the bare name only)
        ":8080",
        *scope,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        match = re.fullmatch(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8080\n", line)
        assert match, line
        port = int(match.group(1))
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /index.html HTTP/1.0\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 15)
            writer.close()
            assert answer.startswith(b"HTTP/1.")
            assert answer.endswith(b"hello-through-kukectl\n")
            handled = await asyncio.wait_for(process.stdout.readline(), 5)
            assert handled == f"Handling connection for {port}\n".encode()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    code, _, err = await kukectl(k, "port-forward", "web", "99999", *scope)
    assert code == 2
    assert "1-65535" in err
    code, _, err = await kukectl(k, "port-forward", "ghost", "80", *scope)
    assert code == 1
    assert "ghost' not found" in err
    code, _, err = await kukectl(k, "port-forward", "cellset/ghost", "80", *scope)
    assert code == 1
    assert "ghost' not found" in err


def _evil_tar(outside: Path) -> bytes:
    """What a hostile container's tar might send for `x`: a link to a host directory, a
    file through it, a name climbing out, an absolute name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        directory = tarfile.TarInfo("x")
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
        link = tarfile.TarInfo("x/link")
        link.type = tarfile.SYMTYPE
        link.linkname = str(outside)
        archive.addfile(link)
        for name in ("x/link/through-link", "x/../../climbed", str(outside / "absolute")):
            info = tarfile.TarInfo(name)
            info.size = 5
            archive.addfile(info, io.BytesIO(b"pwned"))
    return buffer.getvalue()


async def test_a_hostile_containers_tar_writes_nothing_outside(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    await k.hierarchy()
    scope = await _cell(k, "box", SLEEPER)
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = tmp_path / "evil.tar"
    evil.write_bytes(_evil_tar(outside))
    code, _, err = await kukectl(k, "cp", str(evil), "box:/evil.tar", *scope)
    assert code == 0, err
    # The container's owner replaces tar with something that sends that stream.
    script = "rm /bin/tar && printf '#!/bin/sh\\ncat /evil.tar\\n' > /bin/tar && chmod +x /bin/tar"
    code, _, err = await kukectl(k, "exec", "box", *scope, "--", "sh", "-c", script)
    assert code == 0, err

    workdir = tmp_path / "work"
    workdir.mkdir()
    code, _, err = await kukectl(k, "cp", "box:/x", str(workdir / "copy"), *scope)
    assert code == 1
    assert "warning: skipping symbolic link x/link" in err
    assert "refusing what the cell sent for box:/x" in err
    assert "'..' component" in err
    assert list(outside.iterdir()) == []
    for above in (tmp_path, tmp_path.parent, workdir, workdir / "copy"):
        assert not (above / "climbed").exists()
    # The link was not made; the file meant to go through it stayed inside, as a file.
    assert (workdir / "copy" / "link" / "through-link").read_bytes() == b"pwned"
    assert sorted(p.name for p in workdir.iterdir()) == ["copy"]


async def test_port_forward_ends_when_the_cell_is_deleted(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    scope = await _cell(k, "web", ["-c", HTTPD])
    env = {**os.environ, "KUKEON_SERVER": f"unix://{k.config.api_socket}"}
    process = await asyncio.create_subprocess_exec(
        KUKECTL,
        "port-forward",
        "web",
        ":8080",
        "--address",
        "localhost",
        *scope,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("Forwarding from 127.0.0.1:"), line
        await k.registry.delete(Kind.CELL, cell_key(k, "web"))
        assert await asyncio.wait_for(process.wait(), 60) == 1
        assert process.stderr is not None
        err = (await process.stderr.read()).decode()
        assert "cell/web was deleted" in err
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
