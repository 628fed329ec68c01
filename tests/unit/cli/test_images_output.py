"""How `kukectl image` prints images: sizes, digests, ages, tables and documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli.images import (
    human_size,
    images_path,
    render_image_documents,
    render_image_table,
    short_digest,
)
from kukeon.cli.main import cli
from kukeon.cli.tables import render_table

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
DIGEST = "sha256:" + "0123456789abcdef" * 4
ITEMS: list[dict[str, Any]] = [
    {
        "name": "docker.io/library/busybox:latest",
        "digest": DIGEST,
        "size": 2_150_123,
        "created": "2026-12-01T09:00:00Z",
        "platform": "linux/amd64",
    },
    {
        "name": "kukeon.io/test/busybox:latest",
        "digest": "sha256:" + "f" * 64,
        "size": 405,
        "created": None,
        "platform": None,
    },
]


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (405, "405B"),
        (999, "999B"),
        (1000, "1kB"),
        (12_345, "12.3kB"),
        (4_300_000, "4.3MB"),
        (150_000_000, "150MB"),
        (999_999, "1MB"),
        (999_500_000, "1GB"),
        (1_210_000_000, "1.21GB"),
        (None, "<none>"),
    ],
)
def test_sizes_read_as_docker_prints_them(size: int | None, text: str) -> None:
    assert human_size(size) == text


def test_short_digests_keep_the_algorithm_and_twelve_hex_digits() -> None:
    assert short_digest(DIGEST) == "sha256:0123456789ab"
    assert short_digest(None) == "<none>"
    assert short_digest("") == "<none>"


def test_the_table_has_kubectl_columns_and_short_digests() -> None:
    lines = render_image_table(ITEMS, now=NOW).splitlines()
    assert lines == [
        "NAME                               DIGEST                SIZE     CREATED",
        "docker.io/library/busybox:latest   sha256:0123456789ab   2.15MB   2d3h",
        "kukeon.io/test/busybox:latest      sha256:ffffffffffff   405B     <none>",
    ]


def test_the_wide_table_has_full_digests_and_platforms() -> None:
    lines = render_image_table(ITEMS, now=NOW, wide=True).splitlines()
    assert lines[0].split() == ["NAME", "DIGEST", "SIZE", "CREATED", "PLATFORM"]
    assert lines[1].split() == [ITEMS[0]["name"], DIGEST, "2.15MB", "2d3h", "linux/amd64"]
    assert lines[2].split()[-1] == "<none>"
    assert all(line == line.rstrip() for line in lines)


def test_an_empty_list_is_just_the_header() -> None:
    assert render_image_table([], now=NOW) == "NAME   DIGEST   SIZE   CREATED"


def test_documents_are_one_or_a_stream() -> None:
    one = render_image_documents([ITEMS[0]], "json")
    assert json.loads(one) == ITEMS[0]
    two = render_image_documents(ITEMS, "json")
    assert json.loads(two) == ITEMS
    stream = list(yaml.safe_load_all(render_image_documents(ITEMS, "yaml")))
    assert stream == ITEMS
    assert yaml.safe_load(render_image_documents([ITEMS[1]], "yaml")) == ITEMS[1]


def test_image_names_go_into_the_path_as_they_are() -> None:
    assert images_path("r1") == "/apis/kukeon.io/v1beta1/realms/r1/images"
    assert images_path("r1", "docker.io/library/busybox:latest").endswith(
        "/realms/r1/images/docker.io/library/busybox:latest"
    )
    assert images_path("r1", "busybox@" + DIGEST).endswith(f"/images/busybox@{DIGEST}")
    assert images_path("r1", "a b").endswith("/images/a%20b")


@pytest.mark.parametrize(
    "args",
    [
        ["image", "ls", "-o", "name"],
        ["image", "inspect"],
        ["image", "rm"],
        ["image", "pull"],
        ["image", "pull", "MyApp:1", "--realm", "r"],  # no reference: the server's refusal
        ["image", "inspect", "busybox", "-o", "wide"],
    ],
)
def test_usage_mistakes_are_refused_before_any_request(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--server", "unix:///nonexistent.sock", *args])
    assert result.exit_code == 2


def test_every_image_verb_has_help() -> None:
    result = CliRunner().invoke(cli, ["image", "--help"])
    assert result.exit_code == 0
    for verb in ("import", "inspect", "ls", "prune", "pull", "rm"):
        assert verb in result.output


def _pending_cell(reason: str | None) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": "web", "creationTimestamp": NOW.isoformat()},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "containers": [{"id": "main", "image": "big/app:1"}],
            },
            "status": {"state": "Pending", "reason": reason, "message": "pulling image big/app:1"},
        }
    )


def test_get_shows_a_cell_pulling_its_image_as_pulling() -> None:
    pulling = render_table(Kind.CELL, [_pending_cell("Pulling")], now=NOW).splitlines()
    assert pulling[1].split()[:2] == ["web", "Pulling"]
    pending = render_table(Kind.CELL, [_pending_cell(None)], now=NOW).splitlines()
    assert pending[1].split()[:2] == ["web", "Pending"]
