"""Removing what the CNI ``firewall`` plugin leaves behind once no network uses it.

The plugin adds ``CNI-FORWARD`` (jumped to from ``FORWARD``) and ``CNI-ADMIN`` to
iptables' filter table on first use and never deletes them, even after every container's
DEL. They are shared by every CNI network on the host, so they are removed only when they
hold nothing but the plugin's own scaffolding (the admin jump); a chain with any
per-container rule left is somebody else's and is kept.
"""

from __future__ import annotations

import asyncio
import shutil

from kukeon.runtime.network.errors import HostPrerequisiteError, NetworkError

FORWARD_CHAIN = "CNI-FORWARD"
ADMIN_CHAIN = "CNI-ADMIN"
_JUMP_COMMENT = "CNI firewall plugin rules"
_ADMIN_JUMP = (
    f"-A {FORWARD_CHAIN} -m comment "
    f'--comment "CNI firewall plugin admin overrides" -j {ADMIN_CHAIN}'
)
_ALREADY_GONE = ("No chain", "Bad rule", "does not exist")


async def remove_idle_firewall_chains(*, iptables: str | None = None) -> bool:
    """Delete ``CNI-FORWARD``/``CNI-ADMIN`` if unused; return whether they were removed."""
    binary = iptables or shutil.which("iptables")
    if binary is None:
        raise HostPrerequisiteError(
            piece="the `iptables` command", package="iptables", detail="not found on PATH"
        )
    code, forward_rules, _ = await _iptables(binary, "-S", FORWARD_CHAIN)
    if code != 0:
        return False  # the chain does not exist
    _, admin_rules, _ = await _iptables(binary, "-S", ADMIN_CHAIN)
    if _rules(forward_rules, FORWARD_CHAIN) != [_ADMIN_JUMP]:
        return False
    if _rules(admin_rules, ADMIN_CHAIN):
        return False
    steps = [
        ("-D", "FORWARD", "-m", "comment", "--comment", _JUMP_COMMENT, "-j", FORWARD_CHAIN),
        ("-F", FORWARD_CHAIN),
        ("-X", FORWARD_CHAIN),
        ("-F", ADMIN_CHAIN),
        ("-X", ADMIN_CHAIN),
    ]
    for step in steps:
        code, _, stderr = await _iptables(binary, *step)
        # A concurrent teardown may have removed a piece first; anything else is a fault.
        if code != 0 and not any(text in stderr for text in _ALREADY_GONE):
            raise NetworkError(f"iptables {' '.join(step)} failed: {stderr.strip()}")
    return True


def _rules(listing: str, chain: str) -> list[str]:
    return [line for line in listing.splitlines() if line.startswith(f"-A {chain} ")]


async def _iptables(binary: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        binary,
        "-w",
        "5",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    return process.returncode or 0, stdout.decode(), stderr.decode()
