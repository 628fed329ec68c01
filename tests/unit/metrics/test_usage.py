"""The kukeon_cell_* usage series: one per running cell, a limit only when there is one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from kukeon.metrics.exposition import render_text
from kukeon.metrics.usage import CellUsageCollector, CellUsageSample


def _sample(cell: str, **figures: float | int | None) -> CellUsageSample:
    values: dict[str, float | int | None] = {
        "cpu_seconds": 1.5,
        "memory_bytes": 1024,
        "memory_limit_bytes": None,
        "pids": 2,
        **figures,
    }
    return CellUsageSample("r", "s", "k", cell, "n1", **values)  # type: ignore[arg-type]


def test_series_per_cell_with_the_cell_labels() -> None:
    samples = [_sample("a", memory_limit_bytes=4096), _sample("b"), _sample("a", pids=99)]
    registry = CollectorRegistry()
    registry.register(CellUsageCollector(lambda: samples))
    text = render_text(registry).decode()
    labels = 'realm="r",space="s",stack="k",cell="a",node="n1"'
    assert f"kukeon_cell_cpu_seconds_total{{{labels}}} 1.5" in text
    assert f"kukeon_cell_memory_bytes{{{labels}}} 1024.0" in text
    assert f"kukeon_cell_memory_limit_bytes{{{labels}}} 4096.0" in text
    assert f"kukeon_cell_pids{{{labels}}} 2.0" in text  # the duplicate of a is dropped
    assert "# TYPE kukeon_cell_cpu_seconds_total counter" in text
    # b has no limit: no series rather than a zero or an infinity
    assert text.count("kukeon_cell_memory_limit_bytes{") == 1
    assert text.count("kukeon_cell_pids{") == 2


def test_missing_figures_make_no_series_and_registering_reads_nothing() -> None:
    calls: list[int] = []

    def source() -> list[CellUsageSample]:
        calls.append(1)
        return [_sample("a", cpu_seconds=None, memory_bytes=None, pids=None)]

    registry = CollectorRegistry()
    registry.register(CellUsageCollector(source))
    assert calls == []
    text = render_text(registry).decode()
    assert calls == [1]
    assert 'cell="a"' not in text
