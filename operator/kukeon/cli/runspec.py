"""``docker run``'s container options as the one container of a ``kukectl run`` cell.

Each option maps onto a field of the container (docs/kukectl.md lists them); what the
options say is parsed here (exit 2 naming the option), what they ask for is the API's to
allow (a bind volume, ``--privileged`` and capabilities beyond the default set need the
realm's level). The words after the image are the arguments of the image's entrypoint,
as docker's ``CMD`` and kubectl's ``run -- ARGS``; ``--entrypoint PROG`` (docker) replaces
the entrypoint, and ``--command`` (kubectl) makes the first word the program.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from .params import FiniteFloatRange
from .readlimit import TooLarge, read_limited
from .runner import EXIT_USAGE, fail

_SIZE = re.compile(r"(\d+)\s*([kmg]?)(?:i?b)?")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_KERNEL_TMPFS_SIZE = re.compile(r"[0-9]+[tTpPeE%]")
"""A tmpfs ``size=`` the kernel takes that is no byte count here: a share of the memory
(``50%``) or a unit past g; passed on as the mount option, as docker does."""


class RestartPolicy(click.Choice[str]):
    """``--restart``: kukeon's policies, spelt as kubectl (``Never``, ``OnFailure``) or
    docker (``no``) too: ``--restart=Never``, kubectl's habit, was refused."""

    _SPELLINGS = {"onfailure": "on-failure", "no": "never"}

    def __init__(self) -> None:
        super().__init__(["always", "on-failure", "never"])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        word = str(value).lower()
        return super().convert(self._SPELLINGS.get(word, word), param, ctx)


CONTAINER_OPTION_NAMES = {
    "env": "--env",
    "env_files": "--env-file",
    "ports": "--publish",
    "restart": "--restart",
    "stop_signal": "--stop-signal",
    "cpus": "--cpus",
    "memory": "--memory",
    "entrypoint": "--entrypoint",
    "as_command": "--command",
    "workdir": "--workdir",
    "user": "--user",
    "volumes": "--volume",
    "tmpfs": "--tmpfs",
    "network": "--network",
    "privileged": "--privileged",
    "read_only": "--read-only",
    "cap_add": "--cap-add",
    "cap_drop": "--cap-drop",
}
"""The parameters below, and how the command line says them (``run --profile`` refuses
them: the profile says what the container is)."""


