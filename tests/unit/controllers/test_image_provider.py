"""Where a container's image comes from, in order: the realm's namespace, the node's archive
store (imported on demand), the registry; and what the archive store keeps and forgets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kukeon.controllers import images as provider_module
from kukeon.controllers.imagearchives import ImageArchives, name_candidates
from kukeon.controllers.imagepulls import ImagePullingError, PullNotJoinedError
from kukeon.controllers.images import (
    IMPORTED_BY_LABEL,
    AdminImageError,
    ImageProvider,
    ImageStorageExceededError,
    ImageStorageLimits,
    ImageUnavailableError,
    InvalidImageReferenceError,
    ReadyImage,
    owned_by_admin,
)
from kukeon.runtime.containerd.errors import ContainerNotFoundError, ImageNotFoundError
from kukeon.runtime.containerd.images import PendingImport, recorded_name
from kukeon.runtime.containerd.layerread import LayerReadError
from kukeon.runtime.containerd.namespaces import LABEL_INSTANCE

BUSYBOX = "docker.io/library/busybox:latest"
ARCHIVE_BLOBS = {"sha256:l1": 1000, "sha256:c0": 100, "sha256:m0": 10}
"""The blobs every fake archive holds (1110 bytes)."""
PULLED_BLOBS = {"sha256:new": 5000, "sha256:l1": 1000}
"""The blobs a fake pull's manifest names."""


def manifest(config: str = "sha256:c0") -> SimpleNamespace:
    layer = SimpleNamespace(media_type="application/vnd.oci.image.layer.v1.tar+gzip", digest="l1")
    return SimpleNamespace(config=SimpleNamespace(digest=config), layers=[layer])


class Images:
    def __init__(self, store: FakeImages, namespace: str) -> None:
        self.store, self.namespace = store, namespace

    async def get(self, name: str) -> SimpleNamespace:
        if name not in self.store.present.get(self.namespace, set()):
            raise ImageNotFoundError(name, namespace=self.namespace)
        self.store.gets += 1
        labels = self.store.labels.get((self.namespace, name), {})
        return SimpleNamespace(
            name=name, target=SimpleNamespace(digest=f"sha256:t-{name}"), labels=labels
        )

    async def import_archive(
        self,
        path: Path,
        *,
        references_only: bool = True,
        labels: Mapping[str, str] | None = None,
        before_write: Callable[[PendingImport], Awaitable[None]] | None = None,
    ) -> list[SimpleNamespace]:
        if await asyncio.to_thread(path.read_bytes) == b"not an image":
            raise ValueError("not an OCI archive")
        if before_write is not None:
            await before_write(PendingImport(names=[BUSYBOX], blobs=ARCHIVE_BLOBS))
        self.store.blobs.setdefault(self.namespace, {}).update(ARCHIVE_BLOBS)
        self.store.imported.append((self.namespace, path.name))
        self.store.references_only.append(references_only)
        self.store.present.setdefault(self.namespace, set()).add(BUSYBOX)
        self.store.labels[(self.namespace, BUSYBOX)] = dict(labels or {})
        return [SimpleNamespace(name=BUSYBOX)]

    async def manifest(self, name: str) -> SimpleNamespace:
        return manifest()

    async def manifest_of(self, image: SimpleNamespace) -> SimpleNamespace:
        self.store.manifest_reads += 1
        return manifest()


class FakeImages:
    def __init__(self) -> None:
        self.present: dict[str, set[str]] = {}
        self.imported: list[tuple[str, str]] = []
        self.references_only: list[bool] = []
        self.labels: dict[tuple[str, str], dict[str, str]] = {}
        self.blobs: dict[str, dict[str, int]] = {}
        """Each namespace's content: digest -> size."""
        """The labels of each (namespace, image) record an import wrote."""
        self.created: dict[tuple[str, str], str] = {}
        """The image each (namespace, container) was created from."""
        self.blob_reads = 0
        self.gets = 0
        self.manifest_reads = 0
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.namespaces = SimpleNamespace(list=self._namespaces)

    async def _namespaces(self) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(name=name, labels=self.namespace_labels.get(name, {}))
            for name in sorted({*self.present, *self.blobs})
        ]

    def images(self, namespace: str) -> Images:
        return Images(self, namespace)

    def containers(self, namespace: str) -> SimpleNamespace:
        async def get(container: str) -> SimpleNamespace:
            image = self.created.get((namespace, container))
            if image is None:
                raise ContainerNotFoundError(container, namespace=namespace)
            return SimpleNamespace(id=container, image=image)

        return SimpleNamespace(get=get)

    def content(self, namespace: str) -> SimpleNamespace:
        async def read_blob(digest: str) -> bytes:
            self.blob_reads += 1
            return b"{}"

        async def sizes() -> dict[str, int]:
            return dict(self.blobs.get(namespace, {}))

        return SimpleNamespace(read_blob=read_blob, sizes=sizes)


