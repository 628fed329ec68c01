"""Tokens file, bearer parsing and the role table."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.apiserver.auth import (
    LOCAL_ADMIN,
    Principal,
    Role,
    TokenBook,
    TokensFileError,
    bearer_token,
    denial,
)

ADMIN = "a" * 32
VIEWER = "v" * 32
EDITOR = "e" * 32


def _book() -> TokenBook:
    return TokenBook.from_document(
        {
            "tokens": [
                {"token": ADMIN, "user": "alice", "role": "admin"},
                {"token": VIEWER, "user": "victor", "role": "viewer"},
                {"token": EDITOR, "user": "eddie", "role": "editor", "realms": ["team"]},
            ]
        }
    )


def test_authenticate() -> None:
    book = _book()
    assert len(book) == 3
    assert book.authenticate(ADMIN) == Principal(user="alice", role=Role.ADMIN)
    editor = book.authenticate(EDITOR)
    assert editor is not None
    assert editor.realms == frozenset({"team"})
    assert book.authenticate("x" * 32) is None
    # Header bytes that are not UTF-8 reach us as lone surrogates: no token, not a 500.
    assert book.authenticate("\udcff\udcfe" * 16) is None


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"tokens": [{"token": "short", "user": "a", "role": "admin"}]}, "tokens.0.token"),
        ({"tokens": [{"token": ADMIN, "user": "a", "role": "root"}]}, "tokens.0.role"),
        ({"tokens": [{"token": ADMIN, "user": "a", "role": "editor"}]}, "realms"),
        ({"tokens": [{"token": ADMIN, "user": "a", "role": "viewer", "realms": ["x"]}]}, "realms"),
        ({"tokens": [{"token": ADMIN, "user": "a", "role": "admin", "x": 1}]}, "tokens.0.x"),
        (
            {
                "tokens": [
                    {"token": ADMIN, "user": "a", "role": "admin"},
                    {"token": ADMIN, "user": "b", "role": "viewer"},
                ]
            },
            "duplicate",
        ),
        ([1, 2], "tokens file"),
    ],
)
def test_bad_tokens_files_name_the_entry(document: object, fragment: str) -> None:
    with pytest.raises(TokensFileError, match=fragment):
        TokenBook.from_document(document)


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(f"tokens:\n  - token: {ADMIN}\n    user: alice\n    role: admin\n")
    assert TokenBook.load(path).authenticate(ADMIN) is not None
    with pytest.raises(TokensFileError, match="cannot read"):
        TokenBook.load(tmp_path / "missing.yaml")
    path.write_text("tokens: [unclosed")
    with pytest.raises(TokensFileError, match="not YAML"):
        TokenBook.load(path)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


VIEWER_P = Principal(user="v", role=Role.VIEWER)
EDITOR_P = Principal(user="e", role=Role.EDITOR, realms=frozenset({"team"}))
NODE_P = Principal(user="fleet", role=Role.NODE)


@pytest.mark.parametrize(
    ("principal", "verb", "realm", "subresource", "allowed"),
    [
        (LOCAL_ADMIN, "delete", "any", None, True),
        (LOCAL_ADMIN, "update", "any", "status", True),
        (VIEWER_P, "get", "any", None, True),
        (VIEWER_P, "watch", None, None, True),
        (VIEWER_P, "create", "any", None, False),
        (VIEWER_P, "patch", "any", "status", False),
        (EDITOR_P, "create", "team", None, True),
        (EDITOR_P, "delete", "team", None, True),
        (EDITOR_P, "get", "other", None, False),
        (EDITOR_P, "create", "other", None, False),
        (EDITOR_P, "list", None, None, True),
        (EDITOR_P, "update", "team", "status", False),
        (NODE_P, "get", "any", "log", True),
        (NODE_P, "create", "any", "exec", True),
        (NODE_P, "update", "any", "kill", True),
        (NODE_P, "create", "any", "images", True),
        (NODE_P, "get", "any", None, False),
        (NODE_P, "list", None, None, False),
        (NODE_P, "update", "any", "status", False),
    ],
)
def test_role_table(
    principal: Principal, verb: str, realm: str | None, subresource: str | None, allowed: bool
) -> None:
    why = denial(principal, verb=verb, realm=realm, subresource=subresource)  # type: ignore[arg-type]
    assert (why is None) == allowed, why
    if why is not None:
        assert principal.user in why
