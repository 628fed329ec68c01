"""The Grafana dashboard's shape, and that it and docs/metrics.md name only real metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.unit.metrics.test_naming import _families

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "charts/kukeon/dashboards/kukeon.json"
DOC = ROOT / "docs/metrics.md"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _exposed_names() -> set[str]:
    return {sample.name for family in _families() for sample in family.samples}


def test_current_schema_and_variables() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"]
    assert dashboard["title"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("realm", "space", "node"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["definition"].startswith("label_values(")
        assert variable["query"]["query"] == variable["definition"]


def test_every_panel_uses_the_datasource_variable() -> None:
    dashboard = _dashboard()
    ids = []
    for panel in _panels(dashboard):
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
    assert len(ids) == len(set(ids))


def test_the_asked_for_panels_exist() -> None:
    titles = {panel["title"] for panel in _panels(_dashboard())}
    for wanted in (
        "Cells by state",
        "Not-ready cells",
        "readyObserved per cell",
        "Delegated controllers per layer",
        "Container restarts",
        "Reconcile rate",
        "Reconcile errors",
        "Reconcile latency p95",
        "Queue depth",
        "etcd request latency",
        "containerd call latency",
        "CPU per cell",
        "Memory per cell",
        "Memory against limit",
        "Tasks per cell",
    ):
        assert wanted in titles


def test_queries_name_only_exposed_metrics() -> None:
    exposed = _exposed_names()
    for panel in _panels(_dashboard()):
        for target in panel.get("targets", []):
            for name in re.findall(r"\b((?:kukeon|process|python)_[a-z0-9_]+)\b", target["expr"]):
                assert name in exposed, f"{panel['title']}: {name} is not exposed"


def test_docs_list_every_kukeon_metric() -> None:
    text = DOC.read_text()
    base_names = set()
    for name in _exposed_names():
        if name.startswith("kukeon_") and not name.endswith("_created"):
            base_names.add(re.sub(r"_(bucket|count|sum)$", "", name))
    missing = sorted(name for name in base_names if f"`{name}`" not in text)
    assert not missing, f"docs/metrics.md does not describe {missing}"
