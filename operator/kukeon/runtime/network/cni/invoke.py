"""Running CNI plugins the way the spec says a runtime must.

For a network configuration list, ADD runs each plugin in order, feeding each one the
previous plugin's result as ``prevResult``; CHECK runs them in order with the cached ADD
result; DEL runs them in reverse with the cached result when there is one. Each plugin gets
its own object from the list on stdin with the list's ``name`` and ``cniVersion`` injected,
``runtimeConfig`` for the capabilities it declares, and the ``CNI_*`` variables in its
environment. Plugins run as asyncio subprocesses so the event loop never waits on them, and
are killed when their caller is cancelled or times out (:func:`kukeon.processes.run_program`).

DEL is made idempotent and thorough: every plugin is asked to clean up even if an earlier
one failed, and the first failure is raised afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kukeon.processes import run_program
from kukeon.runtime.network.cni.config import NetworkConfigList
from kukeon.runtime.network.cni.result import CniResult, parse_error, parse_result
from kukeon.runtime.network.errors import CniConfigError, CniError, CniPluginNotFoundError

DEFAULT_PLUGIN_DIRS: tuple[Path, ...] = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
_CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")
Command = Literal["ADD", "CHECK", "DEL"]


@dataclass(frozen=True)
class RuntimeConf:
    """What identifies one attachment: the container, its netns and the interface name."""

    container_id: str
    netns: Path
    ifname: str = "eth0"
    args: Mapping[str, str] = field(default_factory=dict)
    """Become ``CNI_ARGS`` (``K=V;K2=V2``)."""
    capability_args: Mapping[str, Any] = field(default_factory=dict)
    """Injected as ``runtimeConfig`` into plugins declaring the capability (e.g. portMappings)."""

    def __post_init__(self) -> None:
        if not _CONTAINER_ID.match(self.container_id):
            raise CniConfigError(
                f"CNI container id {self.container_id!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            )
        for key, value in self.args.items():
            if ";" in key or "=" in key or ";" in value or not key:
                raise CniConfigError(f"CNI_ARGS entry {key!r}={value!r} is malformed")


class CniRuntime:
    """Executes CNI plugins found in ``plugin_dirs`` (searched in order)."""

    def __init__(
        self,
        *,
        plugin_dirs: Sequence[Path] = DEFAULT_PLUGIN_DIRS,
        timeout: float = 60.0,
        path_env: str | None = None,
    ) -> None:
        self.plugin_dirs = tuple(plugin_dirs)
        self.timeout = timeout
        # Plugins call iptables/ip themselves, so they need a sane PATH.
        self._path_env = path_env or os.environ.get(
            "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )

    def find_plugin(self, plugin_type: str) -> Path:
        if "/" in plugin_type or plugin_type in {"", ".", ".."}:
            raise CniConfigError(f"CNI plugin type {plugin_type!r} is not a plain name")
        for directory in self.plugin_dirs:
            candidate = directory / plugin_type
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        raise CniPluginNotFoundError(plugin=plugin_type, search_dirs=self.plugin_dirs)

    def require_plugins(self, conflist: NetworkConfigList) -> dict[str, Path]:
        """Locate every plugin of ``conflist`` up front, so nothing half-runs."""
        return {
            str(plugin["type"]): self.find_plugin(str(plugin["type"]))
            for plugin in conflist.plugins
        }

    async def add(self, conflist: NetworkConfigList, conf: RuntimeConf) -> CniResult:
        paths = self.require_plugins(conflist)
        previous: Mapping[str, Any] | None = None
        result: CniResult | None = None
        for plugin in conflist.plugins:
            plugin_type = str(plugin["type"])
            stdout = await self._exec(paths[plugin_type], plugin, conflist, conf, "ADD", previous)
            result = parse_result(
                _load_json(stdout, plugin_type, conflist.name), plugin=plugin_type
            )
            previous = result.raw
        assert result is not None  # parse_conflist guarantees at least one plugin
        return result

    async def check(
        self, conflist: NetworkConfigList, conf: RuntimeConf, prev_result: CniResult
    ) -> None:
        paths = self.require_plugins(conflist)
        for plugin in conflist.plugins:
            await self._exec(
                paths[str(plugin["type"])], plugin, conflist, conf, "CHECK", prev_result.raw
            )

    async def delete(
        self, conflist: NetworkConfigList, conf: RuntimeConf, prev_result: CniResult | None
    ) -> None:
        paths = self.require_plugins(conflist)
        first_error: CniError | None = None
        for plugin in reversed(conflist.plugins):
            try:
                await self._exec(
                    paths[str(plugin["type"])],
                    plugin,
                    conflist,
                    conf,
                    "DEL",
                    prev_result.raw if prev_result is not None else None,
                )
            except CniError as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error

    async def _exec(
        self,
        binary: Path,
        plugin: Mapping[str, Any],
        conflist: NetworkConfigList,
        conf: RuntimeConf,
        command: Command,
        prev_result: Mapping[str, Any] | None,
    ) -> bytes:
        plugin_type = str(plugin["type"])
        stdin = json.dumps(
            plugin_stdin(plugin, conflist=conflist, conf=conf, prev_result=prev_result)
        ).encode()
        env = {
            "PATH": self._path_env,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": conf.container_id,
            "CNI_NETNS": str(conf.netns),
            "CNI_IFNAME": conf.ifname,
            "CNI_ARGS": ";".join(f"{k}={v}" for k, v in conf.args.items()),
            "CNI_PATH": os.pathsep.join(str(d) for d in self.plugin_dirs),
        }
        try:
            # Killed (with what it started) when the caller is cancelled or it times out.
            async with asyncio.timeout(self.timeout):
                finished = await run_program([str(binary)], stdin=stdin, env=env)
        except TimeoutError:
            raise CniError(
                plugin=plugin_type,
                network=conflist.name,
                command=command,
                code=None,
                msg=f"timed out after {self.timeout:g}s",
            ) from None
        if finished.returncode != 0:
            raise parse_error(
                stdout=finished.stdout,
                stderr=finished.stderr,
                plugin=plugin_type,
                network=conflist.name,
                command=command,
                returncode=finished.returncode,
            )
        return finished.stdout


def plugin_stdin(
    plugin: Mapping[str, Any],
    *,
    conflist: NetworkConfigList,
    conf: RuntimeConf,
    prev_result: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The object one plugin reads on stdin (pure)."""
    document = dict(plugin)
    document["name"] = conflist.name
    document["cniVersion"] = conflist.cni_version
    if prev_result is not None:
        document["prevResult"] = dict(prev_result)
    capabilities = plugin.get("capabilities")
    if isinstance(capabilities, Mapping):
        runtime_config = {
            key: value
            for key, value in conf.capability_args.items()
            if capabilities.get(key) is True
        }
        if runtime_config:
            document["runtimeConfig"] = runtime_config
    return document


def _load_json(stdout: bytes, plugin: str, network: str) -> Any:
    try:
        return json.loads(stdout)
    except ValueError as error:
        raise CniConfigError(
            f"CNI plugin `{plugin}` on network `{network}` printed invalid JSON: {error}"
        ) from error
