"""The config file read as plain YAML, for the paths that must not load pydantic.

Shell completion and the scope options' defaults read the chosen context here: a TAB
must answer fast, and a command run without a config file reads nothing. What a valid
file holds is checked by ``configfile`` when a command connects.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCOPE_LEVELS = ("realm", "space", "stack")


def config_file(root_params: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Path:
    """``--config``, else $KUKEON_CONFIG, else ~/.config/kukeon/config.yaml (as kukectl)."""
    env = os.environ if environ is None else environ
    given = root_params.get("config_path") or env.get("KUKEON_CONFIG")
    if given:
        return Path(given)
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kukeon" / "config.yaml"


def read_config(path: Path) -> Mapping[str, Any]:
    """The config file as a mapping; empty when it is missing or unreadable."""
    if not path.is_file():
        return {}
    import yaml

    from kukeon.api.yamlread import load_yaml

    try:
        document = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}  # load_config names the problem when the command connects
    return document if isinstance(document, dict) else {}


def contexts_of(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    contexts = document.get("contexts")
    if not isinstance(contexts, list):
        return []
    return [c for c in contexts if isinstance(c, dict) and isinstance(c.get("name"), str)]


def chosen_name(
    root_params: Mapping[str, Any], document: Mapping[str, Any], environ: Mapping[str, str]
) -> str | None:
    """``--context``, else $KUKEON_CONTEXT, else the file's current context."""
    name = root_params.get("context") or environ.get("KUKEON_CONTEXT")
    current = document.get("currentContext")
    return name or (current if isinstance(current, str) else None)


def context_scope(
    root_params: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Mapping[str, str]:
    """The realm, space and stack the chosen context sets (kubectl's context namespace):
    the defaults of ``--realm/--space/--stack``; empty without a config file or context."""
    env = os.environ if environ is None else environ
    path = config_file(root_params, env)
    try:
        stamp = path.stat()
    except OSError:
        return {}
    context = root_params.get("context") or env.get("KUKEON_CONTEXT")
    return _scope_in(path, stamp.st_mtime_ns, stamp.st_size, context)


def context_default(
    level: str, configured: Mapping[str, str], above: Mapping[str, str | None]
) -> str | None:
    """The context's value for ``level``, unless a level above is set to another than the
    context's (its space is a space of its realm, its stack one of its space); ``above``:
    the values chosen for the levels above, ``None`` where none is."""
    if level not in configured:
        return None
    for upper in SCOPE_LEVELS[: SCOPE_LEVELS.index(level)]:
        chosen = above.get(upper)
        if chosen is not None and chosen != configured.get(upper, "default"):
            return None
    return configured[level]


@functools.cache
def _scope_in(path: Path, _mtime_ns: int, _size: int, context: str | None) -> Mapping[str, str]:
    # Read once per process and file version: every scope option of a command asks.
    document = read_config(path)
    name = chosen_name({"context": context}, document, {})
    chosen = next((c for c in contexts_of(document) if c.get("name") == name), {})
    return {
        level: value
        for level in SCOPE_LEVELS
        if isinstance(value := chosen.get(level), str) and value
    }
