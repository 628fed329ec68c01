"""Pure parts of the registry client: references, hosts, credentials, challenges.

Platforms and image configs are the OCI model's: tests/unit/runtime/test_oci.py."""

from __future__ import annotations

import pytest

from kukeon.runtime.containerd.reference import (
    ImageReference,
    InvalidReferenceError,
    credential_for,
    normalize_registry_host,
    parse_reference,
    registry_scheme,
)
from kukeon.runtime.containerd.registryauth import Challenge, parse_www_authenticate
from kukeon.runtime.containerd.types import RegistryCredential

DIGEST = "sha256:" + "ab" * 32


# --- references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("library/busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("registry-1.docker.io/user/app:v1", "docker.io", "user/app", "v1", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("ghcr.io/org/team/app:1.0", "ghcr.io", "org/team/app", "1.0", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app:dev", "localhost:5000", "app", "dev", None),
        ("127.0.0.1:5000/kukeon/busybox:test", "127.0.0.1:5000", "kukeon/busybox", "test", None),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
        ("[::1]/app:x", "[::1]", "app", "x", None),
        ("Registry.Example/app", "Registry.Example", "app", "latest", None),
        (f"busybox@{DIGEST}", "docker.io", "library/busybox", None, DIGEST),
        (f"quay.io/a/b:tag@{DIGEST}", "quay.io", "a/b", "tag", DIGEST),
        ("my.reg:443/a_b/c__d/e-f.g:T_1.x-2", "my.reg:443", "a_b/c__d/e-f.g", "T_1.x-2", None),
        ("  busybox  ", "docker.io", "library/busybox", "latest", None),
    ],
)
def test_parse_reference(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert ref == ImageReference(registry, repository, tag, digest)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("Busybox", "repository path component 'Busybox'"),
        ("busybox:", "tag ''"),
        ("busybox:-bad", "tag '-bad'"),
        ("busybox@sha256:abc", "64 lowercase hex"),
        ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("busybox@nodigest", "not <algorithm>:<hex>"),
        ("reg.io/a//b", "component ''"),
        ("reg.io:99999/a", "port '99999' is out of range"),
        ("reg_io.com:5000/a", "is not a host[:port]"),
        ("[1::2::3]:5000/a", "bad IPv6"),
        ("reg.io/" + "a" * 300, "longer than 255"),
        (":tag", "missing repository name"),
    ],
)
def test_parse_reference_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference(text)
    assert reason in str(info.value)
    assert info.value.reference == text


def test_reference_string_forms() -> None:
    ref = parse_reference(f"127.0.0.1:5000/app:v1@{DIGEST}")
    assert str(ref) == f"127.0.0.1:5000/app:v1@{DIGEST}"
    assert ref.name == "127.0.0.1:5000/app"
    assert ref.object == DIGEST
    assert ref.host == "127.0.0.1"
    assert ref.endpoint == "127.0.0.1:5000"
    hub = parse_reference("busybox")
    assert str(hub) == "docker.io/library/busybox:latest"
    assert hub.object == "latest"
    assert hub.endpoint == "registry-1.docker.io"
    assert parse_reference("[::1]:5000/app").host == "::1"


# --- hosts, schemes, credentials ------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
        ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
        ("Registry.Example.com", "registry.example.com"),
        (" ghcr.io/some/path ", "ghcr.io"),
    ],
)
def test_normalize_registry_host(address: str, host: str) -> None:
    assert normalize_registry_host(address) == host


def test_loopback_is_no_exception_to_https() -> None:
    """A loopback registry was spoken to over plain HTTP unlisted; now only a listed
    registry is (and an unlisted one on the node is not pulled from: registryaccess)."""
    for registry in ("localhost:5000", "127.0.0.1:5000", "[::1]:5000", "docker.io"):
        assert registry_scheme(registry, ()) == "https"
    assert registry_scheme("127.0.0.1:5000", ["127.0.0.1"]) == "http"


def test_insecure_registries_use_http() -> None:
    insecure = ["reg.lan:5000", "http://other.lan/", "10.1.2.3"]
    assert registry_scheme("reg.lan:5000", insecure) == "http"
    assert registry_scheme("reg.lan:6000", insecure) == "https"  # the listed port only
    assert registry_scheme("reg.lan", insecure) == "https"
    assert registry_scheme("other.lan", insecure) == "http"
    assert registry_scheme("other.lan:8080", insecure) == "http"  # no port listed: any port
    assert registry_scheme("10.1.2.3:5000", insecure) == "http"
    assert registry_scheme("docker.io", insecure) == "https"


def test_credential_matching_by_host() -> None:
    hub = RegistryCredential("https://index.docker.io/v1/", "hubuser", "p1")
    local = RegistryCredential("http://127.0.0.1:5000", "localuser", "p2")
    creds = [hub, local]
    assert credential_for("docker.io", creds) is hub
    assert credential_for("127.0.0.1:5000", creds) is local
    assert credential_for("127.0.0.1:5001", creds) is None
    assert credential_for("ghcr.io", creds) is None


def test_a_credential_without_a_server_is_sent_to_no_registry() -> None:
    """It was sent to any registry an image named (a realm editor's own included): a realm
    stored with one before serverAddress was required pulls anonymously where none names
    the registry."""
    anywhere = RegistryCredential("", "robot", "p0")
    blank = RegistryCredential("  ", "robot", "p0")
    local = RegistryCredential("127.0.0.1:5000", "localuser", "p2")
    assert credential_for("ghcr.io", [anywhere, blank, local]) is None
    assert credential_for("127.0.0.1:5000", [anywhere, local]) is local
    assert credential_for("docker.io", [anywhere]) is None


# --- WWW-Authenticate -----------------------------------------------------------------------


def test_bearer_challenge_with_quoted_comma() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull,push"'
    )
    assert parse_www_authenticate([header]) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/busybox:pull,push",
            },
        )
    ]


def test_basic_challenge_and_several_per_header() -> None:
    header = 'Basic realm="Registry Realm", Bearer realm="https://t/x", service=reg'
    assert parse_www_authenticate([header]) == [
        Challenge("basic", {"realm": "Registry Realm"}),
        Challenge("bearer", {"realm": "https://t/x", "service": "reg"}),
    ]


def test_challenges_from_several_headers_and_odd_spacing() -> None:
    headers = ['basic realm = "a\\"b"', '  Bearer   realm=x ,  service = "s" ']
    assert parse_www_authenticate(headers) == [
        Challenge("basic", {"realm": 'a"b'}),
        Challenge("bearer", {"realm": "x", "service": "s"}),
    ]


def test_challenge_without_params_and_garbage() -> None:
    assert parse_www_authenticate(["Negotiate"]) == [Challenge("negotiate", {})]
    assert parse_www_authenticate(["Negotiate abc==, Basic realm=r"]) == [
        Challenge("negotiate", {}),
        Challenge("basic", {"realm": "r"}),
    ]
    assert parse_www_authenticate(["=, ,"]) == []
    assert parse_www_authenticate([]) == []


def test_empty_quoted_value() -> None:
    assert parse_www_authenticate(['Bearer realm="",service=""']) == [
        Challenge("bearer", {"realm": "", "service": ""})
    ]
