"""The ways host networking can fail, as typed values a controller can report.

Host faults name the missing piece and, when a package provides it, the Debian package, so
``status.message`` tells an operator what to install instead of showing a traceback. Every
error derives from :class:`NetworkError` so a controller can catch the whole family at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class NetworkError(Exception):
    """Base of every failure raised by ``kukeon.runtime.network``."""


class HostPrerequisiteError(NetworkError):
    """A binary or kernel feature the host must provide is absent."""

    def __init__(self, *, piece: str, package: str | None, detail: str = "") -> None:
        self.piece = piece
        self.package = package
        self.detail = detail
        hint = f" (install the Debian package `{package}`)" if package else ""
        suffix = f": {detail}" if detail else ""
        super().__init__(f"host prerequisite missing: {piece}{suffix}{hint}")


class CniPluginNotFoundError(HostPrerequisiteError):
    """A CNI plugin named in a network configuration has no executable in the search dirs."""

    def __init__(self, *, plugin: str, search_dirs: Sequence[Path]) -> None:
        self.plugin = plugin
        self.search_dirs = tuple(search_dirs)
        dirs = ", ".join(str(d) for d in search_dirs) or "(no directory configured)"
        super().__init__(
            piece=f"CNI plugin `{plugin}`",
            package="containernetworking-plugins",
            detail=f"not found in {dirs}",
        )


class CniError(NetworkError):
    """A CNI plugin failed; the fields mirror the spec's error object.

    ``code`` is the spec's error code (1-99 are reserved by the spec, 100+ are plugin
    specific) or ``None`` when the plugin died without printing a well-formed error.
    """

    def __init__(
        self,
        *,
        plugin: str,
        network: str,
        command: str,
        code: int | None,
        msg: str,
        details: str = "",
        stderr: str = "",
    ) -> None:
        self.plugin = plugin
        self.network = network
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details
        self.stderr = stderr
        code_text = f" (code {code})" if code is not None else ""
        extra = f": {details}" if details else ""
        super().__init__(
            f"CNI plugin `{plugin}` failed {command} on network `{network}`{code_text}: "
            f"{msg}{extra}"
        )


class CniConfigError(NetworkError):
    """A network configuration file or a plugin result does not follow the CNI spec."""


class SubnetPoolExhaustedError(NetworkError):
    """No free subnet of the wanted size is left in the pool."""

    def __init__(self, *, pool: str, prefix: int) -> None:
        self.pool = pool
        self.prefix = prefix
        super().__init__(f"subnet pool {pool} has no free /{prefix} left")


class NftError(NetworkError):
    """``nft`` refused a ruleset or a listing; ``stderr`` is nft's own explanation."""

    def __init__(self, *, action: str, stderr: str) -> None:
        self.action = action
        self.stderr = stderr
        super().__init__(f"nft failed to {action}: {stderr.strip()}")


class EgressResolutionError(NetworkError):
    """A host name in an egress rule resolved to no IPv4 address at apply time."""

    def __init__(self, *, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"egress rule host `{host}` has no IPv4 address: {reason}")


class NetnsError(NetworkError):
    """A network namespace could not be created, inspected or removed."""


class BridgeInUseError(NetworkError):
    """A space's bridge has ports kukeon did not make: its network is not torn down (the
    bridge, its egress chain and its subnet stay) until they leave it."""

    def __init__(self, *, bridge: str, ports: tuple[str, ...]) -> None:
        self.bridge = bridge
        self.ports = ports
        super().__init__(
            f"bridge {bridge} has port(s) kukeon did not make: {', '.join(ports)} "
            f"(`ip link set PORT nomaster` or delete them; the space's network is removed then)"
        )


class BridgeNameTakenError(NetworkError):
    """Another space of this node has the bridge name a space would get: a hashed name
    holds 40 bits of SHA-256 (``bridge``), a preimage an editor can compute for a space of
    another realm. The space is given no subnet, conflist, egress chain or bridge here."""

    reason = "BridgeNameTaken"

    def __init__(self, *, bridge: str, holder: str) -> None:
        self.bridge = bridge
        self.holder = holder
        """The other space's ``realm/space``: logged, never in the message (the space's
        status and events are read by its realm's users, the holder may be another's)."""
        super().__init__(
            f"bridge {bridge} is already another space's on this node (the hash in a bridge "
            "name collides with this space's): this space gets no network here until that "
            "space is gone; rename the space"
        )


class HostInterfaceTakenError(NetworkError):
    """Another cell's interface on this node has the host end (``veth`` and 44 bits of a
    hash of the cell's network id: ``veth.host_ifname``) a cell's would get; a tenant can
    compute a name of theirs that collides with another realm's cell. Making the port would
    first delete that cell's link, so the cell gets none while the other one holds it."""

    def __init__(self, *, host_ifname: str, cell_id: str, ifname: str) -> None:
        self.host_ifname = host_ifname
        super().__init__(
            f"interface {ifname} of cell {cell_id}: its host end {host_ifname} is already "
            "another cell's on this node (the hash in the name collides); rename the cell"
        )
