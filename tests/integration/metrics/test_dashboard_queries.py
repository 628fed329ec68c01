"""A real Prometheus scrapes the metrics source; every dashboard query must return data.

The dashboard's PromQL is evaluated as Grafana would send it: template variables are
substituted ($realm with the source's realm, $space and $node with ``.*``,
$__rate_interval with 1m) and each query goes to Prometheus's HTTP API. The series that
describe cells are then compared with the documents in the store, and deleting a cell
must end its series at the next scrape.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Kind, key_of
from tests.integration.metrics.conftest import MetricsSource
from tests.integration.metrics.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[3] / "charts/kukeon/dashboards/kukeon.json"
_LAYER_KEYS = ("realm", "space", "stack", "cell")


def _exprs(node: Any) -> Iterator[tuple[str, str]]:
    """(panel title, expr) for every ``expr`` anywhere in the dashboard JSON."""
    if isinstance(node, dict):
        title = node.get("title", "")
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield title, value
            else:
                for inner_title, expr in _exprs(value):
                    yield inner_title or title, expr
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def _substitute(expr: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise AssertionError(f"dashboard uses an unknown variable ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def _variables(source: MetricsSource) -> dict[str, str]:
    return {
        "realm": source.realm,  # a DNS label: nothing to escape in a regex
        "space": ".*",
        "node": ".*",
        "__rate_interval": "1m",
        "__interval": "15s",
        "__range": "1h",
    }


async def _documents(source: MetricsSource, kind: Kind) -> list[Any]:
    listing = await source.store.list(kind, (source.realm,) if kind is not Kind.REALM else ())
    if kind is Kind.REALM:
        return [realm for realm in listing.items if realm.metadata.name == source.realm]
    return listing.items


def _layer_labels(kind: Kind, key: tuple[str, ...]) -> tuple[str, ...]:
    return (kind.value, *key, *([""] * (len(_LAYER_KEYS) - len(key))))


async def _wait_until_absent(prometheus: PrometheusServer, expr: str, within: float) -> None:
    deadline = time.monotonic() + within
    while await prometheus.query(expr):
        if time.monotonic() > deadline:
            raise AssertionError(f"{expr} still returns data {within}s after the delete")
        await asyncio.sleep(0.3)


async def test_every_dashboard_query_returns_data_and_matches_the_documents(
    metrics_source: MetricsSource, prometheus: PrometheusServer
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(_exprs(dashboard["panels"]))
    assert len(exprs) >= 20

    await prometheus.wait_for_scrapes(1)
    await metrics_source.poke()  # activity between scrapes, so rates are not all zero
    await prometheus.wait_for_scrapes(3)

    variables = _variables(metrics_source)
    empty = []
    for title, expr in exprs:
        query = _substitute(expr, variables)
        rows = await prometheus.query(query)
        if not rows:
            empty.append(f"{title}: {query}")
        elif "histogram_quantile(0.95" in query and not any(
            math.isfinite(float(row["value"][1])) for row in rows
        ):
            # Every p95 is NaN: nothing was observed between the scrapes.
            empty.append(f"{title} (only NaN): {query}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

    # Template variables: label_values(metric{selector}, label) must offer values.
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
        assert found, variable["definition"]
        series = await prometheus.series(_substitute(found.group(1), variables))
        values = {row.get(found.group(2)) for row in series} - {None, ""}
        assert values, f"variable {variable['name']} offers no values"
        if variable["name"] == "realm":
            assert metrics_source.realm in values

    # readyObserved: one series per cell, equal to the document's latch.
    rows = await prometheus.query(f'kukeon_cell_ready_observed{{realm="{metrics_source.realm}"}}')
    observed = {
        tuple(row["metric"][k] for k in _LAYER_KEYS): float(row["value"][1]) for row in rows
    }
    cells = await _documents(metrics_source, Kind.CELL)
    assert observed == {
        key_of(cell): (1.0 if cell.status.ready_observed else 0.0) for cell in cells
    }
    assert set(observed.values()) == {0.0, 1.0}

    # cell state: exactly one state is 1 per cell, and it is the document's.
    rows = await prometheus.query(f'kukeon_cell_state{{realm="{metrics_source.realm}"}} == 1')
    states = {tuple(row["metric"][k] for k in _LAYER_KEYS): row["metric"]["state"] for row in rows}
    assert states == {key_of(cell): cell.status.state.value for cell in cells}

    # Delegated controllers on every layer, equal to status.subtreeControllers.
    rows = await prometheus.query(
        f'kukeon_subtree_controller_delegated{{realm="{metrics_source.realm}"}}'
    )
    delegated = {
        (*(row["metric"].get(k, "") for k in ("kind", *_LAYER_KEYS)), row["metric"]["controller"])
        for row in rows
    }
    expected = set()
    for kind in (Kind.REALM, Kind.SPACE, Kind.STACK, Kind.CELL):  # the layers (not Node)
        for document in await _documents(metrics_source, kind):
            for controller in document.status.subtree_controllers:
                expected.add((*_layer_labels(kind, key_of(document)), controller))
    assert delegated == expected
    assert {entry[0] for entry in expected} == {"Realm", "Space", "Stack", "Cell"}

    # A deleted cell's series end at the next scrape (Prometheus marks them stale).
    victim = next(cell for cell in cells if cell.status.ready_observed)
    realm, space, stack, name = key_of(victim)
    selector = f'{{realm="{realm}", space="{space}", stack="{stack}", cell="{name}"}}'
    assert await prometheus.query(f"kukeon_cell_ready_observed{selector}")
    await metrics_source.store.delete(Kind.CELL, key_of(victim))
    await _wait_until_absent(prometheus, f"kukeon_cell_ready_observed{selector}", within=20)
    await _wait_until_absent(prometheus, f"kukeon_cell_state{selector}", within=5)
    await _wait_until_absent(prometheus, f"kukeon_container_restarts_total{selector}", within=5)
    # The other cells are still there.
    remaining = await prometheus.query(
        f'kukeon_cell_ready_observed{{realm="{metrics_source.realm}"}}'
    )
    assert len(remaining) == len(cells) - 1