@pytest.fixture
def pulls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    pulled: list[tuple[str, str]] = []

    async def pull_image(
        containerd: FakeImages, namespace: str, reference: Any, **kwargs: Any
    ) -> SimpleNamespace:
        if "unreachable" in str(reference):
            raise OSError("connection refused")
        before_fetch = kwargs.get("before_fetch")
        if before_fetch is not None:  # the registry's manifest: a new layer and a held one
            await before_fetch(SimpleNamespace(blob_sizes=lambda: dict(PULLED_BLOBS)))
        pulled.append((namespace, str(reference)))
        containerd.present.setdefault(namespace, set()).add(str(reference))
        containerd.labels[(namespace, str(reference))] = dict(kwargs.get("labels") or {})
        return SimpleNamespace(name=str(reference))

    async def user_database(content: Any, layers: Any) -> tuple[str | None, str | None]:
        if layers[0].digest == "unreadable":
            raise ValueError("unknown layer format")
        return "root:x:0:0::/root:/bin/sh\n", "root:x:0:\n"

    def parse_config(data: bytes, *, image: str) -> tuple[str, list[str]]:
        return f"config of {image}", []

    monkeypatch.setattr(provider_module, "pull_image", pull_image)
    monkeypatch.setattr(provider_module, "read_image_user_database", user_database)
    monkeypatch.setattr(provider_module, "parse_image_config", parse_config)
    return pulled


def provider(tmp_path: Path) -> tuple[ImageProvider, FakeImages]:
    containerd = FakeImages()
    images = ImageProvider(
        containerd=cast(Any, containerd), archives=ImageArchives(tmp_path / "images")
    )
    return images, containerd


def test_an_image_is_known_by_its_written_and_normalised_names() -> None:
    """As written, normalised (what pulls and imports record), then the other spellings an
    import recorded as written before imports normalised names."""
    assert name_candidates("busybox") == [
        "busybox", BUSYBOX, "docker.io/library/busybox", "busybox:latest"
    ]  # fmt: skip
    assert name_candidates(BUSYBOX) == [
        BUSYBOX, "docker.io/library/busybox", "busybox:latest", "busybox"
    ]  # fmt: skip
    assert name_candidates("docker.io/library/busybox:1") == [
        "docker.io/library/busybox:1", "busybox:1"
    ]  # fmt: skip
    assert name_candidates("busybox:1") == ["busybox:1", "docker.io/library/busybox:1"]
    assert name_candidates("team/app:2") == ["team/app:2", "docker.io/team/app:2"]
    assert name_candidates("docker.io/team/app:2") == ["docker.io/team/app:2", "team/app:2"]
    assert name_candidates("registry.example/app") == [
        "registry.example/app", "registry.example/app:latest"
    ]  # fmt: skip
    assert name_candidates("Not A Reference") == ["Not A Reference"]


def test_an_archive_is_recorded_under_the_normalised_name() -> None:
    assert recorded_name("busybox:1") == "docker.io/library/busybox:1"
    assert recorded_name("registry.example/app") == "registry.example/app:latest"
    assert recorded_name("MyApp:1") == "MyApp:1"  # no reference: kept archives, as written


