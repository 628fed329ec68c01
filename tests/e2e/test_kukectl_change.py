"""kukectl's verbs that change objects in place or in bulk, as kubectl's: label, annotate,
patch, delete -l/--all, delete -f of what apply -f created (its parents too), wait for
something that does not exist, config current-context."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.api import Kind
from kukeon.controllers.scheduler import NODE_NOT_FOUND
from kukeon.store import NotFound
from tests.fixtures.kukectl import KUKECTL, kukectl, kukectl_env
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container, get_cell

pytestmark = pytest.mark.e2e


async def test_label_annotate_patch_and_bulk_delete(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    for name in ("a", "b", "c"):
        await k.apply(cell_doc(k, name, [container(k, "x")], nodeName="no-such-node"))
    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]

    code, out, err = await kukectl(k, "label", "cell", "a", "b", "tier=web", *scope)
    assert code == 0, err
    assert out.splitlines() == ["cell/a labeled", "cell/b labeled"]
    code, _, err = await kukectl(k, "label", "cell", "a", "tier=db", *scope)
    assert code == 1
    assert "--overwrite" in err
    # kubectl's KIND/NAME as well as KIND NAME
    code, _, err = await kukectl(k, "label", "cell/a", "tier=db", "--overwrite", *scope)
    assert code == 0, err
    assert (await get_cell(k, cell_key(k, "a"))).metadata.labels == {"tier": "db"}
    code, out, err = await kukectl(k, "label", "cell", "a", "tier-", *scope)
    assert code == 0, err
    assert out.splitlines() == ["cell/a unlabeled"]
    assert (await get_cell(k, cell_key(k, "a"))).metadata.labels == {}
    # as kubectl: removing a label that is not there is said, and changes nothing
    version = (await get_cell(k, cell_key(k, "a"))).metadata.resource_version
    code, out, err = await kukectl(k, "label", "cell", "a", "tier-", *scope)
    assert code == 0, err
    assert out.splitlines() == ['label "tier" not found.', "cell/a not labeled"]
    assert (await get_cell(k, cell_key(k, "a"))).metadata.resource_version == version

    code, _, err = await kukectl(k, "annotate", "cells", "--all", "owner=team-a", *scope)
    assert code == 0, err
    for name in ("a", "b", "c"):
        cell = await get_cell(k, cell_key(k, name))
        assert cell.metadata.annotations["owner"] == "team-a"

    code, out, err = await kukectl(
        k, "patch", "cell", "c", "-p", '{"spec": {"desiredState": "Stopped"}}', *scope
    )
    assert code == 0, err
    assert out.strip() == "cell/c patched"
    assert str((await get_cell(k, cell_key(k, "c"))).spec.desired_state) == "Stopped"
    # as kubectl: a patch that changes nothing says so, and kukeond writes nothing (cell b:
    # nothing changes its status, as c's controller does after its stop, once the scheduler
    # has marked it NodeNotFound: that mark, retried at its next pass when it raced the
    # annotate above, landed once between the two reads: '97' == '90')
    marked = await k.wait_for(
        Kind.CELL, cell_key(k, "b"), until=lambda cell: cell.status.reason == NODE_NOT_FOUND
    )
    version = marked.metadata.resource_version
    for no_op in ("{}", '{"metadata": {"labels": {"tier": "web"}}}'):
        code, out, err = await kukectl(k, "patch", "cell/b", "-p", no_op, *scope)
        assert (code, out) == (0, "cell/b patched (no change)\n"), err
    code, out, err = await kukectl(k, "patch", "cell/b", "-p", "{}", "--dry-run=server", *scope)
    assert (code, out) == (0, "cell/b patched (no change) (server dry run)\n"), err
    code, out, err = await kukectl(
        k, "patch", "cell/b", "-p", '{"metadata": {"labels": {"x": "1"}}}', "--dry-run=server",
        *scope,
    )  # fmt: skip
    assert (code, out) == (0, "cell/b patched (server dry run)\n"), err
    # kubectl's set env --list: each container's environment (changes given made in memory)
    code, out, err = await kukectl(k, "set", "env", "cell/b", "--list", "A=1", *scope)
    assert (code, out) == (0, "# Cell b, container x\nA=1\n"), err
    assert (await get_cell(k, cell_key(k, "b"))).metadata.resource_version == version
    # kubectl's -o name: KIND/NAME alone, whatever the change (patch, label, annotate)
    for change in (["patch", "cell/b", "-p", "{}"], ["label", "cell/b", "x=1"]):
        code, out, err = await kukectl(k, *change, "-o", "name", "--dry-run=server", *scope)
        assert (code, out) == (0, "cell/b\n"), err
    code, _, err = await kukectl(k, "patch", "cell/c", "-p", '{"spec": {"bogus": 1}}', *scope)
    assert code == 1
    assert "bogus" in err
    code, _, err = await kukectl(k, "patch", "cell", "c", "--type", "json", "-p", "[]", *scope)
    assert code == 2

    # waiting for something that does not exist fails at once
    code, _, err = await kukectl(
        k, "wait", "cell/nosuch", "--for=condition=Ready", "--timeout=60s", *scope
    )
    assert code == 1
    assert "nosuch" in err

    code, out, err = await kukectl(k, "delete", "cells", "-l", "tier=web", *scope)
    assert code == 0, err
    assert out.splitlines() == ["cell/b deleted"]
    code, out, err = await kukectl(k, "delete", "cell/a", "cell/c", "-o", "name", *scope)
    assert code == 0, err
    assert sorted(out.splitlines()) == ["cell/a", "cell/c"]  # kubectl's -o name
    code, out, err = await kukectl(k, "delete", "cells", "--all", *scope)
    assert code == 0, err
    assert not (await k.registry.list(Kind.CELL, (k.realm, "s1", "st1"))).items


def _app_cell(k: Kukeond, stack_line: str = "") -> str:
    """Cell `app` in space `sp` of `k`'s realm, never placed (nothing runs)."""
    return f"""
apiVersion: kukeon.io/v1beta1
kind: Cell
metadata: {{name: app}}
spec:
  realmId: {k.realm}
  spaceId: sp
  {stack_line}
  nodeName: no-such-node
  containers: [{{id: a, image: {k.image.name}}}]
"""


