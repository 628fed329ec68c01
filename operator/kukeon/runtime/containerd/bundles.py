"""A task's bundle that containerd left behind after forgetting the task: cleared as
containerd itself clears the bundle of a dead shim.

containerd 1.6 makes a task's bundle directory (``<state>/io.containerd.runtime.v2.task/
<namespace>/<id>``) with a plain ``mkdir`` when the task is created. When a create fails
after its shim started (its caller's request was cut: kukeond killed with ``-9`` or a
deadline), containerd takes the task off its list and tears the shim down; once the shim
has gone, its ``cleanupAfterDeadShim`` runs the shim binary's ``delete`` (``runc delete
--force``, the rootfs unmounted) under a 5 s timeout (``io.containerd.timeout.shim.cleanup``)
and removes the bundle only if that succeeded. On a loaded machine, or a shim's
``delete`` refused, it does not, and the directory stays: every later create of that
container id fails at the ``mkdir`` (``failed to start shim: mkdir ...: file exists``),
for as long as containerd runs; containerd only looks at such a bundle again at its own
restart (``loadShims``: the same ``delete``, then the bundle removed). Reproduced with a
shim whose ``delete`` outlived the 5 s (tests/integration/containerd/test_leftover_bundle.py).

:func:`clear_leftover_bundle` does what that restart does, and only for a bundle the
refusal itself names: containerd checks that it holds no task of that id before its
``mkdir``, so the refusal proves containerd has forgotten the task. A shim still serving
the bundle (containerd forgot it and closed its connection, the shim did not exit) is
asked to exit once that ``delete`` has removed its container.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Final

from kukeon.processes import identify, run_program
from kukeon.runtime.containerd.namespacedirs import TASK_PLUGIN_DIR
from kukeon.runtime.containerd.shims import find_shims, stop_shim

log = logging.getLogger(__name__)

_LEFTOVER: Final = re.compile(r"failed to start shim: mkdir (?P<path>/\S+): file exists")
SHIM_DELETE_SECONDS: Final = 60.0
"""How long the shim binary's ``delete`` may take here: containerd gives it 5 s, too few
on a loaded machine, which is how the bundle was left."""
_SHIM_EXIT_SECONDS: Final = 5.0


class LeftoverBundleError(Exception):
    """A leftover bundle that could not be cleared; the create stays refused."""


def leftover_bundle(detail: str, *, namespace: str, container_id: str) -> Path | None:
    """The bundle directory a refused create names as already there, when it is the
    bundle of ``container_id`` in ``namespace``; None for any other refusal."""
    match = _LEFTOVER.search(detail)
    if match is None:
        return None
    path = Path(match["path"])
    if (
        path.name != container_id
        or path.parent.name != namespace
        or path.parent.parent.name != TASK_PLUGIN_DIR
    ):
        return None
    return path


def _shim_binary(bundle: Path, runtime: str) -> str:
    """The shim containerd started for the bundle (its ``shim-binary-path``), else the
    container's runtime resolved as containerd resolves it (``io.containerd.runc.v2`` is
    ``containerd-shim-runc-v2`` on the PATH)."""
    with contextlib.suppress(OSError):
        recorded = (bundle / "shim-binary-path").read_text().strip()
        if recorded:
            return recorded
    if os.path.isabs(runtime):
        return runtime
    parts = runtime.split(".")
    if len(parts) < 4:
        raise LeftoverBundleError(f"runtime {runtime!r}: no shim binary name")
    name = f"containerd-shim-{parts[-2]}-{parts[-1]}"
    found = shutil.which(name)
    if found is None:
        raise LeftoverBundleError(f"runtime {runtime!r}: {name} is not on the PATH")
    return found


def _unmount_all(target: Path) -> None:
    """Every mount on ``target`` undone, as containerd's ``mount.UnmountAll``."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(64):
        if libc.umount2(os.fsencode(target), 0) == 0:
            continue
        error = ctypes.get_errno()
        if error in (errno.EINVAL, errno.ENOENT):
            return  # not a mount point (any more), or not there
        raise OSError(error, os.strerror(error), str(target))
    raise OSError(errno.EBUSY, "still mounted after 64 unmounts", str(target))