async def test_recording_an_archive_moves_an_older_spelling_of_its_names(tmp_path: Path) -> None:
    """An archive kept before imports normalised names is found first by the cells naming
    it that way: a new archive of the same reference takes that spelling over too."""
    archives = ImageArchives(tmp_path / "images")
    old, new = tmp_path / "old.tar", tmp_path / "new.tar"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    kept_old = await archives.store(old)
    await archives.record(kept_old, ["busybox:1", "other:2"])
    kept_new = await archives.store(new)
    await archives.record(kept_new, ["docker.io/library/busybox:1"])
    assert await archives.names() == {
        "busybox:1": kept_new.name,
        "docker.io/library/busybox:1": kept_new.name,
        "other:2": kept_old.name,
    }
    assert await archives.find("docker.io/library/other:2") == kept_old


async def test_a_new_archive_of_a_name_replaces_the_old_copy(tmp_path: Path) -> None:
    """The archive a name pointed at goes once the index names the new one, unless another
    name still points at it or an import stored it and has not recorded it yet."""
    archives = ImageArchives(tmp_path / "images")
    sources = []
    for number in range(4):
        source = tmp_path / f"{number}.tar"
        source.write_bytes(b"build %d" % number)
        sources.append(source)
    first = await archives.store(sources[0])
    await archives.record(first, ["app:1", "app:2"])
    second = await archives.store(sources[1])
    await archives.record(second, ["app:1"])
    assert first.exists()  # app:2 still points at it
    await archives.record(second, ["app:2"])
    assert not first.exists()
    # An import reading the same file as a replaced one (stored, not yet recorded): kept.
    again = await archives.store(sources[1])
    third = await archives.store(sources[2])
    await archives.record(third, ["app:1", "app:2"])
    assert again == second
    assert second.exists()
    await archives.discard(again)
    assert not second.exists()
    assert sorted(p.name for p in archives.directory.glob("*.tar")) == [third.name]
    assert await archives.find("app:1") == third


async def test_an_archive_is_kept_while_a_namespace_holds_another_spelling(
    tmp_path: Path,
) -> None:
    """An archive kept as ``busybox:1`` (an import before names were normalised) serves a
    namespace holding ``docker.io/library/busybox:1``: not released while it holds it."""
    images, containerd = provider(tmp_path)
    source = tmp_path / "busybox.tar"
    source.write_bytes(b"oci archive")
    await images.archives.record(await images.archives.store(source), ["busybox:1"])
    containerd.present = {"a": set(), "b": {"docker.io/library/busybox:1"}}
    assert await images.release_archives(["busybox:1"]) == []
    containerd.present["b"] = set()
    assert await images.release_archives(["busybox:1"]) == ["busybox:1"]
    assert list((tmp_path / "images").glob("*.tar")) == []


async def test_present_in_the_namespace_nothing_is_imported_or_pulled(
    tmp_path: Path, pulls: list[tuple[str, str]]
) -> None:
    images, containerd = provider(tmp_path)
    containerd.present["ns"] = {BUSYBOX}
    ready = await images.ensure(namespace="ns", image="busybox", credentials=())
    assert ready.name == BUSYBOX
    assert ready.passwd is not None
    assert ready.passwd.startswith("root:")
    assert pulls == []
    assert containerd.imported == []
    await images.ensure(namespace="ns", image="busybox", credentials=())
    # Once per image target: a later pass reads the image's record only (one Get per pass).
    assert containerd.blob_reads == 1
    assert containerd.manifest_reads == 1
    assert containerd.gets == 2


async def test_an_imported_archive_serves_every_realm(
    tmp_path: Path, pulls: list[tuple[str, str]]
) -> None:
    images, containerd = provider(tmp_path)
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"oci archive")
    assert await images.import_archive(namespace="realm-a", path=archive) == [BUSYBOX]
    ready = await images.ensure(namespace="realm-b", image="busybox", credentials=())
    assert ready.name == BUSYBOX
    assert [ns for ns, _ in containerd.imported] == ["realm-a", "realm-b"]
    # An upload is refused when it names an image by no reference; what the archive store
    # kept (maybe before that rule) imports for the cells that name it, as it did.
    assert containerd.references_only == [True, False]
    assert pulls == []
    stored = tmp_path / "images"
    assert (stored / "index.json").exists()
    assert oct(next(stored.glob("*.tar")).stat().st_mode & 0o777) == "0o600"


