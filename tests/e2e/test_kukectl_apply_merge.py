"""`kukectl apply` merges three ways, as kubectl's: what other commands changed since the last
apply (`label`, `stop`) and the manifest never named is kept; what the manifest named and no
longer names is removed; containers are merged by id. `diff` shows what apply would do.
`edit` leaves the record as it was, `edit --save-config` records the edited object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kukeon.api import Cell
from kukeon.api.applying import LAST_APPLIED_ANNOTATION
from tests.fixtures.kukectl import kukectl, kukectl_env
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_key, get_cell

pytestmark = pytest.mark.e2e


def _manifest(
    k: Kukeond, *, labels: str, containers: list[str], extra: str = "  nodeName: no-such-node"
) -> str:
    """Cell `app` of `k`'s realm, space s1, stack st1, never placed (nothing runs)."""
    listed = ", ".join(f"{{id: {name}, image: {k.image.name}}}" for name in containers)
    return f"""
apiVersion: kukeon.io/v1beta1
kind: Cell
metadata:
  name: app
  labels: {{{labels}}}
spec:
  realmId: {k.realm}
  spaceId: s1
  stackId: st1
  containers: [{listed}]
{extra}
"""


async def _apply(k: Kukeond, text: str) -> str:
    code, out, err = await kukectl(k, "apply", "-f", "-", stdin=text.encode())
    assert code == 0, err
    return out.strip()


async def _cell(k: Kukeond) -> Cell:
    return await get_cell(k, cell_key(k, "app"))


async def test_apply_keeps_what_others_changed_and_removes_what_it_dropped(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]
    first = _manifest(k, labels="app: web", containers=["a", "b"])
    assert await _apply(k, first) == "cell/app created"
    recorded = json.loads((await _cell(k)).metadata.annotations[LAST_APPLIED_ANNOTATION])
    assert recorded["metadata"]["labels"] == {"app": "web"}
    assert "desiredState" not in recorded["spec"]  # the manifest's fields, not the defaults

    # `label` and `stop` change what the manifest never named: apply keeps both.
    code, _, err = await kukectl(k, "label", "cell/app", "team=a", *scope)
    assert code == 0, err
    code, _, err = await kukectl(k, "stop", "cell/app", "--no-wait", *scope)
    assert code == 0, err
    code, out, err = await kukectl(k, "diff", "-f", "-", *scope, stdin=first.encode())
    assert (code, out) == (0, ""), err
    assert await _apply(k, first) == "cell/app unchanged"
    cell = await _cell(k)
    assert cell.metadata.labels == {"app": "web", "team": "a"}
    assert str(cell.spec.desired_state) == "Stopped"

    # A label and a container the manifest drops go; a container it adds comes.
    second = _manifest(k, labels="tier: front", containers=["a", "c"])
    code, out, err = await kukectl(k, "diff", "-f", "-", *scope, stdin=second.encode())
    assert code == 1, err
    assert "-    app: web" in out, out
    assert "+    tier: front" in out, out
    assert await _apply(k, second) == "cell/app configured"
    cell = await _cell(k)
    assert cell.metadata.labels == {"team": "a", "tier": "front"}
    assert [c.id for c in cell.spec.containers] == ["a", "c"]
    assert str(cell.spec.desired_state) == "Stopped"

    # A manifest that names desiredState sets it, as kubectl's apply would.
    running = _manifest(
        k,
        labels="tier: front",
        containers=["a", "c"],
        extra="  nodeName: no-such-node\n  desiredState: Running",
    )
    assert await _apply(k, running) == "cell/app configured"
    assert str((await _cell(k)).spec.desired_state) == "Running"
    code, _, err = await kukectl(k, "delete", "cell/app", "--timeout=60s", *scope)
    assert code == 0, err


