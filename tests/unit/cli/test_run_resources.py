"""`kukectl run --cpus/--memory`, docker's spellings, as the container's resources."""

from __future__ import annotations

import click
import pytest

from kukeon.cli.runspec import _resources


@pytest.mark.parametrize(
    ("memory", "expected"),
    [("64m", 64 << 20), ("1g", 1 << 30), ("512k", 512 << 10), ("4096", 4096), ("64MB", 64 << 20),
     ("2GiB", 2 << 30), (" 8m ", 8 << 20)],
)  # fmt: skip
def test_memory_sizes(memory: str, expected: int) -> None:
    assert _resources(None, memory) == {"memoryLimitBytes": expected}


@pytest.mark.parametrize("memory", ["", "m", "1.5g", "-1m", "64x", "1t"])
def test_a_malformed_memory_size_is_a_usage_error(memory: str) -> None:
    with pytest.raises(click.exceptions.Exit) as raised:
        _resources(None, memory)
    assert raised.value.exit_code == 2


def test_cpus_are_millicores() -> None:
    assert _resources(0.5, None) == {"cpuLimitMillicores": 500}
    assert _resources(2, "1g") == {"cpuLimitMillicores": 2000, "memoryLimitBytes": 1 << 30}
    assert _resources(None, None) == {}
