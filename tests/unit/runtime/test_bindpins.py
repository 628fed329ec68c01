"""Bind sources under an allowed directory: which are pinned, no link below the directory
followed, the pin bound at kukeond's own path and taken off without entering it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kukeon.runtime import bindpins
from kukeon.runtime.bindpins import (
    BindSourceRefusedError,
    Pin,
    allowed_directory,
    binds_directory,
    pin,
    pin_container,
    pins_of,
    unpin_cell,
    unpin_scope,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mount(2) needs root")


@pytest.mark.parametrize(
    ("source", "roots", "expected"),
    [
        ("/srv/data/x", ["/srv/data"], "/srv/data"),
        ("/srv/data", ["/srv/data"], "/srv/data"),
        ("/srv/data-other/x", ["/srv/data"], None),
        ("/etc", ["/srv/data"], None),
        ("/srv/data/team/x", ["/srv/data/{realm}"], "/srv/data/team"),
        ("/srv/data/evil/x", ["/srv/data/{realm}"], "/srv/data/evil"),
        ("/srv/data", ["/srv/data/{realm}"], None),
        # Of two that hold it the broader: a tenant binding it may plant links anywhere below.
        ("/srv/data/team/x", ["/srv/data/{realm}", "/srv"], "/srv"),
        ("//srv/./data//x", ["/srv/data"], "/srv/data"),
    ],
)
def test_the_allowed_directory_of_a_source(
    source: str, roots: list[str], expected: str | None
) -> None:
    assert allowed_directory(source, roots) == expected


def test_only_bind_sources_under_an_allowed_directory_are_pinned(tmp_path: Path) -> None:
    found = pins_of([None, "/srv/data/a", "/etc", "/srv/data/b"], ["/srv/data"], tmp_path)
    assert found == {
        1: Pin("/srv/data/a", "/srv/data", tmp_path / "1"),
        3: Pin("/srv/data/b", "/srv/data", tmp_path / "3"),
    }
    assert binds_directory(Path("/state"), ("r", "s", "st", "c"), "app") == Path(
        "/state/binds/r/s/st/c/app"
    )


def _allowed(tmp_path: Path) -> Path:
    allowed = tmp_path / "allowed"
    (allowed / "real" / "deep").mkdir(parents=True)
    (allowed / "up").symlink_to("/")
    (allowed / "real" / "file").write_text("x")
    (allowed / "real" / "inner").symlink_to("deep")
    (allowed / "real" / "deep" / "kept").write_text("tenant's")
    return allowed


def _container(tmp_path: Path) -> Path:
    return binds_directory(tmp_path / "state", ("r", "s", "st", "c"), "app")


@pytest.mark.parametrize(
    ("below", "said"),
    [
        ("up/etc", "/up is a symbolic link below the allowed directory"),
        ("up", "/up is a symbolic link below the allowed directory"),
        ("real/inner", "/real/inner is a symbolic link"),
        ("real/missing", "No such file or directory"),
        ("real/file/deeper", "/real/file is not a directory"),
    ],
)
def test_a_link_or_a_missing_path_below_the_directory_is_refused(
    tmp_path: Path, below: str, said: str
) -> None:
    allowed = _allowed(tmp_path)
    staging = tmp_path / "binds" / "0"
    with pytest.raises(BindSourceRefusedError, match=said):
        pin(Pin(f"{allowed}/{below}", str(allowed), staging))
    assert not staging.exists()


def test_a_missing_allowed_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BindSourceRefusedError, match="no such directory"):
        pin(Pin(f"{tmp_path}/none/x", f"{tmp_path}/none", tmp_path / "binds" / "0"))


@needs_root
def test_a_pin_binds_what_was_opened_and_an_unpin_leaves_the_files(tmp_path: Path) -> None:
    allowed, container = _allowed(tmp_path), _container(tmp_path)
    pins = [
        Pin(f"{allowed}/real/deep", str(allowed), container / "0"),
        Pin(f"{allowed}/real/file", str(allowed), container / "1"),
    ]
    try:
        pin_container(container, pins)
        assert (container / "0" / "kept").read_text() == "tenant's"
        assert (container / "1").read_text() == "x"
        # Bound again (a new task): the same, and a pin the spec no longer has goes.
        pin_container(container, pins[:1])
        assert (container / "0" / "kept").read_text() == "tenant's"
        assert not (container / "1").exists()
    finally:
        unpin_cell(container.parent)
    assert not container.parent.exists()
    assert (allowed / "real" / "deep" / "kept").read_text() == "tenant's"


@needs_root
def test_a_scope_removal_unpins_what_its_cells_left(tmp_path: Path) -> None:
    allowed, container = _allowed(tmp_path), _container(tmp_path)
    try:
        pin_container(container, [Pin(f"{allowed}/real/deep", str(allowed), container / "0")])
    finally:
        unpin_scope(tmp_path / "state", ("r",))
    assert not (tmp_path / "state" / "binds" / "r").exists()
    assert (allowed / "real" / "deep" / "kept").read_text() == "tenant's"


@needs_root
def test_a_pin_the_hosts_mount_namespace_does_not_see_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kukeond in a container whose state directory does not propagate its mounts: runc,
    on the host, would bind the empty mount point; the cell is refused instead."""
    allowed, container = _allowed(tmp_path), _container(tmp_path)
    proc = tmp_path / "proc"  # kukeond's and pid 1's namespaces differ; the host lacks it
    for ns in ("self/ns", "1/ns"):
        (proc / ns).mkdir(parents=True)
        (proc / ns / "mnt").touch()
    (proc / "1" / "root").mkdir()
    monkeypatch.setattr(bindpins, "PROC", proc)
    item = Pin(f"{allowed}/real/deep", str(allowed), container / "0")
    with pytest.raises(BindSourceRefusedError, match="does not reach the host"):
        pin(item)
    assert not item.staging.exists()
