"""Where a cell's files live in the state directory, and the secrets staged for it.

```
<state-dir>/cells/<realm>/<space>/<stack>/<cell>/
    hosts, hostname            rendered, bind-mounted into every container
    node-hosts, node-hostname  the node's, bind-mounted into its hostNetwork containers
    logs/<container>.log       stdout and stderr of the container's task (its TTY's output
                               for an attachable container)
    logs/<container>.log.<n>   what its logger rotated out of it (`containerLogMaxSize`,
                               `containerLogMaxFiles`; n grows, the highest is the newest)
    logs/<container>.previous.log[.<n>]  the same of the instance before (`logs --previous`)
    tty/<container>/stdin      the FIFO an attachable container's terminal reads
    tty/<container>/run/       the tty wrapper's state, bind-mounted at /run/kukeon/tty
                               (the onInit create marker), owned by the container's user
    tty/<container>/spec-digest  the spec the marker in run/ belongs to
    secrets/<container>/<n>    secret files (0400, the container user's; the directories
                               0700), bind-mounted read-only
```

One directory per cell, so deleting a cell removes exactly its files, and the API server
finds a container's log without asking the daemon. Directories are ``0750`` and log files
``0640``, root's (see :mod:`kukeon.runtime.hostfiles`); ``hosts`` and ``hostname`` are
``0644`` and ``tty/<container>/run`` belongs to the container's user, because the
container's user reads them through their bind mounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kukeon.api import ContainerSpec, Kind, Secret, SecretKeyRef, lookup_scopes
from kukeon.fileio import write_atomically
from kukeon.processes import run_program
from kukeon.runtime.bindpins import BINDS_DIR, binds_directory, unpin_cell, unpin_scope
from kukeon.runtime.containerd.crilog import rotated_logs
from kukeon.runtime.containerd.logrecords import parse_record
from kukeon.runtime.containerd.ttyinit import CREATE_MARKER
from kukeon.runtime.hostfiles import (
    PRIVATE_DIR_MODE,
    is_terminal_log,
    make_dirs,
    write_private_text,
)
from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.store import InvalidStoredDocument, NotFound, Registry

log = logging.getLogger(__name__)


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

    @property
    def node_hosts(self) -> Path:
        """A copy of the node's /etc/hosts, a hostNetwork container's."""
        return self.directory / "node-hosts"

    @property
    def node_hostname(self) -> Path:
        """The node's host name, a hostNetwork container's /etc/hostname."""
        return self.directory / "node-hostname"

    @property
    def resolv_conf(self) -> Path:
        return self.directory / "resolv.conf"

    def log(self, container: str) -> Path:
        return self.directory / "logs" / f"{container}.log"

    async def last_line(self, container: str) -> str | None:
        """The last line the container's current task wrote (its log's end, or the newest
        rotated file's when the current one holds none yet), for the status of a failed
        exit (Kubernetes' ``FallbackToLogsOnError``); None when there is none."""

        def read() -> str | None:
            current = self.log(container)
            for path in (current, *rotated_logs(current)[-1:]):
                if (line := last_logged_line(path)) is not None:
                    return line
            return None

        return await asyncio.to_thread(read)

    def previous_log(self, container: str) -> Path:
        """The log of the container's instance before the current one (``logs --previous``)."""
        return self.directory / "logs" / f"{container}.previous.log"

    async def start_new_log(self, container: str) -> None:
        """Keep the ending instance's log files as the previous one's (replacing those of
        the instance before it); the next task logs afresh.

        Called before a task is created, when no task of the container exists: its logger
        (the shim's child) has exited, so nothing writes the files any more. The rotated
        files move first, the current one last: a follower of the ending instance that
        sees its file renamed finds only the new instance's files under the log's name.
        """
        await asyncio.to_thread(keep_as_previous, self.log(container), self.previous_log(container))

    def tty_stdin(self, container: str) -> Path:
        return self.directory / "tty" / container / "stdin"

    def tty_state(self, container: str) -> Path:
        return self.directory / "tty" / container / "run"

    def tty_state_digest(self, container: str) -> Path:
        return self.directory / "tty" / container / "spec-digest"

    def secrets_dir(self, container: str) -> Path:
        return self.directory / "secrets" / container

    async def remove(self) -> None:
        """The cell's files, and its pinned bind sources unmounted first (never walked)."""
        await run_on_host_thread(unpin_cell, binds_directory(self.state_dir, self.key))
        await remove_cell_files(self.directory)


async def remove_cell_files(directory: Path) -> None:
    """``directory`` and everything in it, whatever its containers left there.

    A container writes its tty state directory (``/run/kukeon/tty``) as it likes, a tree
    nested thousands of levels deep included, which ``shutil.rmtree`` (recursive, its
    RecursionError no OSError it ignores) could not remove: the cell's finalizer failed at
    every retry, so the cell, and its stack, space and realm, were never deleted. GNU rm
    walks any depth, follows no link and stays on this filesystem. What it cannot remove
    is logged and left, as rmtree's errors were ignored.
    """
    done = await run_program(["rm", "-rf", "--one-file-system", "--", str(directory)])
    if done.returncode != 0:
        log.warning(
            "cannot remove all of %s: %s", directory, done.stderr.decode(errors="replace")[:500]
        )


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
    await remove_cell_files(state_dir.joinpath("cells", *scope))
    await run_on_host_thread(unpin_scope, state_dir, scope)


def container_readable(relative: Path) -> bool:
    """Whether a path under the state directory is read by a container's user (bind-mounted).

    ``relative`` is relative to the state directory: a cell's ``hosts``, ``hostname``,
    ``resolv.conf``, ``node-hosts`` and ``node-hostname`` (``0644``) and what the tty
    wrapper keeps in its state directory (the container's own files). Start-up narrowing
    of modes leaves these as they are, and never enters ``binds``: the pinned bind sources
    there are the tenants' own files.
    """
    parts = relative.parts
    if parts[:1] == (BINDS_DIR,):
        return True
    if len(parts) < 6 or parts[0] != "cells":
        return False
    if len(parts) == 6:
        return parts[5] in ("hosts", "hostname", "resolv.conf", "node-hosts", "node-hostname")
    return len(parts) >= 9 and parts[5] == "tty" and parts[7] == "run"


@dataclass(frozen=True)
class StagedSecrets:
    files: Mapping[str, str]
    """Container path -> host path."""
    env: Mapping[str, str]
    digest: str | None = None
    """sha256 over the file secrets' contents (None without any): part of the container's
    spec digest, so a changed value recreates the container, as a changed env value does
    (a bind-mounted file keeps showing the inode it was mounted with)."""


def _write_if_changed(path: Path, value: bytes) -> None:
    """``path`` holds ``value`` (0400) afterwards; rewritten atomically, only if it differs."""
    try:
        if path.read_bytes() == value:
            return
    except FileNotFoundError:
        pass
    write_atomically(path, value, mode=0o400)


def _stage(
    container: ContainerSpec,
    directory: Path,
    environ: Mapping[str, str],
    resolved: Mapping[str, bytes],
) -> StagedSecrets:
    files: dict[str, str] = {}
    env: dict[str, str] = {}
    digest = hashlib.sha256()
    for secret in container.secrets:
        where = f"container {container.id!r} secret {secret.name!r}"
        if secret.secret_ref is not None:
            value = resolved[secret.name]
        elif secret.from_file is not None:
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
            if b"\0" in value:
                # runc refuses it, echoing the variable whole into the error the cell's
                # status and kukeond's log then held: the value is never said.
                raise SecretUnavailableError(
                    f"{where}: its value holds a NUL byte, which no environment variable "
                    "can; give it a mountPath to have it as a file"
                )
            env[secret.name] = value.decode(errors="replace")
            continue
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for level in (directory.parent, directory):  # also when an older kukeond made them
            os.chmod(level, 0o700)
        staged = directory / secret.name.replace("/", "_")
        _write_if_changed(staged, value)
        files[secret.mount_path] = str(staged)
        digest.update(f"{secret.mount_path}\0{len(value)}\0".encode() + value)
    return StagedSecrets(files=files, env=env, digest=digest.hexdigest() if files else None)


async def stage_secrets(
    container: ContainerSpec,
    *,
    files: CellFiles,
    environ: Mapping[str, str],
    resolved: Mapping[str, bytes] | None = None,
) -> StagedSecrets:
    """Resolve a container's secrets; file secrets are written under the cell's directory.

    ``resolved`` holds the values of the `secretRef` secrets (by secret name), read from
    their Secrets by the caller. The values never leave this host's state directory and
    the container's spec: they are not written to etcd, to status, or to logs.
    """
    return await asyncio.to_thread(
        _stage, container, files.secrets_dir(container.id), environ, resolved or {}
    )


def _own_secret_files(staged: StagedSecrets, uid: int, gid: int) -> None:
    for host_path in staged.files.values():
        info = os.stat(host_path)
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.chown(host_path, uid, gid)


async def own_secret_files(staged: StagedSecrets, *, uid: int, gid: int) -> None:
    """Give the staged secret files to the container's user (they stay 0400, in a 0700
    directory of root's: only that user, through the bind mount, can read them)."""
    await asyncio.to_thread(_own_secret_files, staged, uid, gid)


# --- secretRef: values from Secrets ------------------------------------------------------


async def read_secret_value(
    registry: Registry, scopes: Sequence[tuple[str, ...]], ref: SecretKeyRef, *, where: str
) -> bytes:
    """The value of ``ref`` from the first of ``scopes`` holding a Secret of that name.

    `SecretUnavailableError` names ``where``, the Secret and the key when there is no such
    Secret, it lacks the key, or its stored values cannot be opened.
    """
    for scope in scopes:
        try:
            found = await registry.get(Kind.SECRET, (*scope, ref.name))
        except NotFound:
            continue
        except InvalidStoredDocument as error:
            raise SecretUnavailableError(
                f"{where}: Secret {ref.name!r} ({'/'.join(scope)}) cannot be read: {error.reason}"
            ) from None
        if not isinstance(found, Secret) or found.metadata.deletion_timestamp is not None:
            continue
        value = found.value(ref.key)
        if value is None:
            keys = ", ".join(entry.name for entry in found.status.keys) or "none"
            raise SecretUnavailableError(
                f"{where}: Secret {ref.name!r} ({'/'.join(scope)}) has no key {ref.key!r} "
                f"(its keys: {keys})"
            )
        return value
    looked = ", ".join("/".join(part for part in scope if part != "-") for scope in scopes)
    raise SecretUnavailableError(
        f"{where}: Secret {ref.name!r} (key {ref.key!r}) not found (looked in {looked}); "
        "the cell starts once it exists"
    )


async def resolve_secret_refs(
    registry: Registry, key: tuple[str, str, str, str], container: ContainerSpec
) -> dict[str, bytes]:
    """The values of a container's `secretRef` secrets, by secret name: each looked up in
    the cell's stack, then its space, then its realm."""
    scopes = lookup_scopes(*key[:3])
    values: dict[str, bytes] = {}
    for secret in container.secrets:
        if secret.secret_ref is None:
            continue
        where = f"container {container.id!r} secret {secret.name!r}"
        values[secret.name] = await read_secret_value(
            registry, scopes, secret.secret_ref, where=where
        )
    return values


LAST_LINE_MAX = 1024
"""The most characters of a log's last line a status message carries."""
_TAIL_BYTES = 8192


def keep_as_previous(current: Path, previous: Path) -> None:
    """``current`` and its rotated files become ``previous`` and its own, numbers kept;
    an instance that wrote nothing keeps the previous ones there were."""
    rotated = rotated_logs(current)
    try:
        wrote = current.stat().st_size > 0
    except FileNotFoundError:
        wrote = False
    if not (wrote or rotated):
        return
    for old in (*rotated_logs(previous), previous):
        old.unlink(missing_ok=True)
    for path in rotated:
        with contextlib.suppress(FileNotFoundError):
            path.replace(previous.parent / (previous.name + path.name[len(current.name) :]))
    with contextlib.suppress(FileNotFoundError):
        current.replace(previous)


def last_logged_line(path: Path) -> str | None:
    """The text of the last non-empty line of a container log (CRI records, or a TTY's raw
    output, as it is: its file is marked so), control characters dropped, cut to
    ``LAST_LINE_MAX``."""
    try:
        with path.open("rb") as log:
            terminal = is_terminal_log(log.fileno())
            start = max(0, log.seek(0, os.SEEK_END) - _TAIL_BYTES)
            log.seek(start)
            lines = log.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines[1:] if start else lines):  # the first may be cut
        text = parse_record(line, terminal=terminal).text.decode("utf-8", "replace")
        text = "".join(c for c in text if c.isprintable() or c == "\t").strip()
        if text:
            return text[:LAST_LINE_MAX]
    return None