def container_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``docker run`` that describe the container (see the module)."""
    for option in reversed([*_PROCESS_OPTIONS, *_HOST_OPTIONS]):
        func = option(func)
    return func


_PROCESS_OPTIONS = [
    click.option(
        "--env",
        "-e",
        multiple=True,
        help="KEY=VALUE, repeatable; a bare KEY takes this shell's value (skipped when unset).",
    ),
    click.option(
        "--env-file",
        "env_files",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="A file of KEY=VALUE lines, as docker's (# comments; a bare KEY takes this "
        "shell's value); repeatable, before --env.",
    ),
    click.option(
        "--publish",
        "-p",
        "ports",
        multiple=True,
        metavar="[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]",
        help="Publish a port of the cell on its node (DNAT to the cell's address); repeatable.",
    ),
    click.option(
        "--entrypoint",
        metavar="PROGRAM",
        help="The program instead of the image's entrypoint (docker's); the words after "
        "the image are its arguments ('' clears it: the words are the command line).",
    ),
    click.option(
        "--command",
        "as_command",
        is_flag=True,
        help="The words after -- are the program and its arguments, instead of the "
        "entrypoint's arguments (kubectl's).",
    ),
    click.option(
        "--workdir", "-w", metavar="DIR", help="The working directory (an absolute path)."
    ),
    click.option("--user", "-u", metavar="USER[:GROUP]", help="The user (a name or uid, :group)."),
]
_HOST_OPTIONS = [
    click.option(
        "--volume",
        "-v",
        "volumes",
        multiple=True,
        metavar="HOST_PATH:PATH[:ro|rw]",
        help="Bind a host directory (docker's; an absolute host path, no named volumes); "
        "repeatable.",
    ),
    click.option(
        "--tmpfs",
        multiple=True,
        metavar="PATH[:OPTIONS]",
        help="Mount a tmpfs (docker's; options as mount's, size=64m); repeatable.",
    ),
    click.option(
        "--network",
        multiple=True,
        metavar="host|SPACE",
        help="host: the host's network (hostNetwork); SPACE: also join that space's "
        "network (another interface); repeatable.",
    ),
    click.option("--privileged", is_flag=True, help="Every capability and device."),
    click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only."),
    click.option("--cap-add", multiple=True, help="Add a capability (NET_ADMIN...)."),
    click.option("--cap-drop", multiple=True, help="Drop a capability (ALL drops all)."),
    click.option(
        "--stop-signal",
        metavar="SIGNAL",
        help="The signal that asks the container to stop (docker's; a name or number, "
        "e.g. SIGINT; the image's StopSignal when unset, else SIGTERM).",
    ),
    click.option(
        "--cpus",
        type=FiniteFloatRange(0.01, 1000),
        help="At most this many CPUs of time (docker's; e.g. 0.5; the container's "
        "resources.cpuLimitMillicores).",
    ),
    click.option(
        "--memory",
        "-m",
        metavar="BYTES",
        help="Memory limit (docker's; e.g. 64m, 1g: b, k, m, g, powers of 1024; the "
        "container's resources.memoryLimitBytes).",
    ),
    click.option(
        "--restart",
        type=RestartPolicy(),
        default="never",
        show_default=True,
        help="always, on-failure or never (kubectl's Always, OnFailure, Never; docker's no).",
    ),
]


def build_container(
    name: str, image: str, words: Sequence[str], options: Mapping[str, Any]
) -> dict[str, Any]:
    """The container the options describe, as a document (the API validates it)."""
    container: dict[str, Any] = {"id": name, "image": image}
    container.update(_process(words, options))
    env = [*_env_files(options["env_files"]), *_env_options(options["env"])]
    if env:
        container["env"] = env
    if options["ports"]:
        container["ports"] = list(options["ports"])
    if options["restart"] != "never":
        container["restartPolicy"] = options["restart"]
    if options["stop_signal"] is not None:
        container["stopSignal"] = options["stop_signal"]
    resources = _resources(options["cpus"], options["memory"])
    if resources:
        container["resources"] = resources
    container.update(_mounts(options["volumes"], options["tmpfs"]))
    container.update(_network(options["network"]))
    container.update(_security(options))
    return container


def _process(words: Sequence[str], options: Mapping[str, Any]) -> dict[str, Any]:
    entrypoint: str | None = options["entrypoint"]
    if entrypoint is not None and options["as_command"]:
        fail("give --entrypoint PROGRAM or --command, not both", EXIT_USAGE)
    process: dict[str, Any] = {}
    if options["as_command"] or entrypoint == "":
        # docker's --entrypoint '' clears the image's entrypoint: the words are the whole
        # command line, as kubectl's --command makes them.
        if not words:
            option = "--command" if options["as_command"] else "--entrypoint ''"
            fail(f"{option} needs the program after --", EXIT_USAGE)
        process = {"command": words[0], "args": list(words[1:])}
    elif entrypoint is not None:
        process = {"command": entrypoint, "args": list(words)}
    elif words:
        process = {"args": list(words)}
    if options["workdir"] is not None:
        process["workingDir"] = options["workdir"]
    if options["user"] is not None:
        process["user"] = options["user"]
    return process


def _env_files(paths: Sequence[Path]) -> list[str]:
    """docker's ``--env-file``: ``KEY=VALUE`` lines as they are (no quotes removed), ``#``
    comments and blank lines skipped, a bare ``KEY`` taking this shell's value (skipped
    when it has none). As docker's, a leading byte-order mark is dropped and only ``\n``
    (or ``\r\n``) ends a line: ``str.splitlines`` also cuts at form feeds and U+2028,
    which a value may hold."""
    entries: list[str] = []
    for path in paths:
        try:
            with path.open("rb") as stream:
                text = read_limited(stream, newlines=False).removeprefix("\ufeff")
        except (OSError, UnicodeDecodeError, TooLarge) as exc:
            fail(f"--env-file {path}: cannot read it: {exc}", EXIT_USAGE)
        for number, raw in enumerate(text.split("\n"), start=1):
            raw = raw.removesuffix("\r")
            line = raw.lstrip()
            if not line or line.startswith("#"):
                continue
            key, equals, _ = line.partition("=")
            if not key.strip() or any(c.isspace() for c in key):
                fail(f"--env-file {path}:{number}: {raw!r} is not KEY=VALUE", EXIT_USAGE)
            entries.extend([line] if equals else _from_shell(key))
    return entries


def _env_options(values: Sequence[str]) -> list[str]:
    """docker's ``-e``: ``KEY=VALUE`` as it is, a bare ``KEY`` taking this shell's value
    (the API refuses an entry without ``=``: ``-e FOO`` was a 422)."""
    entries: list[str] = []
    for value in values:
        entries.extend([value] if "=" in value else _from_shell(value))
    return entries


def _from_shell(key: str) -> list[str]:
    """``KEY=VALUE`` of this shell's ``KEY``, none when it has no such variable (docker
    removes an unset one from the image's environment, which the API cannot say)."""
    return [f"{key}={os.environ[key]}"] if key in os.environ else []


