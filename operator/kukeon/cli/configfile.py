"""kukectl's config file (``config.yaml``): its contexts as models, read and written.

Loaded when a config file is read or written (pydantic and yaml): a kukectl run without
one, its server given by a flag or the environment, never loads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from kukeon.api.yamlread import load_yaml
from kukeon.client.apiclient import DEFAULT_SERVER
from kukeon.fileio import path_problems, write_atomically

from .config import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# A name of the hierarchy (DNS-1123 label), checked here without importing kukeon.api:
# every kukectl command with a config file reads this module.
ContextName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
]


class Context(_Model):
    name: str = Field(min_length=1)
    server: str = DEFAULT_SERVER
    token: str | None = None
    token_file: Path | None = None
    certificate_authority: Path | None = None
    realm: ContextName | None = None
    """The realm of commands that give no --realm (kubectl's context namespace)."""
    space: ContextName | None = None
    """The space of commands that give no --space (a space of the context's realm)."""
    stack: ContextName | None = None
    """The stack of commands that give no --stack (a stack of the context's space)."""


class KukectlConfig(_Model):
    current_context: str | None = None
    contexts: list[Context] = Field(default_factory=list)

    def context(self, name: str) -> Context | None:
        return next((ctx for ctx in self.contexts if ctx.name == name), None)


def read_config(path: Path) -> KukectlConfig:
    """The config file, or an empty config when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return KukectlConfig()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:  # was "unexpected failure: UnicodeDecodeError"
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        document = load_yaml(text) or {}
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


def exposure_warnings(path: Path, config: KukectlConfig) -> list[str]:
    """What lets other local users read the tokens kukectl's files hold, or change those
    files, judged along the whole path (``fileio.path_problems``): the config file (read:
    when a context holds a token; changed: always, since a config of theirs sends whatever
    token kukectl is given to their server) and each tokenFile. kubectl says nothing of it;
    Helm warns about a group- or world-readable kubeconfig. A hand-written file under
    umask 022 is 0644, and many homes are 0755."""
    inline = any(ctx.token is not None for ctx in config.contexts)
    token_files = dict.fromkeys(c.token_file for c in config.contexts if c.token_file is not None)
    holds = "holds API tokens" if inline else "says where kukectl sends its token"
    checks: list[tuple[Path, str, bool]] = [(path, f"config file {path} ({holds})", inline)]
    checks += [(token_file, f"token file {token_file}", True) for token_file in token_files]
    warnings: list[str] = []
    for target, what, secret in checks:
        try:
            problems = path_problems(target, secret=secret)
        except OSError:
            continue  # reading it names the problem
        if problems:
            said = "; ".join(dict.fromkeys([*problems.change, *problems.read]))
            warnings.append(
                f"the {what} is open to other local users: {said} (chmod 600 it, in "
                "directories only you may write)"
            )
    return warnings


def save_config(path: Path, config: KukectlConfig) -> None:
    """Write the config file (mode 0600: it may hold tokens), creating its directory."""
    document = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    # A temporary file of its own (O_EXCL, 0600): a fixed name could be planted by whoever
    # may write the directory, as a file of theirs or a link, to receive the tokens.
    text = yaml.safe_dump(document, sort_keys=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text, mode=0o600, durable=False)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc
