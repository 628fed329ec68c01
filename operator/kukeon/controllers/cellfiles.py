"""Where a cell's files live in the state directory, and the secrets staged for it.

```
<state-dir>/cells/<realm>/<space>/<stack>/<cell>/
    hosts, hostname            rendered, bind-mounted into every container
    logs/<container>.log       stdout and stderr of the container's task (its TTY's output
                               for an attachable container)
    tty/<container>/stdin      the FIFO an attachable container's terminal reads
    tty/<container>/run/       the tty wrapper's state, bind-mounted at /run/kukeon/tty
                               (the onInit create marker), owned by the container's user
    tty/<container>/spec-digest  the spec the marker in run/ belongs to
    secrets/<container>/<n>    secret files (0400), bind-mounted read-only
```

One directory per cell, so deleting a cell removes exactly its files, and the API server
finds a container's log without asking the daemon. Directories are ``0750`` and log files
``0640``, root's (see :mod:`kukeon.runtime.hostfiles`); ``hosts`` and ``hostname`` are
``0644`` and ``tty/<container>/run`` belongs to the container's user, because the
container's user reads them through their bind mounts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kukeon.api import ContainerSpec
from kukeon.runtime.containerd.ttyinit import CREATE_MARKER
from kukeon.runtime.hostfiles import PRIVATE_DIR_MODE, make_dirs, write_private_text


class SecretUnavailableError(Exception):
    """A secret's source is missing; the message names the container, the secret and the source."""


@dataclass(frozen=True)
class CellFiles:
    state_dir: Path
    key: tuple[str, str, str, str]

    @property
    def directory(self) -> Path:
        return self.state_dir.joinpath("cells", *self.key)

    @property
    def hosts(self) -> Path:
        return self.directory / "hosts"

    @property
    def hostname(self) -> Path:
        return self.directory / "hostname"

    def log(self, container: str) -> Path:
        return self.directory / "logs" / f"{container}.log"

    def previous_log(self, container: str) -> Path:
        """The log of the container's instance before the current one (``logs --previous``)."""
        return self.directory / "logs" / f"{container}.previous.log"

    async def start_new_log(self, container: str) -> None:
        """Keep the ending instance's log as the previous one; the next task logs afresh.

        Called before a task is created, when no task of the container exists: its logger
        (the shim's child) has exited, so nothing writes the file any more.
        """

        def rotate() -> None:
            current = self.log(container)
            try:
                if current.stat().st_size > 0:  # an instance that wrote nothing keeps none
                    current.replace(self.previous_log(container))
            except FileNotFoundError:
                pass

        await asyncio.to_thread(rotate)

    def tty_stdin(self, container: str) -> Path:
        return self.directory / "tty" / container / "stdin"

    def tty_state(self, container: str) -> Path:
        return self.directory / "tty" / container / "run"

    def tty_state_digest(self, container: str) -> Path:
        return self.directory / "tty" / container / "spec-digest"

    def secrets_dir(self, container: str) -> Path:
        return self.directory / "secrets" / container

    async def remove(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.directory, True)


def _prepare_tty_state(files: CellFiles, container: str, digest: str, uid: int, gid: int) -> None:
    state = files.tty_state(container)
    make_dirs(state.parent)
    make_dirs(state, PRIVATE_DIR_MODE)  # then given to the container's user, its only reader
    recorded = files.tty_state_digest(container)
    try:
        current = recorded.read_text().strip()
    except FileNotFoundError:
        current = None
    if current != digest:
        # A container created from another spec: its create stages have not run yet.
        (state / CREATE_MARKER).unlink(missing_ok=True)
        write_private_text(recorded, digest + "\n")
    info = state.stat()
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(state, uid, gid)


async def prepare_tty_state(
    files: CellFiles, container: str, *, digest: str, uid: int, gid: int
) -> None:
    """The tty wrapper's state directory, ready before the container's task starts.

    Owned by the container's user (the wrapper writes its create marker there). The marker
    belongs to one spec: when the container is (re)created from a spec with another digest,
    it is removed, so `runOn: create` stages run again exactly then.
    """
    await asyncio.to_thread(_prepare_tty_state, files, container, digest, uid, gid)


async def remove_scope_files(state_dir: Path, scope: tuple[str, ...]) -> None:
    """Remove the cell-file directory of a realm, space or stack (its cells are gone).

    Called by the parent's finalizer, so the empty `cells/<realm>/<space>/<stack>` levels do
    not outlive the resources they were made for.
    """
    await asyncio.to_thread(shutil.rmtree, state_dir.joinpath("cells", *scope), True)


def container_readable(relative: Path) -> bool:
    """Whether a path under the state directory is read by a container's user (bind-mounted).

    ``relative`` is relative to the state directory: a cell's ``hosts`` and ``hostname``
    (``0644``) and what the tty wrapper keeps in its state directory (the container's own
    files). Start-up narrowing of modes leaves these as they are.
    """
    parts = relative.parts
    if len(parts) < 6 or parts[0] != "cells":
        return False
    if len(parts) == 6:
        return parts[5] in ("hosts", "hostname")
    return len(parts) >= 9 and parts[5] == "tty" and parts[7] == "run"


@dataclass(frozen=True)
class StagedSecrets:
    files: Mapping[str, str]
    """Container path -> host path."""
    env: Mapping[str, str]


def _stage(container: ContainerSpec, directory: Path, environ: Mapping[str, str]) -> StagedSecrets:
    files: dict[str, str] = {}
    env: dict[str, str] = {}
    for secret in container.secrets:
        where = f"container {container.id!r} secret {secret.name!r}"
        if secret.from_file is not None:
            try:
                value = Path(secret.from_file).read_bytes()
            except OSError as error:
                raise SecretUnavailableError(
                    f"{where}: cannot read fromFile {secret.from_file}: {error.strerror}"
                ) from error
        else:
            assert secret.from_env is not None  # validation: exactly one source
            if secret.from_env not in environ:
                raise SecretUnavailableError(
                    f"{where}: fromEnv {secret.from_env} is not set in kukeond's environment"
                )
            value = environ[secret.from_env].encode()
        if secret.mount_path is None:
            env[secret.name] = value.decode(errors="replace")
            continue
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        staged = directory / secret.name.replace("/", "_")
        descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        try:
            os.write(descriptor, value)
        finally:
            os.close(descriptor)
        files[secret.mount_path] = str(staged)
    return StagedSecrets(files=files, env=env)


async def stage_secrets(
    container: ContainerSpec, *, files: CellFiles, environ: Mapping[str, str]
) -> StagedSecrets:
    """Resolve a container's secrets; file secrets are written under the cell's directory.

    The values never leave this host's state directory and the container's spec: they are
    not written to etcd, to status, or to logs.
    """
    return await asyncio.to_thread(_stage, container, files.secrets_dir(container.id), environ)