async def test_each_record_says_who_imported_it_and_an_editor_replaces_no_admins(
    tmp_path: Path, pulls: list[tuple[str, str]]
) -> None:
    images, containerd = provider(tmp_path)
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"oci archive")
    await images.import_archive(namespace="a", path=archive, share=False)
    assert containerd.labels[("a", BUSYBOX)] == {IMPORTED_BY_LABEL: "editor"}
    # An editor may import over its own import again.
    await images.import_archive(namespace="a", path=archive, share=False)
    await images.import_archive(namespace="b", path=archive)
    assert containerd.labels[("b", BUSYBOX)] == {IMPORTED_BY_LABEL: "admin"}
    # The archive store holds admins' imports: a realm importing from it records the admin.
    await images.ensure(namespace="c", image="busybox", credentials=())
    assert containerd.labels[("c", BUSYBOX)] == {IMPORTED_BY_LABEL: "admin"}
    imported = len(containerd.imported)
    with pytest.raises(AdminImageError, match="imported by an admin") as refused:
        await images.import_archive(namespace="b", path=archive, share=False)
    assert refused.value.names == [BUSYBOX]
    assert len(containerd.imported) == imported  # nothing written
    assert containerd.labels[("b", BUSYBOX)] == {IMPORTED_BY_LABEL: "admin"}
    # An admin imports over an editor's import: the record is the admin's from then on.
    await images.import_archive(namespace="a", path=archive)
    assert containerd.labels[("a", BUSYBOX)] == {IMPORTED_BY_LABEL: "admin"}
    assert pulls == []


@pytest.mark.parametrize(
    ("labels", "admins"),
    [
        ({IMPORTED_BY_LABEL: "admin"}, True),
        ({IMPORTED_BY_LABEL: "editor"}, False),
        ({IMPORTED_BY_LABEL: "registry"}, False),
        # Written before records said where they came from: maybe an admin's import.
        ({}, True),
        ({"other": "x"}, True),
        ({IMPORTED_BY_LABEL: "someone"}, True),
    ],
)
def test_a_record_that_does_not_say_where_it_came_from_is_the_admins(
    labels: dict[str, str], admins: bool
) -> None:
    assert owned_by_admin(labels) is admins


async def test_an_editor_replaces_no_unlabelled_record_and_pulls_are_the_realms(
    tmp_path: Path, pulls: list[tuple[str, str]]
) -> None:
    images, containerd = provider(tmp_path)
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"oci archive")
    # A record from before the label (an import, or a pull): an editor replaces it not.
    containerd.present["a"] = {BUSYBOX}
    with pytest.raises(AdminImageError, match="does not say who imported it") as refused:
        await images.import_archive(namespace="a", path=archive, share=False)
    assert refused.value.names == [BUSYBOX]
    with pytest.raises(AdminImageError, match="taken for an admin's"):
        await images.pull(namespace="a", image="busybox", credentials=(), editor=True)
    assert containerd.imported == []
    assert pulls == []
    assert containerd.labels.get(("a", BUSYBOX)) is None
    # An admin's pull over it: the record is the registry's from then on, an editor's
    # pull again (a tag may have moved) is allowed.
    assert await images.pull(namespace="a", image="busybox", credentials=()) == BUSYBOX
    assert containerd.labels[("a", BUSYBOX)] == {IMPORTED_BY_LABEL: "registry"}
    await images.pull(namespace="a", image="busybox", credentials=(), editor=True)
    # A cell's pull is labelled the same.
    await images.ensure(namespace="b", image="busybox", credentials=())
    assert containerd.labels[("b", BUSYBOX)] == {IMPORTED_BY_LABEL: "registry"}
    assert pulls == [("a", BUSYBOX), ("a", BUSYBOX), ("b", BUSYBOX)]
    # Over an admin's import, an editor's pull is refused before anything is fetched.
    await images.import_archive(namespace="c", path=archive)
    with pytest.raises(AdminImageError, match=r"imported by an admin \(kukeon.io/imported-by"):
        await images.pull(namespace="c", image="busybox", credentials=(), editor=True)
    assert len(pulls) == 3


