"""The image reference grammar (``kukeon.api.imageref``) against Docker's.

``docker_parse`` is ``github.com/distribution/reference``'s ``ParseDockerRef`` (what
containerd parses references with) written out from its regular expressions and
``ParseNormalizedNamed``; hypothesis checks that kukeon's parser accepts exactly what it
accepts, with the same meaning, but for the documented differences (a port outside
1-65535, a bracketed host that is not an IPv6 address, kukeon's other names of Docker Hub),
and that every parsed reference reads back as itself.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kukeon.api.imageref import (
    DIGEST_HEX_LENGTHS,
    DOCKER_HUB_ALIASES,
    ImageReference,
    InvalidReferenceError,
    parse_reference,
    reference_problem,
)

# --- Docker's grammar (distribution/reference regexp.go, normalize.go) ------------------------

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN_AND_PORT = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Go's \w is ASCII
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})"
REFERENCE = rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?"
_REFERENCE = re.compile(REFERENCE)

Parsed = tuple[str, str, str | None, str | None]


def docker_parse(text: str) -> Parsed | None:
    """ParseDockerRef: (domain, path, tag, digest), or None where Docker refuses ``text``."""
    if re.fullmatch(r"[a-f0-9]{64}", text):
        return None  # "cannot specify 64-byte hexadecimal strings"
    slash = text.find("/")
    first = text[:slash]
    if slash == -1 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = "docker.io", text
    else:
        domain, remainder = first, text[slash + 1 :]
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        return None
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None:
        return None
    name, found_domain, path, tag, digest = match.groups()
    if len(name) > 255 or found_domain is None:
        return None
    if digest is not None:
        algorithm, _, encoded = digest.partition(":")
        length = DIGEST_HEX_LENGTHS.get(algorithm)  # go-digest: an available algorithm
        if length is None or not re.fullmatch(rf"[a-f0-9]{{{length}}}", encoded):
            return None
    if tag is None and digest is None:
        tag = "latest"  # TagNameOnly
    return found_domain, path, tag, digest


def _kukeon_only_refuses(text: str) -> bool:
    """The documented cases Docker's grammar takes and kukeon refuses: no registry is there."""
    first = text.split("/", 1)[0] if "/" in text else ""
    port = re.search(r":([0-9]+)$", first)
    # More than 5 digits is refused before it is read as a number ("000001" included).
    if port and (len(port.group(1)) > 5 or not 0 < int(port.group(1)) < 65536):
        return True
    bracketed = re.match(r"\[([^\]]*)\]", first)
    if bracketed:
        try:
            ipaddress.IPv6Address(bracketed.group(1))
        except ValueError:
            return True
    return False


def _kukeon_meaning(parsed: Parsed) -> Parsed:
    """Docker's answer in kukeon's normal form: every name of Docker Hub is docker.io."""
    domain, path, tag, digest = parsed
    if domain.lower() in DOCKER_HUB_ALIASES:
        domain = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    return domain, path, tag, digest


def _check_against_docker(text: str) -> None:
    docker = docker_parse(text.strip())  # kukeon ignores blanks around (documented)
    problem = reference_problem(text)
    if problem is not None:
        assert docker is None or _kukeon_only_refuses(text), (text, docker, problem)
        with pytest.raises(InvalidReferenceError, match=re.escape(problem.split(": ")[-1])):
            parse_reference(text)
        return
    ours = parse_reference(text)
    assert docker is not None, (text, ours)
    assert (ours.registry, ours.repository, ours.tag, ours.digest) == _kukeon_meaning(docker)


# --- what Docker accepts is accepted, with the same meaning -------------------------------------

SHA256 = "sha256:" + "0123456789abcdef" * 4

