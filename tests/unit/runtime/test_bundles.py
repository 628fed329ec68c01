"""Which refusal of a task create names a bundle containerd left (runtime.containerd.bundles)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kukeon.runtime.containerd.bundles import delete_bundle, leftover_bundle

STATE = "/run/containerd/io.containerd.runtime.v2.task"


def test_the_refusal_of_a_leftover_bundle_names_it() -> None:
    detail = f"failed to start shim: mkdir {STATE}/r.kukeon.io/s1_st1_c0_main: file exists"
    found = leftover_bundle(detail, namespace="r.kukeon.io", container_id="s1_st1_c0_main")
    assert found == Path(f"{STATE}/r.kukeon.io/s1_st1_c0_main")


@pytest.mark.parametrize(
    ("detail", "namespace", "container_id"),
    [
        # another container's or namespace's bundle: never this create's to clear
        (f"failed to start shim: mkdir {STATE}/r.kukeon.io/other: file exists", "r.kukeon.io", "c"),
        (f"failed to start shim: mkdir {STATE}/other.kukeon.io/c: file exists", "r.kukeon.io", "c"),
        # not a task bundle of containerd's runtime v2
        ("failed to start shim: mkdir /etc/r.kukeon.io/c: file exists", "r.kukeon.io", "c"),
        # other refusals
        ("failed to start shim: start failed: exit status 1", "r.kukeon.io", "c"),
        (f"mkdir {STATE}/r.kukeon.io/c: file exists", "r.kukeon.io", "c"),
        (
            f"failed to start shim: mkdir {STATE}/r.kukeon.io/c: permission denied",
            "r.kukeon.io",
            "c",
        ),
    ],
)
def test_other_refusals_name_no_bundle(detail: str, namespace: str, container_id: str) -> None:
    assert leftover_bundle(detail, namespace=namespace, container_id=container_id) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="umount2 on a directory that is no mount: root")
def test_a_bundle_goes_with_its_work_directory_as_containerd_deletes_it(tmp_path: Path) -> None:
    bundle = tmp_path / "state" / "ns" / "c"
    work = tmp_path / "root" / "ns" / "c"
    (bundle / "rootfs").mkdir(parents=True)
    work.mkdir(parents=True)
    (bundle / "config.json").write_text("{}")
    (bundle / "work").symlink_to(work)
    (work / "runtime-state").write_text("x")
    delete_bundle(bundle)
    assert list((tmp_path / "state" / "ns").iterdir()) == []
    assert list((tmp_path / "root" / "ns").iterdir()) == []