async def test_an_import_past_a_storage_limit_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"oci archive")
    images, containerd = provider(tmp_path)
    images.storage = ImageStorageLimits(realm=2000, node=3000)
    containerd.blobs = {"a": {"sha256:old": 1000}, "b": {"sha256:other": 1500}}
    # The realm's own quota (0: none) is before kukeond's default.
    with pytest.raises(ImageStorageExceededError, match="limit of 1500 bytes") as refused:
        await images.import_archive(namespace="a", path=archive, realm_limit=1500)
    assert "spec.quota.imageStorageBytes" in str(refused.value)
    assert (refused.value.used, refused.value.adding) == (1000, 1110)
    assert containerd.imported == []
    assert list((tmp_path / "images").glob("*.tar")) == []  # an admin's: not kept either
    # The node: 2500 held by every realm, 1110 more is past 3000.
    with pytest.raises(ImageStorageExceededError, match="imageStorageMaxBytes"):
        await images.import_archive(namespace="a", path=archive, realm_limit=0, share=False)
    images.storage = ImageStorageLimits(realm=2110)
    await images.import_archive(namespace="a", path=archive, share=False)  # 1000 + 1110 fit
    assert containerd.blobs["a"]["sha256:l1"] == 1000


async def test_blobs_already_held_are_not_counted_and_a_full_realm_pulls_nothing(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"oci archive")
    images, containerd = provider(tmp_path)
    images.storage = ImageStorageLimits(realm=1200)
    containerd.blobs = {"a": dict(ARCHIVE_BLOBS)}
    await images.import_archive(namespace="a", path=archive, share=False)  # adds nothing
    await images.room_left("a", None)
    containerd.blobs["a"]["sha256:more"] = 90
    with pytest.raises(ImageStorageExceededError, match="1200 bytes of image content are held"):
        await images.room_left("a", None)
    await images.room_left("a", 0)  # the realm's 0: no limit


async def test_a_refused_archive_is_not_kept(tmp_path: Path) -> None:
    images, _ = provider(tmp_path)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not an OCI archive"):
        await images.import_archive(namespace="ns", path=bad)
    assert list((tmp_path / "images").glob("*.tar")) == []


async def test_archives_go_when_no_namespace_holds_their_image(tmp_path: Path) -> None:
    images, containerd = provider(tmp_path)
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"oci archive")
    await images.import_archive(namespace="a", path=archive)
    await images.import_archive(namespace="b", path=archive)
    assert await images.release_archives([BUSYBOX, "unknown"]) == []
    containerd.present = {"a": set(), "b": set()}
    assert await images.release_archives([BUSYBOX]) == [BUSYBOX]
    assert await images.archives.names() == {}
    assert list((tmp_path / "images").glob("*.tar")) == []
    assert await images.release_archives([BUSYBOX]) == []


async def test_only_this_control_planes_namespaces_keep_its_archives(tmp_path: Path) -> None:
    """Another control plane on the same containerd (another instance: its own state
    directory and archive store) holding an image of the name keeps no archive here."""
    images, containerd = provider(tmp_path)
    images.instance = "abc123"
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"oci archive")
    await images.import_archive(namespace="mine", path=archive)
    containerd.namespace_labels["mine"] = {LABEL_INSTANCE: "abc123"}
    containerd.present["theirs"] = {BUSYBOX}
    containerd.namespace_labels["theirs"] = {LABEL_INSTANCE: "def456"}
    containerd.present["default-plane"] = {BUSYBOX}  # the host's default installation's
    assert await images.release_archives([BUSYBOX]) == []  # "mine" holds it
    containerd.present["mine"] = set()
    # One of its realms' namespaces without labels (an import made it before imports
    # labelled it): the route names its realms' namespaces, which count all the same.
    containerd.present["unlabelled"] = {BUSYBOX}
    assert await images.release_archives([BUSYBOX], {"unlabelled"}) == []
    containerd.present["unlabelled"] = set()
    assert await images.release_archives([BUSYBOX], {"unlabelled"}) == [BUSYBOX]
    assert list((tmp_path / "images").glob("*.tar")) == []


