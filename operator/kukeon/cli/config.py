"""Where kukectl connects: contexts in ``~/.config/kukeon/config.yaml``, flags, environment.

A flag beats the environment, the environment beats the selected context, and with
nothing configured kukectl talks to the local daemon's unix socket. The file::

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
from typing import NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from kukeon.client.apiclient import DEFAULT_SERVER


class ConfigError(Exception):
    """The config file or a flag is wrong; the message names the file, context or field."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Context(_Model):
    name: str = Field(min_length=1)
    server: str = DEFAULT_SERVER
    token: str | None = None
    token_file: Path | None = None
    certificate_authority: Path | None = None


class KukectlConfig(_Model):
    current_context: str | None = None
    contexts: list[Context] = Field(default_factory=list)

    def context(self, name: str) -> Context | None:
        return next((ctx for ctx in self.contexts if ctx.name == name), None)


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
    """The config file, or an empty config when it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return KukectlConfig()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not YAML: {exc}") from exc
    try:
        return KukectlConfig.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


def save_config(path: Path, config: KukectlConfig) -> None:
    """Write the config file (mode 0600: it may hold tokens), creating its directory."""
    document = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        yaml.safe_dump(document, handle, sort_keys=False)
    os.replace(temporary, path)


def resolve_connection(
    *,
    config: KukectlConfig,
    context: str | None = None,
    server: str | None = None,
    token: str | None = None,
    ca_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Connection:
    env = os.environ if environ is None else environ
    chosen_name = context or env.get("KUKEON_CONTEXT") or config.current_context
    chosen: Context | None = None
    if chosen_name:
        chosen = config.context(chosen_name)
        if chosen is None:
            known = ", ".join(ctx.name for ctx in config.contexts) or "none"
            raise ConfigError(f"context {chosen_name!r} not found in the config (known: {known})")
    ctx_token = chosen.token if chosen else None
    if ctx_token is None and chosen is not None and chosen.token_file is not None:
        try:
            ctx_token = chosen.token_file.read_text().strip()
        except OSError as exc:
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