ACCEPTED = [
    "busybox",
    "library/busybox:1.36",
    "docker.io/library/busybox:1.36",
    "localhost:5000/x",
    "localhost/x",
    "[::1]:5000/x",
    "[::1]/x:t",
    f"x@{SHA256}",
    f"x:tag@{SHA256}",
    f"ghcr.io/a/b-c/d__e.f_g:V1.2-rc_3@{SHA256}",
    "Registry.Example.COM:443/team/app",
    "a" * 63,  # not 64 hex digits
    "busybox:" + "T" * 128,
    "docker.io/" + "a/" * 100 + "a",  # 209 + "docker.io/" = 219 characters
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_references_docker_accepts_are_accepted(text: str) -> None:
    assert docker_parse(text) is not None
    _check_against_docker(text)


REFUSED = [
    ("", "empty"),
    ("Busybox", "must be lowercase letters"),
    ("busybox:", "tag ''"),
    ("busybox:" + "T" * 129, "must match"),
    ("busybox@sha256:abc", "64 lowercase hex"),
    (f"busybox@{SHA256.upper()}", "not <algorithm>:<hex>"),
    ("0123456789abcdef" * 4, "image id"),
    ("[::ffff:1.2.3.4]:5000/x", "not a host[:port]"),  # Docker's IPv6 has no dots
    ("reg.io/a//b", "component ''"),
    ("a b", "must be lowercase letters"),
    ("../../../:@@@", "not <algorithm>:<hex>"),
    ("reg.io/" + "a" * 249, "longer than 255"),
    ("x/" * 126 + "ab", "longer than 255"),  # docker.io/ counted, as Docker counts it
    ("reg:" + "9" * 5000 + "/x", "out of range"),
]


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_what_docker_refuses_is_refused(text: str, reason: str) -> None:
    assert docker_parse(text) is None
    problem = reference_problem(text)
    assert problem is not None
    assert reason in problem
    assert len(problem) < 500  # the reference is quoted, not echoed whole


# --- hypothesis ---------------------------------------------------------------------------------

_lower = st.text("abcz019", min_size=1, max_size=4)
_component = st.builds(
    lambda parts, seps: "".join(p + s for p, s in zip(parts, seps, strict=False)) + parts[-1],
    st.lists(_lower, min_size=1, max_size=3),
    st.lists(st.sampled_from([".", "_", "__", "-", "--"]), min_size=2, max_size=2),
)
_registry = st.one_of(
    st.sampled_from(
        ["localhost", "docker.io", "index.docker.io", "registry-1.docker.io", "[::1]", "[fe80::2]"]
    ),
    st.from_regex(rf"{_DOMAIN_COMPONENT}\.{_DOMAIN_COMPONENT}", fullmatch=True),
).flatmap(lambda host: st.sampled_from([host, f"{host}:5000", f"{host}:1"]))
_digest = st.sampled_from(sorted(DIGEST_HEX_LENGTHS.items())).flatmap(
    lambda item: st.text("0123456789abcdef", min_size=item[1], max_size=item[1]).map(
        lambda hex_: f"{item[0]}:{hex_}"
    )
)
valid_references = st.builds(
    lambda registry, path, tag, digest: (
        (f"{registry}/" if registry else "")
        + "/".join(path)
        + (f":{tag}" if tag else "")
        + (f"@{digest}" if digest else "")
    ),
    st.one_of(st.none(), _registry),
    st.lists(_component, min_size=1, max_size=3),
    st.one_of(st.none(), st.from_regex(_TAG, fullmatch=True)),
    st.one_of(st.none(), _digest),
)


@settings(max_examples=200, deadline=None)
@given(valid_references)
@example("[::1]:5000/x")
def test_well_formed_references_parse_as_docker_parses_them_and_read_back(text: str) -> None:
    _check_against_docker(text)
    if docker_parse(text) is None:
        return  # a first path component with a dot that is no host (`a.b_c/x`): both refuse
    ref = parse_reference(text)
    assert parse_reference(str(ref)) == ref
    assert str(parse_reference(str(ref))) == str(ref)


@settings(max_examples=60, deadline=None)  # generating from the whole grammar is slow
@given(st.from_regex(REFERENCE, fullmatch=True))
def test_docker_grammars_strings_are_judged_as_docker_judges_them(text: str) -> None:
    _check_against_docker(text)


@settings(max_examples=300, deadline=None)
@given(st.text("aZ09.-_:/@[]", max_size=24))
def test_any_string_is_judged_as_docker_judges_it(text: str) -> None:
    _check_against_docker(text)


@settings(max_examples=300, deadline=None)
@given(valid_references, st.integers(min_value=0), st.sampled_from(list("A:/@.-_ [%é\x00")))
def test_a_changed_character_is_judged_as_docker_judges_it(
    text: str, position: int, character: str
) -> None:
    index = position % (len(text) + 1)
    _check_against_docker(text[:index] + character + text[index + 1 :])


def test_a_parsed_reference_names_its_parts() -> None:
    assert parse_reference("busybox") == ImageReference(
        "docker.io", "library/busybox", "latest", None
    )
    assert parse_reference(f"x:t@{SHA256}").object == SHA256
