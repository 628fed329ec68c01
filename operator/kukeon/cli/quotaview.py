"""A realm's quota on its describe page: what its objects use of each limit (kubectl
describe quota's Used and Hard), read from the API's ``realms/{realm}/quota``
(``kukeon.apiserver.quotausage``), and the image storage it holds on the node that
answered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kukeon.api import AnyResource, Kind
from kukeon.client.apiclient import ApiClient, ApiRequestError
from kukeon.client.paths import object_path

from .tables import format_rows

NO_LIMIT = "<none>"
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


async def quota_of(client: ApiClient, res: AnyResource) -> dict[str, Any] | None:
    """The realm's quota status; None for another kind or a server without quotas."""
    if Kind(res.kind) != Kind.REALM:
        return None
    try:
        found = await client.request("GET", object_path(Kind.REALM, (res.metadata.name,), "quota"))
    except ApiRequestError as exc:
        if exc.code in (404, 405):
            return None
        raise
    return found if isinstance(found, dict) else None


def quota_lines(status: Mapping[str, Any]) -> list[str]:
    """``Quota:`` and a row per limit: used, hard (``<none>``: no limit); the image storage
    row names the node that answered (images are per node)."""
    hard, used = status.get("hard") or {}, status.get("used") or {}
    rows = [["RESOURCE", "USED", "HARD"]]
    for name, show in (("objects", str), ("storageBytes", binary_size), ("spaces", str)):
        limit = hard.get(name)
        rows.append([name, show(used.get(name, 0)), NO_LIMIT if limit is None else show(limit)])
    images = status.get("images")
    if isinstance(images, Mapping):
        rows.append(image_storage_row(images))
    return ["Quota:"] + ["  " + line for line in format_rows(rows)]


def image_storage_row(images: Mapping[str, Any]) -> list[str]:
    """``imageStorageBytes (node N)``, what it holds there and its limit there."""
    hard = images.get("hard")
    used = images.get("used")
    shown = (
        binary_size(used)
        if used is not None
        else f"<unknown: {images.get('problem') or 'not read'}>"
    )
    limit = NO_LIMIT if hard is None else binary_size(hard)
    return [f"imageStorageBytes (node {images.get('node', '?')})", shown, limit]


def binary_size(count: Any) -> str:
    """A byte count as people read it: ``512Mi``, ``12.3Ki``, ``900B``."""
    if not isinstance(count, int):
        return str(count)
    size = float(count)
    for unit in _UNITS:
        if size < 1024 or unit == _UNITS[-1]:
            break
        size /= 1024
    if unit == "B":
        return f"{count}B"
    text = f"{size:.1f}".removesuffix(".0")
    return f"{text}{unit.removesuffix('B')}"
