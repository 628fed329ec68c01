"""`kukectl get` as a kubectl user types it, against a real kukeond with real cells:
KIND/NAME, partial not-found, field and label selectors, -A narrowed by --realm, label
columns, sorting, custom columns and JSONPath templates."""

from __future__ import annotations

import pytest

from kukeon.api import Kind
from tests.fixtures.kukectl import kukectl
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.e2e


async def test_get_speaks_kubectl(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    for name in ("web", "db"):
        document = cell_doc(k, name, [container(k, "a")])
        document["metadata"]["labels"] = {"tier": name}
        await k.apply(document)
    await k.apply(
        cell_doc(k, "broken", [{"id": "a", "image": k.image.name, "command": "/nonexistent"}])
    )
    for name in ("web", "db"):
        await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready")
    await k.wait_for(Kind.CELL, cell_key(k, "broken"), state="Failed")
    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]

    # KIND/NAME, and what exists is printed before the one-line error of what does not
    code, out, err = await kukectl(k, "get", "cell/web", "cell/nosuch", *scope)
    assert code == 1
    assert out.splitlines()[1].split()[:2] == ["web", "Ready"]
    assert err.count("\n") == 1
    assert "nosuch" in err

    # the server filters by field; an unsupported field is refused by name
    code, out, err = await kukectl(
        k, "get", "cells", "--field-selector", "status.state!=Ready", "--no-headers", *scope
    )
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()] == ["broken"]
    code, _, err = await kukectl(k, "get", "cells", "--field-selector", "spec.nope=1", *scope)
    assert code == 1
    assert "spec.nope" in err

    # a failed cell says why in -o wide
    code, out, err = await kukectl(k, "get", "cell", "broken", "-o", "wide", *scope)
    assert code == 0, err
    assert "CommandNotFound" in out

    # -A with --realm: every cell of that realm, with its parents
    code, out, err = await kukectl(k, "get", "cells", "-A", "--realm", k.realm, "--no-headers")
    assert code == 0, err
    assert sorted(line.split()[3] for line in out.splitlines()) == ["broken", "db", "web"]
    assert all(line.split()[0] == k.realm for line in out.splitlines())

    # labels: selector, -L column, sort
    code, out, err = await kukectl(
        k, "get", "cells", "-l", "tier", "-L", "tier", "--sort-by", ".metadata.name", *scope
    )
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split()[-1] == "TIER"
    assert [(r.split()[0], r.split()[-1]) for r in rows] == [("db", "db"), ("web", "web")]

    # templates
    code, out, err = await kukectl(
        k,
        "get",
        "cells",
        "--sort-by",
        ".metadata.name",
        "-o",
        'jsonpath={range .items[*]}{.metadata.name}={.status.state}{"\\n"}{end}',
        *scope,
    )
    assert code == 0, err
    assert out == "broken=Failed\ndb=Ready\nweb=Ready\n"
    code, out, err = await kukectl(
        k,
        "get",
        "cell",
        "web",
        "-o",
        "custom-columns=N:.metadata.name,IP:.status.network.ip",
        *scope,
    )
    assert code == 0, err
    web = await k.registry.get(Kind.CELL, cell_key(k, "web"))
    assert out.splitlines()[1].split() == ["web", web.status.network.ip]
    code, _, err = await kukectl(k, "get", "cells", "-o", "jsonpath={.items[0,1]}", *scope)
    assert code == 2  # a union: refused, not ignored
    assert err.startswith("error: ")
    named = 'jsonpath={.items[?(@.metadata.name=="web")].status.network.ip}'
    code, out, err = await kukectl(k, "get", "cells", "-o", named, *scope)
    assert (code, out) == (0, web.status.network.ip), err

    # kubectl's `all`: the tables that have rows, one line when every kind is empty
    code, out, err = await kukectl(k, "get", "all", "--no-headers", *scope)
    assert code == 0, err
    assert sorted(line.split()[0] for line in out.splitlines()) == ["broken", "db", "web"]
    assert err == ""
    empty = ["--realm", k.realm, "--space", "s1", "--stack", "nosuch"]
    code, out, err = await kukectl(k, "get", "cellsets,cells", *empty)
    assert (code, out) == (0, "")
    assert err.strip() == f"No resources found in {k.realm}/s1/nosuch."
