"""The cp route's ``name`` (what ``kukectl cp SRC CELL:DEST`` sends): a copy onto a
directory that exists in the container goes inside it as SRC's name, as ``docker cp`` and
``kubectl cp`` put it (before, its files were merged into the directory); onto nothing it is
DEST. Whether DEST is a directory is seen inside the container's root: a link to a
directory of the container is followed, one naming a directory that only the host has
leads nowhere, and nothing is written on the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.daemon.cpstage import STAGE_MARK
from tests.fixtures.kukeond import Kukeond
from tests.integration.daemon.test_cp_staged import _archive, _no_cp_running, _shell
from tests.integration.daemon.test_transfer_routes import _cell, _cp, cell_url, session

pytestmark = pytest.mark.integration


def _site(top: str) -> bytes:
    """A directory as kukectl packs it: named for its destination (``top``)."""
    return _archive((top, None, None), (f"{top}/index.html", b"hi", None))


async def test_a_copy_onto_an_existing_directory_goes_inside_it(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    await k.hierarchy()
    await _cell(k, "box")
    both = tmp_path / "both"  # a directory on the host, and at the same path in the box
    host_only = tmp_path / "host-only"
    both.mkdir()
    host_only.mkdir()
    await _shell(
        k,
        f"mkdir -p /srv/dst /data {both} && printf keep > /srv/dst/keep "
        f"&& ln -s /data /srv/to-data && ln -s ../../../../../../../{both} /srv/out-both "
        f"&& ln -s {host_only} /srv/out-host && ln -s loop /srv/loop",
    )
    url = cell_url(k, "box")

    async def write(path: str, upload: bytes, name: str = "site") -> None:
        _, err, status = await _cp(http, url, {"path": path, "mode": "write", "name": name}, upload)
        assert status == {"exitCode": 0}, err

    async with session(k) as http:
        await write("/srv/dst", _site("dst"))  # a directory into an existing one
        await write("/srv/dst", _archive(("dst", b"run", None)), "run.sh")  # a file
        await write("/srv/new", _site("new"))  # no such DEST: DEST is the copy
        await write("srv/to-data", _site("to-data"))  # relative: the working directory /
        await write("/srv/out-both", _archive(("out-both", b"in", None)), "f")
        await write("/srv/out-host", _archive(("out-host", b"link", None)), "f")
        await write("/srv/loop", _archive(("loop", b"loop", None)), "f")
        # Without a name, as before: merged into the directory, as tar merges.
        _, err, status = await _cp(http, url, {"path": "/srv/dst", "mode": "write"}, _site("dst"))
        assert status == {"exitCode": 0}, err
    await _no_cp_running(k)
    listing = await _shell(
        k,
        "cd /srv && find dst new /data | sort && cat dst/site/index.html dst/run.sh "
        f"&& cat {both}/f out-host loop && echo && ls -l out-host loop | cut -c1",
    )
    assert listing.split() == [
        "/data",
        "/data/site",
        "/data/site/index.html",
        "dst",
        "dst/index.html",
        "dst/keep",
        "dst/run.sh",
        "dst/site",
        "dst/site/index.html",
        "new",
        "new/index.html",
        "hiruninlinkloop",
        "-",
        "-",
    ]
    # The link to the host's directory named the box's own; nothing reached the host.
    assert list(both.iterdir()) == []
    assert list(host_only.iterdir()) == []
    assert STAGE_MARK not in await _shell(k, "ls -aR /srv /data")


async def test_a_name_is_refused_unless_it_names_one_file(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await _cell(k, "box")
    await _shell(k, "mkdir -p /srv/dst")
    url = cell_url(k, "box")
    async with session(k) as http:
        for params, words in (
            ({"path": "/etc", "mode": "read", "name": "x"}, "only a copy into the container"),
            ({"path": "/srv/dst", "mode": "write", "name": "a/b"}, "is not the name of"),
            ({"path": "/srv/dst", "mode": "write", "name": ".."}, "is not the name of"),
            ({"path": "/srv/dst", "mode": "write", "name": ""}, "is not the name of"),
            ({"path": "/srv/dst", "mode": "write", "name": "n" * 256}, "is not the name of"),
        ):
            async with http.get(f"{url}/cp", params=params) as response:
                assert response.status == 400
                assert words in (await response.json())["message"]
        # A member that is not the copy (named for DEST) is refused before tar sees it.
        upload = _archive(("dst", b"ok", None), ("other", b"x", None))
        _, _, status = await _cp(
            http, url, {"path": "/srv/dst", "mode": "write", "name": "f"}, upload
        )
    assert "member 'other' is not under 'dst', the copy" in status["error"]
    await _no_cp_running(k)
    assert await _shell(k, "ls -A /srv/dst; echo; ls -A /srv") == "\ndst\n"