async def test_otherwise_it_is_pulled_saying_so_first(
    tmp_path: Path, pulls: list[tuple[str, str]]
) -> None:
    images, _ = provider(tmp_path)
    said: list[str] = []

    async def on_pull(image: str) -> None:
        said.append(image)

    ready = await images.ensure(namespace="ns", image="busybox", credentials=(), on_pull=on_pull)
    assert said == ["busybox"]
    assert pulls == [("ns", BUSYBOX)]
    assert cast(object, ready.config) == f"config of {BUSYBOX}"
    assert await images.pull(namespace="ns", image="busybox", credentials=()) == BUSYBOX


async def test_a_cells_pull_past_a_storage_limit_fetches_nothing(
    tmp_path: Path, pulls: list[tuple[str, str]]
) -> None:
    images, containerd = provider(tmp_path)
    containerd.blobs = {"ns": {"sha256:l1": 1000}}
    images.storage = ImageStorageLimits(realm=5500)
    # 5000 new bytes (the held layer not counted) on the 1000 held: past 5500, not fetched.
    told = "pulling the image would add 5000 bytes of image content to the 1000 bytes held"
    with pytest.raises(ImageUnavailableError, match=f"not pulled: {told}, over the limit of 5500"):
        await images.ensure(namespace="ns", image="busybox", credentials=())
    with pytest.raises(ImageStorageExceededError, match=told):  # `kukectl image pull`: a 403
        await images.pull(namespace="ns", image="busybox", credentials=())
    assert pulls == []
    await images.ensure(namespace="ns", image="busybox", credentials=(), realm_limit=6000)
    assert pulls == [("ns", BUSYBOX)]


async def test_failures_name_the_image_and_why(
    tmp_path: Path, pulls: list[tuple[str, str]]
) -> None:
    images, _ = provider(tmp_path)
    with pytest.raises(InvalidImageReferenceError, match="not a valid image reference"):
        await images.ensure(namespace="ns", image="Not A Reference", credentials=())
    with pytest.raises(InvalidImageReferenceError):
        await images.pull(namespace="ns", image="Not A Reference", credentials=())
    with pytest.raises(ImageUnavailableError, match=r"not in realm namespace ns.*refused"):
        await images.ensure(namespace="ns", image="unreachable.example/app", credentials=())
    with pytest.raises(ImageUnavailableError, match="pulling failed: connection refused"):
        await images.pull(namespace="ns", image="unreachable.example/app", credentials=())


async def test_an_unreadable_layer_leaves_numeric_users_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pulls: list[tuple[str, str]]
) -> None:
    images, containerd = provider(tmp_path)
    containerd.present["ns"] = {BUSYBOX}
    unreadable = manifest("sha256:other")
    unreadable.layers[0].digest = "unreadable"

    async def other_manifest(self: Images, image: SimpleNamespace) -> SimpleNamespace:
        return unreadable

    monkeypatch.setattr(Images, "manifest_of", other_manifest)
    ready = await images.ensure(namespace="ns", image=BUSYBOX, credentials=())
    assert (ready.passwd, ready.group) == (None, None)


async def test_has_file_is_asked_once_per_config_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, _ = provider(tmp_path)
    asked: list[str] = []

    async def image_has_file(content: Any, layers: Any, path: str) -> bool:
        asked.append(path)
        if path == "/broken":
            raise LayerReadError("layer sha256:x cannot be read: its gzip stream ends early")
        return path == "/bin/sh"

    monkeypatch.setattr(provider_module, "image_has_file", image_has_file)
    assert await images.has_file(namespace="ns", image=BUSYBOX, path="/bin/sh") is True
    assert await images.has_file(namespace="ns", image=BUSYBOX, path="/bin/sh") is True
    assert await images.has_file(namespace="ns", image=BUSYBOX, path="/nope") is False
    assert await images.has_file(namespace="ns", image=BUSYBOX, path="/broken") is None
    assert asked == ["/bin/sh", "/nope", "/broken"]


