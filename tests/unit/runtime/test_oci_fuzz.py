"""The OCI document parsers against whatever an archive or a registry may hold.

An imported archive's index.json, manifests and configs, and a registry's manifests, come
from whoever made them (a realm's editor). Each parser must refuse a bad document with an
``OciFormatError`` naming it, which the import answers as a 422 and a pull as an
``UnsupportedManifestError``: any other exception was a 500 (a JSON document nested past
Python's recursion limit raised ``RecursionError``; test_oci.py holds that case).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.runtime.containerd.oci import (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    OciFormatError,
    detect_media_type,
    parse_config,
    parse_index,
    parse_manifest,
)

DIGEST = "sha256:" + "ab" * 32

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and the infinities too: json.dumps writes them, json.loads reads them
    st.text(max_size=20),
)
_KEYS = st.sampled_from(
    [
        "mediaType",
        "digest",
        "size",
        "manifests",
        "layers",
        "config",
        "platform",
        "architecture",
        "os",
        "variant",
        "annotations",
        "rootfs",
        "diff_ids",
        "created",
        "Env",
        "Cmd",
        "Entrypoint",
        "User",
        "WorkingDir",
        "ExposedPorts",
        "Labels",
        "schemaVersion",
    ]
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS | st.text(), inner),
    max_leaves=30,
)


def _deep(depth: int, opener: str) -> bytes:
    """A document whose fields are nested ``depth`` deep (past the recursion limit too)."""
    inner = '{"a":' * depth + "1" + "}" * depth if opener == "{" else "[" * depth + "]" * depth
    return f'{{"manifests": {inner}, "layers": {inner}, "config": {inner}}}'.encode()


_BODIES = st.one_of(
    _DOCUMENTS.map(lambda document: json.dumps(document).encode()),
    st.builds(_deep, st.integers(min_value=1, max_value=50_000), st.sampled_from("[{")),
    st.binary(max_size=200),
)

_PARSERS: dict[str, Callable[[bytes], Any]] = {
    "index": lambda data: parse_index(data, Descriptor(MEDIA_TYPE_OCI_INDEX, DIGEST, len(data))),
    "manifest": lambda data: parse_manifest(
        data, Descriptor(MEDIA_TYPE_OCI_MANIFEST, DIGEST, len(data))
    ),
    "config": parse_config,
    "media type": lambda data: detect_media_type(data, "application/json"),
}


@settings(max_examples=300, deadline=None)
@given(data=_BODIES, parser=st.sampled_from(sorted(_PARSERS)))
def test_a_document_is_read_or_refused_as_an_oci_format_error(data: bytes, parser: str) -> None:
    with contextlib.suppress(OciFormatError):  # refused, as a bad document must be
        _PARSERS[parser](data)
