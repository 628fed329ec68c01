"""A container no node could run is refused by the API (422 naming the field), not
accepted and then failed on its node: in a cell, a set's template and a space's defaults.
A document stored before the rule stays writable while the write keeps the mistake as it
was (its node reports it, as before)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from kukeon.api import parse_resource
from tests.integration.apiserver.conftest import Api, cell_doc, realm_doc, space_doc, stack_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
SPACES = f"{V}/realms/default/spaces"
STACK = f"{SPACES}/default/stacks/default"
MERGE = {"Content-Type": "application/merge-patch+json"}


async def _answer(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = await response.json()
    return response.status, body


def _fields(body: dict[str, Any]) -> list[str]:
    return [cause["field"] for cause in body["details"]["causes"]]


async def _defaults(http: aiohttp.ClientSession) -> None:
    for path, doc in (
        (f"{V}/realms", realm_doc("default")),
        (SPACES, space_doc("default")),
        (f"{SPACES}/default/stacks", stack_doc("default")),
    ):
        status, body = await _answer(await http.post(path, json=doc))
        assert status == 201, body


def _cell(name: str, **container: Any) -> dict[str, Any]:
    doc = cell_doc(name)
    doc["spec"]["containers"][0].update(container)
    return doc


def _cellset(name: str, **container: Any) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"id": "main", "image": "busybox", **container}]},
    }
    return {
        "kind": "CellSet",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
    }


async def test_a_cell_no_node_could_run_is_a_422_naming_each_field(
    http: aiohttp.ClientSession,
) -> None:
    await _defaults(http)
    doc = _cell(
        "bad",
        user="a:b:c",
        capabilities={"add": ["CAP_FLY"]},
        securityOpts=["apparmor=mine"],
        tmpfs=[{"path": "/proc"}, {"path": "/x", "options": ["bogus"]}],
        volumes=[{"kind": "tmpfs", "target": "/data"}, {"kind": "tmpfs", "target": "/data/"}],
    )
    for dry_run in ("?dryRun=All", ""):
        status, body = await _answer(await http.post(f"{STACK}/cells{dry_run}", json=doc))
        assert status == 422, body
        assert body["reason"] == "Invalid"
        assert sorted(_fields(body)) == [
            "spec.containers[0].capabilities.add[0]",
            "spec.containers[0].securityOpts[0]",
            "spec.containers[0].tmpfs[0].path",  # every mount mistake, each named
            "spec.containers[0].tmpfs[1].options[0]",
            "spec.containers[0].user",
            "spec.containers[0].volumes[1].target",
        ], body
        assert "unknown capability 'CAP_FLY'" in body["message"]
    status, body = await _answer(await http.get(f"{STACK}/cells/bad"))
    assert status == 404, body  # nothing written

    # A negative id was looked up as a name in the image and failed on the node.
    for user in ("-1", "1000:-1"):
        status, body = await _answer(
            await http.post(f"{STACK}/cells", json=_cell("neg", user=user))
        )
        assert (status, _fields(body)) == (422, ["spec.containers[0].user"]), body
        assert "nor a user or group name" in body["message"], body

    # The mounts' mistakes, one at a time.
    status, body = await _answer(
        await http.post(f"{STACK}/cells", json=_cell("proc", tmpfs=[{"path": "/proc"}]))
    )
    assert (status, _fields(body)) == (422, ["spec.containers[0].tmpfs[0].path"]), body
    twice = _cell(
        "twice", volumes=[{"kind": "tmpfs", "target": "/d"}, {"kind": "tmpfs", "target": "/d/"}]
    )
    status, body = await _answer(await http.post(f"{STACK}/cells", json=twice))
    assert (status, _fields(body)) == (422, ["spec.containers[0].volumes[1].target"]), body

    good = _cell("good", user="1000:1000", capabilities={"drop": ["ALL"], "add": ["chown"]})
    good["spec"]["containers"][0]["tmpfs"] = [{"path": "/x", "options": ["size=1m", "exec"]}]
    status, body = await _answer(await http.post(f"{STACK}/cells", json=good))
    assert status == 201, body


async def test_a_sets_template_and_a_spaces_defaults_are_checked_too(
    http: aiohttp.ClientSession,
) -> None:
    await _defaults(http)
    cellset = _cellset("web", securityOpts=["label=x"])
    status, body = await _answer(await http.post(f"{STACK}/cellsets", json=cellset))
    assert status == 422, body
    assert _fields(body) == ["spec.template.spec.containers[0].securityOpts[0]"]

    space = space_doc("other")
    space["spec"]["defaults"] = {
        "container": {
            "user": "root:",
            "tmpfs": [{"path": "/"}],
            # Was a 201: every container without resources of its own inherited it.
            "resources": {"memoryLimitBytes": 2 << 20},
        }
    }
    status, body = await _answer(await http.post(SPACES, json=space))
    assert status == 422, body
    assert sorted(_fields(body)) == [
        "spec.defaults.container.resources.memoryLimitBytes",
        "spec.defaults.container.tmpfs[0].path",
        "spec.defaults.container.user",
    ]


async def test_a_mount_over_what_the_runtime_owns_is_a_422_naming_the_path(
    http: aiohttp.ClientSession,
) -> None:
    """Were stored (201) and failed at run time, or ran without what runc put there."""
    await _defaults(http)
    secrets = [
        {"name": "a", "secretRef": {"name": "s", "key": "a"}, "mountPath": "/run/a"},
        {"name": "b", "secretRef": {"name": "s", "key": "b"}, "mountPath": "/dev"},
    ]
    # The mounts are checked as the node makes them: the first mistake is the one named.
    for fields, field in (
        ({"secrets": secrets}, "secrets[1].mountPath"),
        ({"tmpfs": [{"path": "/sys"}]}, "tmpfs[0].path"),
        ({"tmpfs": [{"path": "/dev/cache"}, {"path": "/dev/null"}]}, "tmpfs[1].path"),
    ):
        doc = _cell("owned", **fields)
        status, body = await _answer(await http.post(f"{STACK}/cells", json=doc))
        assert (status, _fields(body)) == (422, [f"spec.containers[0].{field}"]), body

    cellset = _cellset("tty", tmpfs=[{"path": "/run/kukeon/tty"}])
    status, body = await _answer(await http.post(f"{STACK}/cellsets", json=cellset))
    assert status == 422, body
    assert _fields(body) == ["spec.template.spec.containers[0].tmpfs[0].path"]
    assert "tty wrapper's state" in body["message"], body

    # What runc does not make under /dev works, and a bind volume may stand in for a node.
    fine = _cell("fine", tmpfs=[{"path": "/dev/cache"}, {"path": "/dev/shm"}])
    status, body = await _answer(await http.post(f"{STACK}/cells", json=fine))
    assert status == 201, body


async def test_a_mistake_stored_before_the_rule_stays_writable(
    http: aiohttp.ClientSession, api: Api
) -> None:
    await _defaults(http)
    old = _cell("old", capabilities={"add": ["CAP_FLY"]})
    old["spec"]["realmId"] = old["spec"]["spaceId"] = old["spec"]["stackId"] = "default"
    await api.registry.create(parse_resource(old))  # as an older kukeond let it be written

    stop = {"spec": {"desiredState": "Stopped"}, "metadata": {"labels": {"a": "b"}}}
    response = await http.patch(f"{STACK}/cells/old", data=json.dumps(stop), headers=MERGE)
    status, body = await _answer(response)
    assert status == 200, body
    worse = {
        "spec": {
            "containers": [
                {"id": "main", "image": "busybox:latest", "root": True,
                 "capabilities": {"add": ["CAP_FLY"]}, "user": "x:y:z"}
            ]
        }
    }  # fmt: skip
    response = await http.patch(f"{STACK}/cells/old", data=json.dumps(worse), headers=MERGE)
    status, body = await _answer(response)
    assert (status, _fields(body)) == (422, ["spec.containers[0].user"]), body
