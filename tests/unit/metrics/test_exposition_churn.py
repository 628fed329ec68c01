"""Rendering the samples of cells that come and go keeps a bounded number of label pairs."""

from __future__ import annotations

from prometheus_client.samples import Sample

from kukeon.metrics import exposition


def _cell_samples(name: str) -> list[Sample]:
    labels = {"realm": "r", "space": "s", "stack": "k", "cell": name, "node": "n1"}
    return [
        Sample("kukeon_cell_state", {**labels, "state": state}, 1.0 if state == "Ready" else 0.0)
        for state in ("Pending", "Ready", "Failed")
    ]


def test_churned_cells_names_do_not_pile_up_in_the_pair_cache() -> None:
    exposition._label_pair.cache_clear()
    for batch in range(6):
        for index in range(2000):
            text = exposition.render_samples(_cell_samples(f"c{batch}-{index}"))
            assert f'cell="c{batch}-{index}"' in text
        assert exposition._label_pair.cache_info().currsize <= 4096
    # The pairs every cell shares are still answered from the cache.
    hits = exposition._label_pair.cache_info().hits
    exposition.render_samples(_cell_samples("c0-0"))
    assert exposition._label_pair.cache_info().hits - hits >= 3 * 5