async def test_a_first_apply_over_a_run_cell_keeps_what_it_does_not_name(kukeond: Kukeond) -> None:
    """A cell `kukectl run` made has no record: the manifest sets what it names, the rest
    (a label run gave, the container's environment) stays."""
    k = kukeond
    await k.hierarchy()
    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]
    run = ["run", "app", "--image", k.image.name, "-l", "made=run", "-e", "X=1"]
    code, _, err = await kukectl(k, *run, *scope, "--", "sleep", "600")
    assert code == 0, err
    try:
        made = (await _cell(k)).spec.containers[0]
        text = _manifest(k, labels="app: web", containers=["app"], extra="")
        assert await _apply(k, text) == "cell/app configured"
        cell = await _cell(k)
        assert cell.metadata.labels == {"made": "run", "app": "web"}
        assert cell.spec.containers == [made]  # its environment, command and args kept
        assert LAST_APPLIED_ANNOTATION in cell.metadata.annotations
        assert await _apply(k, text) == "cell/app unchanged"
    finally:
        code, _, err = await kukectl(k, "delete", "cell/app", "--timeout=60s", *scope)
        assert code == 0, err


async def test_an_edit_then_the_old_manifest_applied_again_as_kubectl(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """kubectl's edit leaves `last-applied-configuration` as it was (its `--save-config`,
    default false: "Otherwise, the annotation will be unchanged"), so the old manifest
    applied again sets back what it names and keeps what the edit added; with
    `--save-config` the edit records the edited object, so the same apply also removes what
    the edit added (the record names it, the manifest does not)."""
    k = kukeond
    await k.hierarchy()
    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]
    manifest = _manifest(k, labels="app: web", containers=["a"])
    editor = tmp_path / "editor.sh"
    # The label the manifest named changed, one label and one variable added.
    editor.write_text(
        "#!/bin/sh\nsed -i -e 's/^    app: web$/    app: api/' "
        "-e 's/^    env: \\[\\]$/    env: [X=1]/' \"$1\"\n"
        "grep -q '^    owner: edit$' \"$1\" || "
        "sed -i 's/^    app: api$/    app: api\\n    owner: edit/' \"$1\"\n"
    )
    editor.chmod(0o755)

    async def edit(*flags: str) -> Cell:
        code, out, err = await kukectl_env(
            k, {"KUKE_EDITOR": str(editor)}, "edit", "cell/app", *flags, *scope
        )
        assert (code, out.strip()) == (0, "cell/app edited"), err
        edited = await _cell(k)
        assert edited.metadata.labels == {"app": "api", "owner": "edit"}
        assert edited.spec.containers[0].env == ["X=1"]
        return edited

    try:
        assert await _apply(k, manifest) == "cell/app created"
        record = (await _cell(k)).metadata.annotations[LAST_APPLIED_ANNOTATION]
        assert (await edit()).metadata.annotations[LAST_APPLIED_ANNOTATION] == record
        assert await _apply(k, manifest) == "cell/app configured"
        cell = await _cell(k)
        assert cell.metadata.labels == {"app": "web", "owner": "edit"}
        assert cell.spec.containers[0].env == ["X=1"]

        edited = await edit("--save-config")
        saved = json.loads(edited.metadata.annotations[LAST_APPLIED_ANNOTATION])
        assert saved["metadata"]["labels"] == {"app": "api", "owner": "edit"}
        assert saved["spec"]["containers"][0]["env"] == ["X=1"]
        assert not any(key.startswith("kukeon.io/") for key in saved["metadata"]["annotations"])
        code, out, err = await kukectl(k, "diff", "-f", "-", *scope, stdin=manifest.encode())
        assert code == 1, err
        assert "-    owner: edit" in out, out
        assert await _apply(k, manifest) == "cell/app configured"
        cell = await _cell(k)
        assert cell.metadata.labels == {"app": "web"}
        assert cell.spec.containers[0].env == []
        assert await _apply(k, manifest) == "cell/app unchanged"
    finally:
        code, _, err = await kukectl(k, "delete", "cell/app", "--timeout=60s", *scope)
        assert code == 0, err