async def test_a_container_keeps_the_image_it_was_created_from(
    tmp_path: Path, pulls: list[tuple[str, str]]
) -> None:
    """A cell stored with a bare 64-hex image (read by nodes before a1694b5 as Docker Hub's
    library/<hex>, refused since): its container's record still serves it."""
    images, containerd = provider(tmp_path)
    image_id = "0123456789abcdef" * 4
    recorded = f"docker.io/library/{image_id}:latest"
    containerd.present["ns"] = {recorded}
    containerd.created[("ns", "app")] = recorded
    with pytest.raises(InvalidImageReferenceError, match="image id"):
        await images.ensure(namespace="ns", image=image_id, credentials=())
    kept = await images.created_from(namespace="ns", container="app")
    assert kept is not None
    assert kept.name == recorded
    assert kept.passwd is not None
    assert await images.created_from(namespace="ns", container="other") is None
    containerd.present["ns"] = set()  # its record removed (image rm --force): none
    assert await images.created_from(namespace="ns", container="app") is None
    assert pulls == []


async def test_a_pass_of_a_replaced_version_says_no_pull(
    tmp_path: Path, pulls: list[tuple[str, str]]
) -> None:
    """A pass under way when its cell was stopped (the cell listener's `need` has seen the
    newer version) finds its image missing: it joins no pull and writes nothing (before,
    its on_pull wrote Pulling and a Pulling Event, which the newer version's pass had to
    overwrite), as a Kubernetes controller with a stale generation writes no status; the
    same when kukeond stops."""
    images, _ = provider(tmp_path)
    cell = ("r", "s", "st", "c")
    said: list[str] = []

    async def on_pull(image: str) -> None:
        said.append(image)

    async def cells_pass() -> ReadyImage:
        return await images.ensure(
            namespace="ns", image="busybox", credentials=(), on_pull=on_pull, waiter=cell
        )

    images.pulls.need(cell, frozenset())  # stopped
    with pytest.raises(PullNotJoinedError):
        await cells_pass()
    images.pulls.need(cell, None)
    await images.pulls.close()
    with pytest.raises(PullNotJoinedError):
        await cells_pass()
    assert (said, pulls, images.pulls.under_way()) == ([], [], 0)


async def test_the_same_archive_stored_by_imports_at_once_is_kept_once(tmp_path: Path) -> None:
    """Two imports of the same bytes at once (two `kukectl image load` of one file): both
    copied to the one '<digest>.partial' and the second's rename found it gone, a 500 and a
    FileNotFoundError traceback in kukeond's log."""
    archives = ImageArchives(tmp_path / "images")
    source = tmp_path / "image.tar"
    source.write_bytes(b"layer " * 200_000)
    stored = await asyncio.gather(*(archives.store(source) for _ in range(8)))
    assert len(set(stored)) == 1
    assert stored[0].read_bytes() == source.read_bytes()
    assert [p.name for p in archives.directory.iterdir()] == [stored[0].name]
    for path in stored:
        await archives.discard(path)
    assert list(archives.directory.iterdir()) == []


async def test_a_cells_pull_runs_beside_its_pass_and_the_next_pass_takes_its_outcome(
    tmp_path: Path, pulls: list[tuple[str, str]]
) -> None:
    """A cell's pass (`waiter`) starts the pull, says so and ends (`ImagePullingError`);
    the pull's end wakes it; its next pass takes the image (`pulled`, once) or the failure
    the pass itself used to raise, same message."""
    images, _ = provider(tmp_path)
    cell = ("r", "s", "st", "c")
    woken: asyncio.Queue[tuple[str, ...]] = asyncio.Queue()
    images.pulls.wake = woken.put_nowait
    said: list[str] = []

    async def on_pull(image: str) -> None:
        said.append(image)

    async def cells_pass(image: str) -> ReadyImage:
        return await images.ensure(
            namespace="ns", image=image, credentials=(), on_pull=on_pull, waiter=cell
        )

    with pytest.raises(ImagePullingError):
        await cells_pass("busybox")
    assert said == ["busybox"]
    assert await woken.get() == cell
    assert pulls == [("ns", BUSYBOX)]
    ready = await cells_pass("busybox")
    assert ready.pulled
    assert ready.name == BUSYBOX
    assert not (await cells_pass("busybox")).pulled  # told once
    failing = "unreachable.example/app"
    with pytest.raises(ImagePullingError):
        await cells_pass(failing)
    assert await woken.get() == cell
    with pytest.raises(ImageUnavailableError, match=r"not in realm namespace ns.*refused"):
        await cells_pass(failing)
    with pytest.raises(ImagePullingError):  # after the back-off: pulled again
        await cells_pass(failing)
    await images.pulls.close()
