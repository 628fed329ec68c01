"""Unit tests never change the host's firewall.

A unit test that built ``SpaceNetworks`` with its defaults ran the real ``nft`` against
the table ``inet kukeon``, the one a kukeond at the default paths (the quickstart's, an
operator's) keeps its spaces' egress in: each run of the unit suite added a set
``cells-kk-r-s`` there, which that kukeond saw as changed behind its back and wrote its
rules again for (NetworkRulesRestored on every space). Here ``nft`` fails the test that
calls it; integration tests use a private table (``tests/fixtures/kukeond.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import pytest

from kukeon.runtime.network import nfttable


async def _refused(argv: Sequence[str], **_: Any) -> NoReturn:
    raise AssertionError(
        f"a unit test ran {' '.join(argv)} on the host: give it a fake NftEgress, or make "
        "it an integration test with a private table"
    )


@pytest.fixture(autouse=True)
def _no_host_nft(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nfttable, "run_program", _refused)
