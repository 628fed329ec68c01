"""``kukeon_cellset_replicas``: four series per CellSet in the cache, gone with the set."""

from __future__ import annotations

from kukeon.api import CellSet, Kind, parse_resource
from kukeon.api.cellset import CellSetStatus
from kukeon.metrics.cache import DocumentCache
from kukeon.metrics.cellsets import CellSetCollector


def a_set(name: str = "web", replicas: int = 3) -> CellSet:
    cellset = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": name},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "k",
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"id": "a", "image": "busybox"}]},
                },
            },
        }
    )
    assert isinstance(cellset, CellSet)
    status = CellSetStatus(replicas=4, ready_replicas=2, updated_replicas=1, available_replicas=2)
    return cellset.model_copy(update={"status": status})


def samples(cache: DocumentCache) -> dict[tuple[str, ...], float]:
    (family,) = CellSetCollector(cache).collect()
    return {tuple(s.labels[k] for k in ("cellset", "kind")): s.value for s in family.samples}


def test_each_set_has_its_four_counts_until_it_goes() -> None:
    cache = DocumentCache()
    cache.replace(Kind.CELL_SET, [a_set(), a_set("api", 1)])
    found = samples(cache)
    assert {k: v for k, v in found.items() if k[0] == "web"} == {
        ("web", "desired"): 3.0,
        ("web", "ready"): 2.0,
        ("web", "updated"): 1.0,
        ("web", "available"): 2.0,
    }
    (family,) = CellSetCollector(cache).collect()
    assert family.name == "kukeon_cellset_replicas"
    assert {s.labels["realm"] for s in family.samples} == {"r"}
    cache.replace(Kind.CELL_SET, [a_set("api", 1)])
    assert {k[0] for k in samples(cache)} == {"api"}
