"""Where kukectl connects: contexts in ``~/.config/kukeon/config.yaml``, flags, environment.

A flag beats the environment, the environment beats the selected context, and with
nothing configured kukectl talks to the local daemon's unix socket. The file (read and
written by ``configfile``, loaded only when there is one)::

    currentContext: prod
    contexts:
      - name: local
        server: unix:///run/kukeon/kukeond.sock
      - name: prod
        server: https://10.0.0.5:6443
        token: 3f9c...                      # or tokenFile: /path/to/token
        certificateAuthority: /etc/kukeon/pki/ca.crt
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from kukeon.client.apiclient import DEFAULT_SERVER

if TYPE_CHECKING:
    from .configfile import Context, KukectlConfig


class ConfigError(Exception):
    """The config file or a flag is wrong; the message names the file, context or field."""


class Connection(NamedTuple):
    """What the client needs, resolved from flags, environment and the config file."""

    server: str
    token: str | None
    ca_file: Path | None
    context: str | None


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("KUKEON_CONFIG"):
        return Path(env["KUKEON_CONFIG"])
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "kukeon" / "config.yaml"


def load_config(path: Path) -> KukectlConfig:
    """The config file, or an empty config when it does not exist (``configfile``)."""
    from .configfile import read_config

    return read_config(path)


def resolve_connection(
    *,
    config: KukectlConfig | None,
    context: str | None = None,
    server: str | None = None,
    token: str | None = None,
    ca_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Connection:
    env = os.environ if environ is None else environ
    current = config.current_context if config is not None else None
    chosen_name = context or env.get("KUKEON_CONTEXT") or current
    chosen: Context | None = None
    if chosen_name:
        chosen = config.context(chosen_name) if config is not None else None
        if chosen is None:
            contexts = config.contexts if config is not None else []
            known = ", ".join(ctx.name for ctx in contexts) or "none"
            raise ConfigError(f"context {chosen_name!r} not found in the config (known: {known})")
    ctx_token = chosen.token if chosen else None
    if ctx_token is None and chosen is not None and chosen.token_file is not None:
        try:
            ctx_token = chosen.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"context {chosen.name!r}: cannot read tokenFile: {exc}") from exc
    env_ca = env.get("KUKEON_CA")
    return Connection(
        server=server or env.get("KUKEON_SERVER") or (chosen.server if chosen else DEFAULT_SERVER),
        token=token or env.get("KUKEON_TOKEN") or ctx_token,
        ca_file=ca_file
        or (Path(env_ca) if env_ca else None)
        or (chosen.certificate_authority if chosen else None),
        context=chosen.name if chosen else None,
    )
