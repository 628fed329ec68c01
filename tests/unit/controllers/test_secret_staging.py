"""A cell's files: its logs rotate to `--previous`, and its container's secrets are staged
from a Secret (stack, then space, then realm), a host file or kukeond's environment, as
0400 files or variables, rewritten only when the value changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest

from kukeon.api import Cell, ContainerSpec, Kind, Secret, parse_resource
from kukeon.controllers.cellfiles import (
    CellFiles,
    SecretUnavailableError,
    own_secret_files,
    remove_scope_files,
    resolve_secret_refs,
    stage_secrets,
)
from kukeon.store import InvalidStoredDocument
from tests.unit.api.samples import cell_doc, container

from .hostfakes import ScopedStore

KEY = ("r", "s", "st", "c")


def container_with(*secrets: dict[str, Any]) -> ContainerSpec:
    doc = cell_doc("c", containers=[container(secrets=list(secrets))])
    found = parse_resource(doc)
    assert isinstance(found, Cell)
    return found.spec.containers[0]


def secret(name: str, *scope: str, **values: str) -> Secret:
    names = dict(zip(("realm", "space", "stack"), scope, strict=False))
    found = parse_resource(
        {
            "apiVersion": "v1beta1",
            "kind": "Secret",
            "metadata": {"name": name, **names},
            "stringData": values,
        }
    )
    assert isinstance(found, Secret)
    return found


def read(path: Path) -> bytes:
    return path.read_bytes()


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


async def test_a_new_instance_logs_afresh_keeping_the_previous_one(tmp_path: Path) -> None:
    files = CellFiles(tmp_path, KEY)
    await files.start_new_log("app")  # nothing logged yet: nothing to keep
    files.log("app").parent.mkdir(parents=True)
    files.log("app").write_text("first run\n")
    await files.start_new_log("app")
    assert files.previous_log("app").read_text() == "first run\n"
    assert not files.log("app").exists()
    files.log("app").write_text("")
    await files.start_new_log("app")
    assert files.previous_log("app").read_text() == "first run\n", "an empty log keeps none"
    assert files.hosts.name == "hosts"
    assert files.hostname.parent == files.directory
    assert files.tty_stdin("app").name == "stdin"
    await files.remove()
    assert not files.directory.exists()


async def test_file_and_env_secrets_are_staged(tmp_path: Path) -> None:
    source = tmp_path / "token"
    source.write_bytes(b"s3cret")
    spec = container_with(
        {"name": "token", "fromFile": str(source), "mountPath": "/run/token"},
        {"name": "API_KEY", "fromEnv": "KUKEON_TEST_KEY"},
    )
    files = CellFiles(tmp_path / "state", KEY)
    staged = await stage_secrets(spec, files=files, environ={"KUKEON_TEST_KEY": "k1"})
    assert staged.env == {"API_KEY": "k1"}
    host_path = Path(staged.files["/run/token"])
    assert read(host_path) == b"s3cret"
    assert mode(host_path) == 0o400
    assert mode(host_path.parent) == 0o700
    first = staged.digest
    inode = os.stat(host_path).st_ino
    again = await stage_secrets(spec, files=files, environ={"KUKEON_TEST_KEY": "k1"})
    assert again.digest == first
    assert os.stat(host_path).st_ino == inode, "an unchanged value is not rewritten"
    source.write_bytes(b"rotated")
    changed = await stage_secrets(spec, files=files, environ={"KUKEON_TEST_KEY": "k1"})
    assert changed.digest != first, "a changed value changes the container's spec digest"
    await own_secret_files(changed, uid=os.getuid(), gid=os.getgid())
    env_only = await stage_secrets(
        container_with({"name": "X", "fromEnv": "KUKEON_TEST_KEY"}),
        files=files,
        environ={"KUKEON_TEST_KEY": "v"},
    )
    assert env_only.digest is None


async def test_a_missing_source_names_the_container_and_the_secret(tmp_path: Path) -> None:
    files = CellFiles(tmp_path, KEY)
    with pytest.raises(SecretUnavailableError, match=r"container 'app' secret 'X'.*not set"):
        await stage_secrets(
            container_with({"name": "X", "fromEnv": "KUKEON_UNSET"}), files=files, environ={}
        )
    with pytest.raises(SecretUnavailableError, match="cannot read fromFile"):
        await stage_secrets(
            container_with({"name": "f", "fromFile": str(tmp_path / "missing")}),
            files=files,
            environ={},
        )


async def test_secret_refs_resolve_from_the_nearest_scope(tmp_path: Path) -> None:
    store = ScopedStore()
    await store.create(secret("db", "r", **{"password": "realm-wide", "user": "app"}))
    await store.create(secret("db", "r", "s", "st", password="stack-only"))
    spec = container_with(
        {"name": "pw", "secretRef": {"name": "db", "key": "password"}, "mountPath": "/run/pw"},
        {"name": "PLAIN", "fromEnv": "HOME"},
    )
    values = await resolve_secret_refs(cast(Any, store), KEY, spec)
    assert values == {"pw": b"stack-only"}
    staged = await stage_secrets(
        spec, files=CellFiles(tmp_path, KEY), environ={"HOME": "/root"}, resolved=values
    )
    assert read(Path(staged.files["/run/pw"])) == b"stack-only"
    user = container_with({"name": "U", "secretRef": {"name": "db", "key": "user"}})
    with pytest.raises(SecretUnavailableError, match="has no key 'user'"):
        await resolve_secret_refs(cast(Any, store), KEY, user)
    # Once the stack's Secret is being deleted, the realm's answers.
    await store.add_finalizer(Kind.SECRET, ("r", "s", "st", "db"), "kukeon.io/test")
    await store.delete(Kind.SECRET, ("r", "s", "st", "db"))
    assert await resolve_secret_refs(cast(Any, store), KEY, user) == {"U": b"app"}


async def test_a_missing_or_unreadable_secret_says_where_it_looked() -> None:
    spec = container_with({"name": "pw", "secretRef": {"name": "db", "key": "password"}})
    with pytest.raises(SecretUnavailableError, match="looked in r/s/st, r/s, r"):
        await resolve_secret_refs(cast(Any, ScopedStore()), KEY, spec)

    class Unreadable(ScopedStore):
        async def get(self, kind: Kind, key: tuple[str, ...]) -> Any:
            raise InvalidStoredDocument(
                "bad", kind="Secret", name="db", key="k", revision=1, reason="does not open"
            )

    with pytest.raises(SecretUnavailableError, match="cannot be read: does not open"):
        await resolve_secret_refs(cast(Any, Unreadable()), KEY, spec)


async def test_a_scopes_files_go_with_it(tmp_path: Path) -> None:
    tmp_path.joinpath("cells", "r", "s", "st", "c").mkdir(parents=True)
    await remove_scope_files(tmp_path, ("r", "s"))
    assert tmp_path.joinpath("cells", "r").exists()
    assert not tmp_path.joinpath("cells", "r", "s").exists()
