"""Who is calling and what they may do: bearer tokens mapped to users and roles.

The TCP listener is reachable from other hosts, so every request on it carries a bearer
token that the tokens file maps to a user and a role:

- ``admin``: every verb on every resource, status subresources included;
- ``viewer``: read only (get, list, watch);
- ``editor``: every verb on spec, but only inside the realms it names;
- ``node``: the fleet token a kukeond forwards node-local requests with (a cell's logs,
  exec, kill, attach, stats, a realm's images or a node's stats on another node): those
  subresources and nothing else, so a leaked fleet token cannot rewrite the registry. The
  node that forwards has already authorised the original caller.

The unix socket is the local administrator's path: whoever can open it (root and members
of the socket's group, mode 0660) is trusted as ``admin``, the same trust model as the
Docker and containerd sockets. Authentication and authorization both happen before any
handler runs, so a refused request never writes anything.

Tokens file (YAML)::

    tokens:
      - token: 3f9c...        # the secret; compare is by SHA-256 digest
        user: alice
        role: admin
      - token: 77ab...
        user: ci
        role: editor
        realms: [staging]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kukeon.api.yamlread import load_yaml
from kukeon.fileio import warn_if_open_to_others

Verb = Literal["get", "list", "watch", "create", "update", "patch", "delete"]
READ_VERBS: frozenset[str] = frozenset({"get", "list", "watch"})


class Role(StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"
    EDITOR = "editor"
    NODE = "node"


NODE_SUBRESOURCES: frozenset[str] = frozenset(
    {"log", "exec", "kill", "attach", "images", "stats", "cp", "portforward"}
)
"""What the ``node`` role may reach: the routes a kukeond serves for its own host."""


class TokensFileError(Exception):
    """The tokens file could not be read; the message names the file and the entry."""


class Principal(BaseModel):
    """The authenticated caller."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str
    role: Role
    realms: frozenset[str] = frozenset()

    def may_see_realm(self, realm: str) -> bool:
        return self.role != Role.EDITOR or realm in self.realms

    @property
    def sees_every_realm(self) -> bool:
        """Whether ``may_see_realm`` is true of any realm (a list need not ask per object)."""
        return self.role != Role.EDITOR


LOCAL_ADMIN = Principal(user="unix-socket", role=Role.ADMIN)
"""The identity of every request arriving on the unix socket."""


class _TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=16)
    user: str = Field(min_length=1)
    role: Role
    realms: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _editor_needs_realms(self) -> _TokenEntry:
        if self.role == Role.EDITOR and not self.realms:
            raise ValueError("an editor must name the realms it may edit (realms: [...])")
        if self.role != Role.EDITOR and self.realms:
            raise ValueError(f"realms only applies to role editor, not {self.role.value}")
        return self


class _TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[_TokenEntry]


def token_bytes(token: str) -> bytes:
    """The bytes of a token as the client sent them: aiohttp decodes header bytes that are
    not UTF-8 into lone surrogates, which a plain ``encode()`` refuses -- an unauthenticated
    ``Authorization: Bearer \\xff`` was a 500 and a logged traceback."""
    return token.encode("utf-8", "surrogateescape")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token_bytes(token)).digest()


class TokenBook:
    """Token -> Principal lookup.

    Stored by digest: a dict lookup on a SHA-256 digest reveals nothing useful through
    timing, and the plain tokens do not stay in memory longer than the load.
    """

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._by_digest = {_digest(token): p for token, p in principals.items()}

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, token: str) -> Principal | None:
        return self._by_digest.get(_digest(token))

    @classmethod
    def from_document(cls, document: Any, *, source: str = "tokens file") -> TokenBook:
        try:
            parsed = _TokensFile.model_validate(document)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise TokensFileError(f"{source}: {problems}") from exc
        principals: dict[str, Principal] = {}
        for index, entry in enumerate(parsed.tokens):
            if entry.token in principals:
                raise TokensFileError(f"{source}: tokens.{index}: duplicate token")
            principals[entry.token] = Principal(
                user=entry.user, role=entry.role, realms=frozenset(entry.realms)
            )
        return cls(principals)

    @classmethod
    def load(cls, path: Path) -> TokenBook:
        """Read and validate a tokens file (blocking: call via asyncio.to_thread); a file
        other local users may read or replace is warned about
        (``fileio.warn_if_open_to_others``)."""
        warn_if_open_to_others(
            path,
            "API tokens file",
            if_replaced="they give themselves any role, admin (root on this host) included",
        )
        try:
            document = load_yaml(path.read_text())
        except OSError as exc:
            raise TokensFileError(f"cannot read tokens file {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise TokensFileError(f"tokens file {path} is not YAML: {exc}") from exc
        return cls.from_document(document, source=str(path))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if well formed."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_in_text(text: str) -> str | None:
    """The first non-empty line of a token file's ``text``, stripped; None when it has none."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return None


def denial(
    principal: Principal, *, verb: Verb, realm: str | None, subresource: str | None
) -> str | None:
    """Why ``principal`` may not do this, or None when it may.

    ``realm`` is the realm the request touches; None for cross-realm reads, which editors
    may do but whose results are filtered to their realms by the handler.
    """
    if principal.role == Role.ADMIN:
        return None
    if principal.role == Role.VIEWER:
        if verb in READ_VERBS:
            return None
        return f"user {principal.user!r} (viewer) may not {verb}"
    if principal.role == Role.NODE:
        if subresource in NODE_SUBRESOURCES:
            return None
        return (
            f"user {principal.user!r} (node) may only reach node-local routes "
            f"({', '.join(sorted(NODE_SUBRESOURCES))}), not {verb} " + (subresource or "resources")
        )
    # editor
    if subresource == "status" and verb not in READ_VERBS:
        return f"user {principal.user!r} (editor) may not {verb} status; controllers write status"
    if realm is not None and realm not in principal.realms:
        return f"user {principal.user!r} (editor) may not {verb} in realm {realm!r}"
    if realm is None and verb not in READ_VERBS:
        return f"user {principal.user!r} (editor) may not {verb} across realms"
    return None