def _atomic_delete(path: Path) -> None:
    """Renamed to a hidden name, then removed, as containerd's ``atomicDelete``."""
    hidden = path.with_name(f".{path.name}")
    try:
        path.rename(hidden)
    except FileNotFoundError:
        return
    shutil.rmtree(hidden)


def delete_bundle(bundle: Path) -> None:
    """containerd's ``Bundle.Delete``: the rootfs unmounted and removed, the bundle and its
    work directory (the ``work`` link's target) removed."""
    try:
        work: Path | None = Path(os.readlink(bundle / "work"))
    except OSError:
        work = None
    rootfs = bundle / "rootfs"
    _unmount_all(rootfs)
    with contextlib.suppress(FileNotFoundError):
        rootfs.rmdir()
    _atomic_delete(bundle)
    if work is not None:
        _atomic_delete(work)


async def _stop_forgotten_shim(address: str, namespace: str, container_id: str) -> None:
    """A shim of this bundle still running is asked to exit, and waited for. containerd
    closed its connection to it when the create failed (it takes a disconnected shim for
    dead: ``cleanupAfterDeadShim``), so nothing can start what it holds: the container the
    shim made is gone with the ``delete`` run before; its logger, a child still, ends
    when the shim's pipes close."""
    shims = [
        shim
        for shim in await asyncio.to_thread(find_shims, address)
        if shim.namespace == namespace and shim.container_id == container_id
    ]
    for shim in shims:
        await asyncio.to_thread(functools.partial(stop_shim, shim, even_busy=True))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _SHIM_EXIT_SECONDS
    for shim in shims:
        while await asyncio.to_thread(identify, shim.process.pid) == shim.process:
            if loop.time() > deadline:
                raise LeftoverBundleError(f"its shim (pid {shim.process.pid}) did not exit")
            await asyncio.sleep(0.05)


async def clear_leftover_bundle(
    bundle: Path, *, address: str, namespace: str, container_id: str, runtime: str
) -> None:
    """Clear a bundle containerd left of a task it no longer holds, as containerd's
    restart does: the shim binary's ``delete`` run in it (``runc delete --force``, the
    rootfs unmounted), a shim of it still running asked to exit, then the bundle removed.
    :class:`LeftoverBundleError` when it cannot be (the bundle is then left, with its
    container deleted or not)."""
    if await asyncio.to_thread((bundle / "runtime").exists):
        await _shim_delete(
            bundle, address=address, namespace=namespace, container_id=container_id, runtime=runtime
        )
    # else the shim never made the container (its create writes that file first): nothing
    # to delete but the bundle, as containerd's own failed shim start removes it.
    await _stop_forgotten_shim(address, namespace, container_id)
    try:
        await asyncio.to_thread(delete_bundle, bundle)
    except OSError as error:
        raise LeftoverBundleError(f"removing it: {error}") from error
    log.warning(
        "task %s/%s: cleared the bundle containerd left of a cut create (%s)",
        namespace,
        container_id,
        bundle,
    )


async def _shim_delete(
    bundle: Path, *, address: str, namespace: str, container_id: str, runtime: str
) -> None:
    """The shim binary's ``delete``, run in the bundle as containerd runs it."""
    shim = await asyncio.to_thread(_shim_binary, bundle, runtime)
    containerd = await asyncio.to_thread(shutil.which, "containerd")
    argv = [
        shim,
        "-namespace", namespace,
        "-address", address,
        "-publish-binary", containerd or "containerd",
        "-id", container_id,
        "-bundle", str(bundle),
        "delete",
    ]  # fmt: skip
    env = {**os.environ, "GOMAXPROCS": "2", "TTRPC_ADDRESS": f"{address}.ttrpc"}
    try:
        async with asyncio.timeout(SHIM_DELETE_SECONDS):
            done = await run_program(argv, env=env, cwd=bundle)
    except (OSError, TimeoutError) as error:
        raise LeftoverBundleError(f"{shim} delete: {error or 'timed out'}") from error
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()[-500:]
        raise LeftoverBundleError(f"{shim} delete failed ({done.returncode}): {said}")