def _size(text: str, option: str) -> int:
    size = _SIZE.fullmatch(text.strip().lower())
    if size is None:
        fail(f"{option} {text!r}: expected a number of bytes, e.g. 64m or 1g", EXIT_USAGE)
    return int(size[1]) * _UNITS[size[2]]


def _resources(cpus: float | None, memory: str | None) -> dict[str, int]:
    """``--cpus`` and ``--memory`` as the container's resources; exit 2 for a bad size."""
    resources: dict[str, int] = {}
    if cpus is not None:
        resources["cpuLimitMillicores"] = round(cpus * 1000)
    if memory is not None:
        resources["memoryLimitBytes"] = _size(memory, "--memory")
    return resources


def _mounts(volumes: Sequence[str], tmpfs: Sequence[str]) -> dict[str, Any]:
    binds: list[dict[str, Any]] = []
    for volume in volumes:
        parts = volume.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            fail(f"--volume {volume!r}: expected HOST_PATH:PATH[:ro|rw]", EXIT_USAGE)
        if not parts[0].startswith("/"):
            fail(
                f"--volume {volume!r}: the source must be an absolute host path (named "
                "volumes are not supported)",
                EXIT_USAGE,
            )
        mode = parts[2] if len(parts) == 3 else "rw"
        if mode not in ("ro", "rw"):
            fail(f"--volume {volume!r}: the mode is ro or rw, got {mode!r}", EXIT_USAGE)
        bind = {"source": parts[0], "target": parts[1]}
        binds.append({**bind, "readOnly": True} if mode == "ro" else bind)
    mounts: list[dict[str, Any]] = []
    for given in tmpfs:
        path, _, option_text = given.partition(":")
        mount: dict[str, Any] = {"path": path}
        options: list[str] = []
        for option in filter(None, option_text.split(",")):
            if option.startswith("size=") and _KERNEL_TMPFS_SIZE.fullmatch(option[5:]):
                options.append(option)
            elif option.startswith("size="):
                mount["sizeBytes"] = _size(option.removeprefix("size="), f"--tmpfs {given}:")
            else:
                options.append(option)
        if options:
            mount["options"] = options
        mounts.append(mount)
    return {**({"volumes": binds} if binds else {}), **({"tmpfs": mounts} if mounts else {})}


def _network(networks: Sequence[str]) -> dict[str, Any]:
    if "host" in networks:
        if len(networks) > 1:
            fail("--network host: the host's network only, no space to join", EXIT_USAGE)
        return {"hostNetwork": True}
    if "none" in networks:
        fail("--network none is not supported: a cell has its space's network", EXIT_USAGE)
    return {"networks": list(networks)} if networks else {}


def _security(options: Mapping[str, Any]) -> dict[str, Any]:
    security: dict[str, Any] = {}
    if options["privileged"]:
        security["privileged"] = True
    if options["read_only"]:
        security["readOnlyRootFilesystem"] = True
    capabilities = {
        field: list(values)
        for field, values in (("add", options["cap_add"]), ("drop", options["cap_drop"]))
        if values
    }
    if capabilities:
        security["capabilities"] = capabilities
    return security
