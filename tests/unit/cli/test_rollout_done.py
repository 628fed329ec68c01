"""``kukectl rollout status`` is done as kubectl's: every replica updated, Ready and
available (Ready for the set's ``minReadySeconds``), the latest spec seen."""

from __future__ import annotations

from typing import Any

from kukeon.api import CellSet, parse_resource
from kukeon.cli.cellsets import rollout_done


def _set(**status: Any) -> CellSet:
    document: dict[str, Any] = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "api", "generation": 1},
        "spec": {
            "replicas": 3,
            "minReadySeconds": 5,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"id": "c", "image": "i"}]},
            },
        },
    }
    cellset = parse_resource(document)
    assert isinstance(cellset, CellSet)
    fields = {"observedGeneration": 1, "templateHash": cellset.template_hash(), **status}
    document["status"] = fields
    parsed = parse_resource(document)
    assert isinstance(parsed, CellSet)
    return parsed


def test_ready_but_not_yet_available_is_not_done() -> None:
    counts = {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3}
    done, at = rollout_done(_set(**counts, availableReplicas=0))
    assert not done
    assert at == "3 of 3 updated, 3 ready, 0 available, 3 in all"
    assert rollout_done(_set(**counts, availableReplicas=3))[0]
