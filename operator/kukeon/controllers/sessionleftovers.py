"""What the sessions of a kukeond that died left: processes exec'd into containers, and
their FIFO directories.

An exec (``kukectl exec``), a copy (``kukectl cp``, a tar) and an exec probe each run a
process in a container and end it when they end (``TaskService.end_process``), whatever
ends them. They are kukeond's coroutines, though: a kukeond killed (``kill -9``, the OOM
killer, a crash) ends them without that, and their processes ran on in the container for
ever (a shell at its prompt, a ``sleep``, a tar waiting on its input, a probe command that
hangs), each with the FIFO directory it was given under the state directory. Nothing ended
them later: the orphan collector looks at containers, not at their processes.

At start, before the API listens and before any cell's pass starts a probe, no session of
this process exists: every process of this node's containers with a session's exec id is
a dead session's, and is ended (SIGKILL, waited for, deleted) with its directory. Only
this installation's containers are looked at (their labels), so another control plane's
sessions on the same host are left alone, whichever of the two holds the node's name.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from kukeon.runtime.containerd.errors import ContainerdError, NotFoundError

from .gc import list_node_containers
from .host import Host

log = logging.getLogger(__name__)

SESSION_EXEC_PREFIXES = ("exec-", "cp-", "probe-")
"""The exec ids of sessions: the exec route's, the copy route's, an exec probe's."""
SESSION_DIRECTORIES = ("exec", "probes")
"""Under the state directory: the sessions' FIFO directories (exec and cp; probes)."""


async def end_dead_sessions(host: Host) -> None:
    """End the processes and remove the FIFO directories the sessions of an earlier
    kukeond left, and say what went. Only at start: a session of this process would be
    ended too. A failure is logged: it must not keep the node down."""
    try:
        ended = await _end_dead_sessions(host)
    except (ContainerdError, OSError) as error:
        log.warning("ending the exec sessions of an earlier kukeond failed: %s", error)
        return
    except Exception:
        log.exception("ending the exec sessions of an earlier kukeond failed")
        return
    if ended:
        log.warning(
            "ended what exec, cp and probe sessions a crash cut short left "
            "(processes as <container>/<exec id>, FIFO directories): %s",
            ", ".join(ended),
        )


async def _end_dead_sessions(host: Host) -> list[str]:
    """What went: ``<container>/<exec id>`` of each process, each directory."""
    ended: list[str] = []
    for namespace, container in await list_node_containers(host):
        tasks = host.containerd.tasks(namespace)
        try:
            exec_ids = await tasks.exec_ids(container.id)
        except NotFoundError:
            continue  # no task: nothing runs in it
        except ContainerdError as error:
            log.warning("listing the processes of %s failed: %s", container.id, error)
            continue
        for exec_id in exec_ids:
            if not exec_id.startswith(SESSION_EXEC_PREFIXES):
                continue
            waiting = asyncio.ensure_future(tasks.wait(container.id, exec_id=exec_id))
            await tasks.end_process(container.id, exec_id, waiting)
            ended.append(f"{container.id}/{exec_id}")
    state = Path(host.settings.state_dir)
    ended.extend(await asyncio.to_thread(_remove_directories, state, SESSION_DIRECTORIES))
    return ended


def _remove_directories(state: Path, names: Sequence[str]) -> list[str]:
    removed: list[str] = []
    for name in names:
        parent = state / name
        if not parent.is_dir():
            continue
        for directory in parent.iterdir():
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(str(directory))
    return removed
