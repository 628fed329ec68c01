"""kukectl cp, as kubectl and docker have it, and what port-forward shares with it.

``cp`` runs ``tar`` in the container through the cell's ``cp`` route (a WebSocket,
``kukeon.daemon.transfer``) and packs or unpacks on this side; what comes back from a
container is unpacked by :mod:`kukeon.cli.untar`, which checks every member.
``port-forward`` is :mod:`kukeon.cli.portforward`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import shutil
import sys
import tarfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import click

from kukeon.api import Kind
from kukeon.cancelling import cancel_and_wait
from kukeon.client.apiclient import ApiClient
from kukeon.client.paths import object_path

from .params import CONTAINER, scope_options
from .runner import EXIT_USAGE, fail, run, warning_line, write_stdout
from .untar import UnsafeArchiveError, container_target, extract, local_target

if TYPE_CHECKING:
    import aiohttp

CHUNK = 64 * 1024


def wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _later(loop: asyncio.AbstractEventLoop, message: str) -> None:
    """A warning from the unpacking thread, printed by the event loop."""
    loop.call_soon_threadsafe(warning_line, message)


def _remote(arg: str) -> tuple[str, str] | None:
    """``(cell, path)`` of ``CELL:PATH``, or None for a local path (``./a:b`` is local)."""
    cell, sep, path = arg.partition(":")
    if not sep or not cell or "/" in cell:
        return None
    return cell, path


async def upgrade_refusal(client: ApiClient, path: str, params: list[tuple[str, str]]) -> None:
    """The server's own reason for refusing an upgrade: the same request as a plain GET is
    refused for it (the routes check everything before the upgrade and start nothing
    without one), as a Status that ``request`` raises."""
    await client.request("GET", path, params=dict(params))


# --- cp -------------------------------------------------------------------------------------


@click.command("cp")
@click.argument("source")
@click.argument("destination")
@click.option(
    "--container", "-c", type=CONTAINER, help="Container (default: the cell's root container)."
)
@scope_options
@click.pass_context
def cp_command(
    ctx: click.Context,
    source: str,
    destination: str,
    container: str | None,
    realm: str,
    space: str,
    stack: str,
) -> None:
    """Copy files and directories between a container and this machine.

    \b
    Examples:
      kukectl cp web:/etc/nginx/nginx.conf ./nginx.conf
      kukectl cp web:/var/log ./logs            # a directory, modes kept
      kukectl cp ./site web:/usr/share/html/ -c nginx   # into the directory: .../html/site
      kukectl cp web:/var/log - | tar tv          # '-': a tar stream, as docker cp's
      tar c -C site . | kukectl cp - web:/usr/share/html  # unpacked in that directory

    Runs tar in the container (the image needs one). From a container: into DESTINATION
    when it is a directory here, else as DESTINATION. Into a container: into DESTINATION
    when it is a directory there (or ends in '/'), else as DESTINATION (its parent must
    exist). '-' is a tar archive on stdout or from stdin (a local file named '-' is ./-).
    """
    remote_source, remote_dest = _remote(source), _remote(destination)
    if (remote_source is None) == (remote_dest is None):
        fail(
            "exactly one of SOURCE and DESTINATION must be in a cell (CELL:PATH); "
            "write a local path with ':' as ./a:b",
            EXIT_USAGE,
        )
    params: list[tuple[str, str]] = [("container", container)] if container else []
    if remote_source is not None:
        cell, path = remote_source
        top = posixpath.basename(posixpath.normpath(path)) if path else ""
        if top in ("", ".", "..", "/"):
            fail(f"{source!r}: name a file or directory in the container", EXIT_USAGE)
        route = object_path(Kind.CELL, (realm, space, stack, cell), "cp")
        params += [("path", path), ("mode", "read")]
        if destination == "-":
            _tar_to_stdout(ctx, route, params, what=source)
            return
        target = local_target(Path(destination), top)
        if destination.endswith("/") and not Path(destination).is_dir():
            fail(f"{destination}: no such directory")
        if not target.parent.is_dir():
            fail(f"{target.parent}: no such directory (the copy's parent must exist)")

        async def download(client: ApiClient) -> None:
            await _download(client, route, params, top=top, target=target, what=source)

        run(ctx, download)
        return
    assert remote_dest is not None
    cell, path = remote_dest
    if source == "-":
        _tar_from_stdin(ctx, (realm, space, stack, cell), path, params, what=destination)
        return
    local = _local_source(source)
    name = Path(os.path.abspath(source)).name
    if not path or not name:
        fail(f"{source!r} -> {destination!r}: name a file or directory on both sides", EXIT_USAGE)
    target_path, name_in = container_target(path, name)
    base = posixpath.basename(posixpath.normpath(target_path))
    if base in ("", ".", "..", "/"):
        fail(f"{destination!r}: name a file or directory in the container", EXIT_USAGE)
    route = object_path(Kind.CELL, (realm, space, stack, cell), "cp")
    params += [("path", target_path), ("mode", "write")]
    if name_in is not None:
        params.append(("name", name_in))  # into DEST as this when it is a directory there

    async def upload(client: ApiClient) -> None:
        await _upload(
            client, route, params, fill=_packer(local, base), what=destination, source=source
        )

    run(ctx, upload)


def _local_source(source: str) -> Path:
    """The local file, directory or link a copy into a container packs."""
    local = Path(source)
    if not local.exists() and not local.is_symlink():
        fail(f"{source}: no such file or directory")
    if not (local.is_symlink() or local.is_file() or local.is_dir()):
        # A device or FIFO: the archive would skip it and the copy "succeed" with nothing
        # copied, where a download of one fails.
        fail(f"copying {source}: nothing was copied: only files, directories and links are")
    return local


def _tar_to_stdout(
    ctx: click.Context, route: str, params: list[tuple[str, str]], *, what: str
) -> None:
    """``cp CELL:PATH -``: tar's archive of PATH on stdout as it comes, as ``docker cp``
    writes it (``| tar x`` unpacks it; members are named from PATH's last component)."""
    if sys.stdout.isatty():
        fail("'-' writes a tar archive to stdout: pipe or redirect it (| tar x)", EXIT_USAGE)

    async def on_data(data: bytes) -> bool:
        write_stdout(data)
        return True

    async def download(client: ApiClient) -> None:
        failure = _tar_failure(what, await _session(client, route, params, on_data, None))
        if failure is not None:
            fail(failure)

    run(ctx, download)


def _tar_from_stdin(
    ctx: click.Context,
    cell: tuple[str, str, str, str],
    directory: str,
    params: list[tuple[str, str]],
    *,
    what: str,
) -> None:
    """``cp - CELL:DIR``: a tar archive read from stdin, unpacked in DIR by tar in the
    container, as ``docker cp -`` does."""
    if not directory:
        fail(f"{what!r}: name the directory in the container to unpack into", EXIT_USAGE)
    if sys.stdin.isatty():
        fail("'-' reads a tar archive from stdin: pipe or redirect one in", EXIT_USAGE)
    route = object_path(Kind.CELL, cell, "cp")
    # The route unpacks beside its path: a name in DIR puts the archive's members in DIR.
    params = [*params, ("path", posixpath.join(directory, "-")), ("mode", "write")]

    async def upload(client: ApiClient) -> None:
        await _upload(client, route, params, fill=_copy_stdin, what=what, source="stdin")

    run(ctx, upload)


class _Outcome(NamedTuple):
    status: dict[str, Any] | None
    stderr: bytes


def _tar_failure(what: str, outcome: _Outcome) -> str | None:
    """Why the copy failed on the container's side, or None when tar succeeded."""
    status = outcome.status
    said = outcome.stderr.decode(errors="replace").strip().replace("\n", "; ")
    if status is None:
        return f"copying {what}: the stream ended before tar in the container finished"
    if "error" in status:
        return f"copying {what}: {status['error']}"
    code = int(status.get("exitCode", 1))
    if code != 0:
        return f"copying {what}: tar in the container failed (exit {code})" + (
            f": {said}" if said else ""
        )
    return None


async def _session(
    client: ApiClient,
    route: str,
    params: list[tuple[str, str]],
    on_data: Callable[[bytes], Awaitable[bool]] | None,
    sender: Callable[[aiohttp.ClientWebSocketResponse], Any] | None,
) -> _Outcome:
    """One cp stream: data (channel 1) to ``on_data`` (which returns False to stop: the
    stream is then closed, tar is killed), ``sender`` writing channel 0, tar's stderr and
    status collected."""
    import aiohttp  # only the commands that open a WebSocket load it

    stderr = bytearray()
    status: dict[str, Any] | None = None
    try:
        socket = await client.websocket(route, params=params)
    except aiohttp.WSServerHandshakeError as error:
        await upgrade_refusal(client, route, params)
        fail(f"cp refused by the server: HTTP {error.status} {error.message}")
    sending: asyncio.Future[Any] | None = None
    try:
        if sender is not None:
            sending = asyncio.ensure_future(sender(socket))
        async for message in socket:
            if message.type is not aiohttp.WSMsgType.BINARY:
                if message.type is aiohttp.WSMsgType.ERROR:
                    break
                continue
            channel, payload = message.data[:1], message.data[1:]
            if channel == b"\x01" and on_data is not None:
                if not await on_data(payload):
                    break
            elif channel == b"\x02":
                stderr += payload
            elif channel == b"\x03":
                status = json.loads(payload)
                break
    finally:
        try:
            if sending is not None:
                await cancel_and_wait(sending)
        finally:
            await socket.close()
    return _Outcome(status, bytes(stderr))


async def _write_fd(fd: int, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
            continue
        except BlockingIOError:
            pass
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_writer(fd, wake, ready)
        try:
            await ready
        finally:
            loop.remove_writer(fd)


async def _download(
    client: ApiClient,
    route: str,
    params: list[tuple[str, str]],
    *,
    top: str,
    target: Path,
    what: str,
) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    loop = asyncio.get_running_loop()
    unpacked: asyncio.Future[Any] = loop.create_future()

    def unpack() -> None:
        try:
            with os.fdopen(read_fd, "rb") as stream:
                result: Any = extract(stream, top=top, dest=target, warn=lambda m: _later(loop, m))
        except BaseException as error:  # handed to the event loop, which decides
            result = error
        # A loop already closed has nobody waiting (kukectl is ending): nothing to hand.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(unpacked.set_result, result)

    stopped = False

    async def on_data(data: bytes) -> bool:
        nonlocal stopped
        try:
            await _write_fd(write_fd, data)
        except BrokenPipeError:
            stopped = True  # the unpacking stopped: it says why
        return not stopped

    unpacking = threading.Thread(target=unpack, name="kukectl-cp-unpack", daemon=True)
    unpacking.start()
    try:
        outcome = await _session(client, route, params, on_data, None)
    except BaseException:
        # The session failed (no server, interrupted): the unpacking sees the pipe's end
        # and stops before kukectl says why, writing nothing more behind its message.
        os.close(write_fd)
        with contextlib.suppress(BaseException):
            await asyncio.shield(unpacked)
            unpacking.join()  # it handed its result: only its return is left
        raise
    os.close(write_fd)
    result = await unpacked
    unpacking.join()
    failure = _tar_failure(what, outcome)
    if isinstance(result, UnsafeArchiveError):
        fail(f"refusing what the cell sent for {what}: {result} (stopped; what came before stays)")
    if stopped and isinstance(result, BaseException):
        failure = None  # the unpacking ended the stream: its own error says why
    if failure is not None:
        fail(failure)
    if isinstance(result, tarfile.ReadError):
        fail(f"copying {what}: the container sent no usable tar stream: {result}")
    if isinstance(result, OSError):
        fail(f"copying {what} to {target}: {result}")
    if isinstance(result, BaseException):
        fail(f"copying {what}: {type(result).__name__}: {result}")
    if result.written == 0:
        fail(f"copying {what}: nothing was copied")


_Fill = Callable[[IO[bytes], asyncio.AbstractEventLoop], None]
"""Writes the tar stream to send into its stream (in a thread; warnings through the loop)."""


def _packer(local: Path, base: str) -> _Fill:
    """A tar of ``local`` whose top member is ``base``, owned by root."""

    def fill(stream: IO[bytes], loop: asyncio.AbstractEventLoop) -> None:
        def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
                loop.call_soon_threadsafe(
                    warning_line,
                    f"skipping {info.name}: only files, directories and links are copied",
                )
                return None
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.GNU_FORMAT) as archive:
            archive.add(str(local), arcname=base, filter=owned_by_root)

    return fill


def _copy_stdin(stream: IO[bytes], loop: asyncio.AbstractEventLoop) -> None:
    """The tar archive on stdin, as it is (tar in the container reads and checks it)."""
    shutil.copyfileobj(sys.stdin.buffer, stream, CHUNK)


async def _upload(
    client: ApiClient,
    route: str,
    params: list[tuple[str, str]],
    *,
    fill: _Fill,
    what: str,
    source: str,
) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    loop = asyncio.get_running_loop()
    packed: asyncio.Future[BaseException | None] = loop.create_future()

    def pack() -> None:
        error: BaseException | None = None
        try:
            with os.fdopen(write_fd, "wb") as stream:
                fill(stream, loop)
        except BaseException as caught:  # handed to the event loop
            error = caught
        loop.call_soon_threadsafe(packed.set_result, error)

    async def send(socket: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            try:
                data = os.read(read_fd, CHUNK)
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(read_fd, wake, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(read_fd)
                continue
            await socket.send_bytes(b"\x00" + data)  # empty at the end: end of input
            if not data:
                return

    threading.Thread(target=pack, name="kukectl-cp-pack", daemon=True).start()
    try:
        outcome = await _session(client, route, params, None, send)
    finally:
        os.close(read_fd)  # a packing still going gets EPIPE and stops
    failure = _tar_failure(what, outcome)
    if failure is not None:
        # Not waiting for the packing first: one reading stdin may wait for input forever.
        fail(failure)
    error = await packed
    if error is not None:
        fail(f"reading {source}: {error}")
