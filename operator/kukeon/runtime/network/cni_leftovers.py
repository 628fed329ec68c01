"""Removing the iptables state CNI plugins leave behind.

Two kinds of leftovers are known with the reference plugins (1.1.x):

* The ``firewall`` plugin adds ``CNI-FORWARD`` (jumped to from ``FORWARD``) and
  ``CNI-ADMIN`` on first use and never deletes them, even after every container's DEL.
  They are shared by every CNI network on the host, so they are removed only when they hold
  nothing but the plugin's own scaffolding; a chain with any per-container rule left is in
  use by somebody and is kept.
* The ``bridge`` plugin's DEL removes a container's masquerade chain only when it can still
  find the container's interface (it learns the addresses from it). When the namespace or
  the interface vanished first, the ``CNI-<hash>`` NAT chain and its ``POSTROUTING`` jump
  stay forever. Their names are derived from the network name and container id (SHA-512,
  as the plugins' ``FormatChainName``), so they can be found and removed after DEL.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil

from kukeon.processes import run_program
from kukeon.runtime.network.errors import HostPrerequisiteError, NetworkError

FORWARD_CHAIN = "CNI-FORWARD"
ADMIN_CHAIN = "CNI-ADMIN"
_JUMP_COMMENT = "CNI firewall plugin rules"
_ADMIN_JUMP = (
    f"-A {FORWARD_CHAIN} -m comment "
    f'--comment "CNI firewall plugin admin overrides" -j {ADMIN_CHAIN}'
)
_ALREADY_GONE = ("No chain", "Bad rule", "does not exist")
_MAX_CHAIN_LENGTH = 28


def masquerade_chain_name(network: str, container_id: str) -> str:
    """The NAT chain the bridge plugin creates for one container (``CNI-`` + 24 hex)."""
    digest = hashlib.sha512((network + container_id).encode()).hexdigest()
    return f"CNI-{digest}"[:_MAX_CHAIN_LENGTH]


def _iptables_binary(explicit: str | None) -> str:
    binary = explicit or shutil.which("iptables")
    if binary is None:
        raise HostPrerequisiteError(
            piece="the `iptables` command", package="iptables", detail="not found on PATH"
        )
    return binary


async def remove_masquerade_leftovers(
    *, network: str, container_id: str, iptables: str | None = None
) -> bool:
    """Delete a container's masquerade chain and its jumps if DEL left them; whether it did."""
    binary = _iptables_binary(iptables)
    chain = masquerade_chain_name(network, container_id)
    code, _, _ = await _iptables(binary, "-t", "nat", "-S", chain)
    if code != 0:
        return False
    _, postrouting, _ = await _iptables(binary, "-t", "nat", "-S", "POSTROUTING")
    for line in postrouting.splitlines():
        spec = shlex.split(line)
        if spec[:2] == ["-A", "POSTROUTING"] and spec[-2:] == ["-j", chain]:
            await _checked(binary, "-t", "nat", "-D", *spec[1:])
    await _checked(binary, "-t", "nat", "-F", chain)
    await _checked(binary, "-t", "nat", "-X", chain)
    return True


async def remove_idle_firewall_chains(*, iptables: str | None = None) -> bool:
    """Delete ``CNI-FORWARD``/``CNI-ADMIN`` if unused; return whether they were removed."""
    binary = _iptables_binary(iptables)
    code, forward_rules, _ = await _iptables(binary, "-S", FORWARD_CHAIN)
    if code != 0:
        return False  # the chain does not exist
    _, admin_rules, _ = await _iptables(binary, "-S", ADMIN_CHAIN)
    if _rules(forward_rules, FORWARD_CHAIN) != [_ADMIN_JUMP]:
        return False
    if _rules(admin_rules, ADMIN_CHAIN):
        return False
    await _checked(
        binary, "-D", "FORWARD", "-m", "comment", "--comment", _JUMP_COMMENT, "-j", FORWARD_CHAIN
    )
    for chain in (FORWARD_CHAIN, ADMIN_CHAIN):
        await _checked(binary, "-F", chain)
        await _checked(binary, "-X", chain)
    return True


def _rules(listing: str, chain: str) -> list[str]:
    return [line for line in listing.splitlines() if line.startswith(f"-A {chain} ")]


async def _checked(binary: str, *args: str) -> None:
    code, _, stderr = await _iptables(binary, *args)
    # A concurrent teardown may have removed a piece first; anything else is a fault.
    if code != 0 and not any(text in stderr for text in _ALREADY_GONE):
        raise NetworkError(f"iptables {' '.join(args)} failed: {stderr.strip()}")


async def _iptables(binary: str, *args: str) -> tuple[int, str, str]:
    # `-w 5`: waits at most 5 s for the xtables lock; killed if its caller is cancelled.
    finished = await run_program([binary, "-w", "5", *args])
    return finished.returncode, finished.stdout.decode(), finished.stderr.decode()
