"""Exec probes wait for a slot of their own realm: one realm's slow checks hold its slots,
not another realm's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

from kukeon.api.probes import Probe
from kukeon.controllers.probers import EXEC_SLOTS, CheckResult, ExecSlots, Prober, ProbeTarget
from kukeon.runtime.containerd import ContainerdClient

PROBE = Probe.model_validate({"exec": {"command": ["true"]}, "timeoutSeconds": 3600})


class SlowInHog(Prober):
    """Exec checks of namespace ``hog`` last until ``release`` is set; others answer at once."""

    def __init__(self, slots: int = EXEC_SLOTS) -> None:
        super().__init__(cast(ContainerdClient, None), exec_slots=slots)
        self.release = asyncio.Event()
        self.running: dict[str, int] = {}

    async def _exec(self, action: object, target: ProbeTarget, seconds: float) -> CheckResult:
        self.running[target.namespace] = self.running.get(target.namespace, 0) + 1
        if target.namespace == "hog":
            await self.release.wait()
        return CheckResult(True)


def target(namespace: str) -> ProbeTarget:
    return ProbeTarget(namespace=namespace, container_id="c", address=None, fifo_root=Path("/"))


async def test_one_realms_slow_exec_probes_leave_another_realms_their_slots() -> None:
    """Before, one pool for the node: a realm's EXEC_SLOTS checks of an hour (`sleep 3600`,
    timeoutSeconds 3600) held every slot, and another realm's `true` never ran."""
    prober = SlowInHog()
    hogging = [asyncio.create_task(prober.check(PROBE, target("hog"))) for _ in range(EXEC_SLOTS)]
    waiting = asyncio.create_task(prober.check(PROBE, target("hog")))
    await asyncio.sleep(0)
    assert prober.running == {"hog": EXEC_SLOTS}  # the realm's own next check waits
    result = await asyncio.wait_for(prober.check(PROBE, target("team")), 1)
    assert result.success
    prober.release.set()
    assert all(r.success for r in await asyncio.gather(*hogging, waiting))
    assert prober.running == {"hog": EXEC_SLOTS + 1, "team": 1}


async def test_a_realms_slots_are_forgotten_once_no_check_holds_or_awaits_them() -> None:
    slots = ExecSlots(1)
    async with slots.held("a"):
        entered = asyncio.Event()

        async def second() -> None:
            async with slots.held("a"):
                entered.set()

        task = asyncio.create_task(second())
        await asyncio.sleep(0)
        assert len(slots) == 1
        assert not entered.is_set()
    await task
    assert entered.is_set()
    assert len(slots) == 0