async def test_delete_f_undoes_apply_f_parents_included(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    manifests = tmp_path / "app"
    manifests.mkdir()
    (manifests / "cell.yaml").write_text(_app_cell(k, "stackId: st"))
    # A stack created by hand in the same realm: not apply's, so it stays.
    await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}})
    code, out, err = await kukectl(k, "apply", "-f", str(manifests))
    assert code == 0, err
    assert "space/sp created" in out
    await k.apply(
        {
            "kind": "Stack",
            "metadata": {"name": "mine"},
            "spec": {"realmId": k.realm, "spaceId": "sp"},
        }
    )

    code, out, err = await kukectl(k, "delete", "-f", str(manifests), "--timeout=60s")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["cell/app deleted", "stack/st deleted (apply had created it)"]
    assert "space/sp kept (it has other children)" in lines
    with pytest.raises(NotFound):
        await k.registry.get(Kind.STACK, (k.realm, "sp", "st"))
    await k.registry.get(Kind.STACK, (k.realm, "sp", "mine"))
    await k.registry.get(Kind.REALM, (k.realm,))  # declared by nobody, created by the test


async def test_delete_f_removes_a_parent_apply_made_inside_a_declared_one(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """A manifest declaring a Space and a Cell in it, no Stack: apply makes the stack, and
    delete -f removes it before the declared space (which is refused while it has a child:
    the space and the realm apply made were left behind, exit 1)."""
    k = kukeond
    manifest = tmp_path / "app.yaml"
    space = "apiVersion: kukeon.io/v1beta1\nkind: Space\nmetadata: {name: sp}\n"
    manifest.write_text(f"{space}spec: {{realmId: {k.realm}}}\n---{_app_cell(k)}")
    code, out, err = await kukectl(k, "apply", "-f", str(manifest))
    assert code == 0, err
    assert "stack/default created" in out

    code, out, err = await kukectl(k, "delete", "-f", str(manifest), "--timeout=60s")
    assert code == 0, err
    assert out.splitlines() == [
        "cell/app deleted",
        "stack/default deleted (apply had created it)",
        "space/sp deleted",
        f"realm/{k.realm} deleted (apply had created it)",
    ]
    with pytest.raises(NotFound):
        await k.registry.get(Kind.REALM, (k.realm,))


async def test_config_current_context(kukeond: Kukeond, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    current = ("--config", str(config), "config", "current-context")
    code, _, err = await kukectl(kukeond, *current)
    assert code == 1
    assert "not set" in err
    code, _, err = await kukectl(
        kukeond, "--config", str(config), "config", "set-context", "dev",
        "--server", "unix:///run/kukeon/kukeond.sock", "--current",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = await kukectl(kukeond, "--config", str(config), "config", "current-context")
    assert code == 0, err
    assert out.strip() == "dev"


async def test_diff_and_edit(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    await k.hierarchy()
    manifest = tmp_path / "cell.yaml"

    def write(state: str) -> None:
        manifest.write_text(
            f"""
apiVersion: kukeon.io/v1beta1
kind: Cell
metadata: {{name: d, labels: {{tier: web}}}}
spec:
  realmId: {k.realm}
  spaceId: s1
  stackId: st1
  nodeName: no-such-node
  desiredState: {state}
  containers: [{{id: a, image: {k.image.name}}}]
"""
        )

    write("Running")
    code, out, err = await kukectl(k, "diff", "-f", str(manifest))
    assert code == 1, err  # a new object is a difference
    assert "+++ merged/cell/d" in out
    code, out, err = await kukectl(k, "apply", "-f", str(manifest))
    assert code == 0, err
    code, out, err = await kukectl(k, "diff", "-f", str(manifest))
    assert (code, out) == (0, ""), err
    write("Stopped")
    code, out, err = await kukectl(k, "diff", "-f", str(manifest))
    assert code == 1, err
    assert "-  desiredState: Running\n+  desiredState: Stopped\n" in out
    assert str((await get_cell(k, cell_key(k, "d"))).spec.desired_state) == "Running"  # untouched

    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/^    tier: web/    tier: db/' \"$1\"\n")
    editor.chmod(0o755)
    code, out, err = await kukectl_env(k, {"KUKE_EDITOR": str(editor)}, "edit", "cell", "d", *scope)
    assert code == 0, err
    assert out.strip() == "cell/d edited"
    assert (await get_cell(k, cell_key(k, "d"))).metadata.labels == {"tier": "db"}
    code, out, err = await kukectl_env(k, {"KUKE_EDITOR": "true"}, "edit", "cell", "d", *scope)
    assert (code, out.strip()) == (0, "Edit cancelled, no changes made.")
    # refused by the server: reopened with the reason; saved unchanged again, it gives up
    bad = tmp_path / "bad.sh"
    bad.write_text(
        "#!/bin/sh\ngrep -q '^# error: .*restartPolicy' \"$1\" && echo seen >> "
        f"{tmp_path}/seen\nsed -i 's/^    restartPolicy: .*/    restartPolicy: sometimes/' \"$1\"\n"
    )
    bad.chmod(0o755)
    given_up = tmp_path / "given-up"
    given_up.mkdir()
    code, _, err = await kukectl_env(
        k, {"KUKE_EDITOR": str(bad), "TMPDIR": str(given_up)}, "edit", "cell", "d", *scope
    )
    assert code == 1
    assert "refused" in err
    assert (tmp_path / "seen").read_text() == "seen\n"  # the second round showed the reason
    [kept] = given_up.glob("kukectl-edit-*.yaml")  # and giving up keeps the edit, named
    assert str(kept) in err
    assert "restartPolicy" in err

    # kukeond writes the cell's status while the editor is open (a restart, a probe): the
    # edit goes over the newer version (it was "changed on the server", the edit lost)
    words = " ".join(scope)
    racing = tmp_path / "racing.sh"
    racing.write_text(
        f"#!/bin/sh\n{KUKECTL} patch cell d {words} --subresource status "
        '-p \'{"status": {"message": "written meanwhile"}}\' > /dev/null\n'
        "sed -i 's/^    tier: db/    tier: api/' \"$1\"\n"
    )
    racing.chmod(0o755)
    code, out, err = await kukectl_env(k, {"KUKE_EDITOR": str(racing)}, "edit", "cell", "d", *scope)
    assert (code, out.strip()) == (0, "cell/d edited"), err
    assert (await get_cell(k, cell_key(k, "d"))).metadata.labels == {"tier": "api"}
    # someone else changes its labels meanwhile: refused, never overwritten; the edit kept
    theirs = tmp_path / "theirs.sh"
    theirs.write_text(
        f"#!/bin/sh\n{KUKECTL} label cell d {words} owner=them > /dev/null\n"
        "sed -i 's/^    tier: api/    tier: mine/' \"$1\"\n"
    )
    theirs.chmod(0o755)
    kept_in = tmp_path / "kept"
    kept_in.mkdir()
    code, _, err = await kukectl_env(
        k, {"KUKE_EDITOR": str(theirs), "TMPDIR": str(kept_in)}, "edit", "cell", "d", *scope
    )
    assert code == 1
    assert "changed on the server since it was opened" in err
    assert (await get_cell(k, cell_key(k, "d"))).metadata.labels == {"tier": "api", "owner": "them"}
    [kept] = kept_in.glob("kukectl-edit-*.yaml")
    assert str(kept) in err
    assert "tier: mine" in kept.read_text()
