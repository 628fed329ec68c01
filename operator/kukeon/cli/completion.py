"""Shell completion of kukectl (bash, zsh, fish): verbs, flags, and names from the server.

A completion is one ``kukectl`` process per TAB (``_KUKECTL_COMPLETE=bash_complete``), so it
must start fast. Importing the real command tree (``kukeon.cli.main`` and its modules) pulls
in pydantic, aiohttp and rich and costs about a second, so completion runs on a *skeleton*:
the same commands, options and arguments rebuilt as plain click objects from a description
of the real tree. The description (plus the kinds' URL layout and the default server) is
kept in ``$XDG_CACHE_HOME/kukeon/kukectl-completion-*.json`` (one per installation) and
rebuilt from the real tree whenever kukectl's source files, kukeon's version or Python
change; without a writable cache it is built in memory each time (correct, but slow). The
installer writes one beside the package (``prebuild``), which a user without a current
cache reads instead of building it: the first TAB after an upgrade is not the slow one.

Names come from the server over plain ``http.client`` (a unix socket, or https with the
context's CA and token), resolved from ``--server``/``--token``/``--context``/``--config``
as typed on the command line, the environment and the config file, like every command. All
requests of one completion share one budget (``KUKEON_COMPLETION_TIMEOUT`` seconds,
default 1); on a timeout, an error or an unreachable server nothing is completed and
nothing is printed but the (empty) answer.

Which parameter completes what is decided from the real tree when the description is
built: a KIND argument completes kinds, the NAME arguments after it names of that kind,
``get``'s ``KIND/NAME`` names after the slash, ``wait``'s targets ``cell/NAME``; the NAME
of start, stop, restart, kill, logs, exec, attach, port-forward and ``top cells`` completes
cells; ``cordon``, ``uncordon``, ``drain`` and ``top nodes`` complete nodes; ``explain``
completes ``KIND.field.path`` from the schema (kept in the description: no server); the options
``--realm``, ``--space``, ``--stack`` (within the realm and space given), ``-c/--container``
(the containers of the cell given), ``--node`` and ``--context`` complete their values.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from click.shell_completion import CompletionItem, get_completion_class, shell_complete

from kukeon.cli.configdoc import (
    SCOPE_LEVELS,
    chosen_name,
    config_file,
    context_default,
    context_scope,
    contexts_of,
    read_config,
)

COMPLETE_VAR = "_KUKECTL_COMPLETE"
TIMEOUT_VAR = "KUKEON_COMPLETION_TIMEOUT"
DEFAULT_TIMEOUT = 1.0
CACHE_NAME = "kukectl-completion"
CACHE_FORMAT = 1
SHIPPED_NAME = "completion-description.json"

# Placeholders that survive URL quoting, replaced by the (quoted) names at completion time.
_SCOPE_MARKS = ("KUKEONSCOPE0", "KUKEONSCOPE1", "KUKEONSCOPE2")
_NAME_MARK = "KUKEONNAME"

# Context settings that change how a command parses its arguments.
_SETTINGS = (
    "help_option_names",
    "ignore_unknown_options",
    "allow_extra_args",
    "allow_interspersed_args",
)

# Which parameters complete what (see the module docstring).
_CELL_COMMANDS = {
    ("start",),
    ("stop",),
    ("restart",),
    ("kill",),
    ("logs",),
    ("exec",),
    ("attach",),
    ("top", "cells"),
    ("port-forward",),
}
_NODE_COMMANDS = {("top", "nodes"), ("cordon",), ("uncordon",), ("drain",)}
_CONTEXT_COMMANDS = {
    ("config", "use-context"),
    ("config", "set-context"),
    ("config", "delete-context"),
    ("config", "get-contexts"),
}
_OPTION_COMPLETERS = {
    "realm": "realms",
    "space": "spaces",
    "stack": "stacks",
    "container": "containers",
    "node": "nodes",
    "context": "contexts",
}

_OUTPUT_FORMATS = ("table", "wide", "yaml", "json", "name", "jsonpath=", "custom-columns=")

Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem[str]]]


# --- describing the real tree (slow: imports kukectl) ----------------------------------


def _type_spec(param_type: click.ParamType[Any]) -> dict[str, Any]:
    if isinstance(param_type, click.Choice):
        return {"t": "choice", "choices": [str(choice) for choice in param_type.choices]}
    if isinstance(param_type, click.Path):
        return {"t": "path", "file": param_type.file_okay, "dir": param_type.dir_okay}
    if isinstance(param_type, click.File):
        return {"t": "path", "file": True, "dir": False}
    return {"t": "string"}


def completer_for(
    path: tuple[str, ...], command: click.Command, param: click.Parameter
) -> str | None:
    """The name of the completer of ``param`` of the command at ``path`` (None: click's own)."""
    from kukeon.cli.get import OutputType
    from kukeon.cli.params import KindType

    if isinstance(param, click.Option):
        if isinstance(param.type, OutputType):  # get's -o: kubectl completes its formats
            return "output-formats"
        return _OPTION_COMPLETERS.get(param.name or "")
    if isinstance(param.type, KindType):
        return "kinds"
    if param.name == "kind_or_object":
        return "kind-or-object"
    if path == ("wait",) and param.name == "targets":
        return "wait-targets"
    if path == ("explain",) and param.name == "resource":
        return "explain"
    if path == ("config", "rename-context") and param.name == "old":
        return "contexts"
    if param.name == "node" or (param.name in ("name", "names") and path in _NODE_COMMANDS):
        return "nodes"
    if param.name not in ("name", "names", "words"):  # words: label's NAME... KEY=VALUE...
        return None
    if path in _CELL_COMMANDS:
        return "cells"
    if path in _CONTEXT_COMMANDS:
        return "contexts"
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if any(isinstance(p.type, KindType) or p.name == "kind_or_object" for p in arguments):
        return "names"
    return None


def _param_spec(
    path: tuple[str, ...], command: click.Command, param: click.Parameter
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": param.name,
        "nargs": param.nargs,
        "multiple": param.multiple,
        "required": param.required,
        "expose": param.expose_value,
        "type": _type_spec(param.type),
        "completer": completer_for(path, command, param),
    }
    default = param.default
    if default is None or isinstance(default, str | bool | int | float):
        spec["default"] = default
    if isinstance(param, click.Option):
        spec.update(
            option=True,
            opts=list(param.opts),
            secondary=list(param.secondary_opts),
            flag=param.is_flag,
            count=param.count,
            hidden=param.hidden,
            help=param.help or "",
        )
    return spec


def describe(command: click.Command, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON-able description of ``command`` and its subcommands, enough to complete."""
    node: dict[str, Any] = {
        "help": command.get_short_help_str(limit=60),
        "hidden": command.hidden,
        "settings": {k: v for k, v in command.context_settings.items() if k in _SETTINGS},
        "params": [_param_spec(path, command, p) for p in command.params],
    }
    if isinstance(command, click.Group):
        node["invokeWithoutCommand"] = command.invoke_without_command
        ctx = click.Context(command)  # a lazy group imports each command here
        subcommands = {name: command.get_command(ctx, name) for name in command.list_commands(ctx)}
        node["commands"] = {
            name: describe(sub, (*path, name)) for name, sub in subcommands.items() if sub
        }
    return node


def _kinds() -> dict[str, Any]:
    from kukeon.api import SCOPE_PLACEHOLDER
    from kukeon.cli.explain import field_tree
    from kukeon.client.paths import KINDS, collection_path, object_path

    kinds: dict[str, Any] = {}
    for kind, info in KINDS.items():
        parents = len(info.parents)
        kinds[info.plural] = {
            "singular": kind.value.lower(),
            "aliases": sorted({*info.aliases, kind.value.lower(), info.plural}),
            "parents": parents,
            "collection": collection_path(kind, _SCOPE_MARKS[:parents]),
            "everywhere": collection_path(kind),
            "object": object_path(kind, (*_SCOPE_MARKS[:parents], _NAME_MARK)),
            "placeholder": SCOPE_PLACEHOLDER,
            "fields": field_tree(kind),
        }
    return kinds


def build_description() -> dict[str, Any]:
    """Everything completion needs from kukectl's modules (imports them all: slow)."""
    import kukeon.cli.main as kukectl
    from kukeon.client.apiclient import DEFAULT_SERVER

    return {
        "tree": describe(kukectl.cli),
        "kinds": _kinds(),
        "defaultServer": DEFAULT_SERVER,
    }


# --- the cache -------------------------------------------------------------------------


def cache_path(environ: Mapping[str, str] | None = None) -> Path:
    """One file per installation (two venvs do not keep rebuilding each other's)."""
    env = os.environ if environ is None else environ
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    package = str(Path(__file__).resolve().parent.parent).encode()
    return base / "kukeon" / f"{CACHE_NAME}-{hashlib.sha256(package).hexdigest()[:12]}.json"


def cache_key() -> str:
    """Changes whenever the description could: kukectl's sources, the models, kukeon's
    version, click, Python."""
    import kukeon

    package = Path(__file__).resolve().parent.parent
    sources = [
        *sorted((package / "cli").glob("*.py")),
        package / "__init__.py",
        package / "client" / "paths.py",
        package / "client" / "apiclient.py",
        *sorted((package / "api").glob("*.py")),  # the models: explain's field paths
        Path(click.__file__).resolve().parent / "core.py",
    ]
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{sys.version}\0{kukeon.__version__}".encode())
    for source in sources:
        with contextlib.suppress(OSError):
            stat = source.stat()
            digest.update(f"{source}\0{stat.st_mtime_ns}\0{stat.st_size}\n".encode())
    return digest.hexdigest()


def shipped_path() -> Path:
    """The description written beside the package when it is installed (``hack/install.sh``
    runs ``python -m kukeon.cli.completion prebuild``): a user's first TAB after an upgrade
    reads it instead of importing every command."""
    return Path(__file__).resolve().parent / SHIPPED_NAME


def _current(path: Path, key: str) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        found = json.loads(path.read_text())
        if isinstance(found, dict) and found.get("key") == key:
            return found
    return None


def _write_description(path: Path, description: Mapping[str, Any]) -> None:
    from kukeon.fileio import write_atomically  # tempfile's imports: only when writing

    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file of its own (O_EXCL): a predictable name could be a link planted by
    # whoever may write the directory, written through and chmod-ed by us.
    write_atomically(path, json.dumps(description), mode=0o644, durable=False)


def load_description(path: Path | None = None) -> dict[str, Any]:
    """The cached description when current, else the installation's (``shipped_path``)
    when current, else a fresh one; written back to the cache when possible."""
    path = path or cache_path()
    key = cache_key()
    cached = _current(path, key)
    if cached is not None:
        return cached
    description = _current(shipped_path(), key) or {"key": key, **build_description()}
    with contextlib.suppress(OSError):
        _write_description(path, description)
    return description


def prebuild() -> Path:
    """Write the installation's description (run by the installer, as the package's owner)."""
    path = shipped_path()
    _write_description(path, {"key": cache_key(), **build_description()})
    return path


# --- talking to the server (stdlib only) -----------------------------------------------


class CompletionUnavailableError(Exception):
    """Nothing to complete from the server: no config, no answer in time, an error."""


class Connection:
    """Server, token and CA as every command resolves them (``kukeon.cli.config``), read
    without pydantic: flags typed on the command line, then the environment, then the
    context of the config file."""

    def __init__(
        self,
        root_params: Mapping[str, Any],
        default_server: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        document = read_config(config_file(root_params, env))
        name = chosen_name(root_params, document, env)
        chosen: Mapping[str, Any] = {}
        if name:
            found = [c for c in contexts_of(document) if c.get("name") == name]
            if not found:
                raise CompletionUnavailableError(f"context {name!r} not found")
            chosen = found[0]
        token = chosen.get("token")
        if token is None and chosen.get("tokenFile"):
            try:
                token = Path(str(chosen["tokenFile"])).read_text().strip()
            except OSError as exc:
                raise CompletionUnavailableError(str(exc)) from exc
        ca = env.get("KUKEON_CA") or None
        self.server: str = str(
            root_params.get("server")
            or env.get("KUKEON_SERVER")
            or chosen.get("server")
            or default_server
        )
        self.token: str | None = root_params.get("token") or env.get("KUKEON_TOKEN") or token
        ca_file = root_params.get("ca_file") or ca or chosen.get("certificateAuthority")
        self.ca_file: str | None = str(ca_file) if ca_file else None

    def get(self, path: str, deadline: float) -> Any:
        """GET ``path``: the decoded JSON; CompletionUnavailableError on failure or timeout."""
        import http.client
        import socket

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CompletionUnavailableError("out of time")
        server = self.server.strip()
        connection: http.client.HTTPConnection
        if server.startswith(("unix://", "/")):
            socket_path = server.removeprefix("unix://")

            class UnixConnection(http.client.HTTPConnection):
                def connect(self) -> None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(remaining)
                    try:
                        sock.connect(socket_path)
                    except OSError:
                        sock.close()
                        raise
                    self.sock = sock

            connection = UnixConnection("kukeond", timeout=remaining)
        elif server.startswith("https://"):
            import ssl

            context = ssl.create_default_context(cafile=self.ca_file)
            location = server.removeprefix("https://").rstrip("/")
            connection = http.client.HTTPSConnection(location, timeout=remaining, context=context)
        else:
            raise CompletionUnavailableError(f"unsupported server {server!r}")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise CompletionUnavailableError(str(exc)) from exc
        finally:
            connection.close()
        if response.status != 200:
            raise CompletionUnavailableError(f"HTTP {response.status}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise CompletionUnavailableError("not JSON") from exc


# --- the completers --------------------------------------------------------------------


class Completers:
    """The completers of one completion; all their requests share one deadline."""

    def __init__(self, description: Mapping[str, Any], timeout: float) -> None:
        self.kinds: Mapping[str, Any] = description["kinds"]
        self.default_server: str = description["defaultServer"]
        self.timeout = timeout
        self.deadline: float | None = None
        self.root: click.Command | None = None
        self.words: list[str] | None = None  # the complete words before the TAB
        self.aliases = {
            alias: plural for plural, info in self.kinds.items() for alias in info["aliases"]
        }

    def by_name(self, name: str | None) -> Completer | None:
        table: dict[str, Callable[[click.Context, click.Parameter, str], list[str]]] = {
            "kinds": self._kinds,
            "kind-or-object": self._kind_or_object,
            "wait-targets": self._wait_targets,
            "names": self._names,
            "cells": self._cells,
            "nodes": lambda ctx, param, incomplete: self._scoped("nodes", ctx, param),
            "realms": lambda ctx, param, incomplete: self._scoped("realms", ctx, param),
            "spaces": lambda ctx, param, incomplete: self._scoped("spaces", ctx, param),
            "stacks": lambda ctx, param, incomplete: self._scoped("stacks", ctx, param),
            "containers": self._containers,
            "explain": self._explain,
            "contexts": self._contexts,
            "output-formats": lambda ctx, param, incomplete: list(_OUTPUT_FORMATS),
        }
        if name is None or name not in table:
            return None
        find = table[name]

        def complete(
            ctx: click.Context, param: click.Parameter, incomplete: str
        ) -> list[CompletionItem[str]]:
            try:
                if isinstance(param, click.Option):
                    ctx = self._with_value(ctx, incomplete)
                values = find(ctx, param, incomplete)
            except Exception:  # a TAB never prints a traceback into the shell
                return []
            return [CompletionItem(v) for v in values if v.startswith(incomplete)]

        return complete

    def _with_value(self, ctx: click.Context, incomplete: str) -> click.Context:
        """The context parsed with the option's value given: click parses a command line that
        ends with an option missing its value only up to the error, so the arguments before
        it (the cell of ``logs web -c``) would be missing from ``ctx.params``."""
        if self.root is None or self.words is None:
            return ctx
        from click.shell_completion import _resolve_context

        return _resolve_context(self.root, {}, self.root.name or "", [*self.words, incomplete])

    # -- server lists --

    def _fetch(self, ctx: click.Context, path: str) -> Any:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.timeout
        connection = Connection(ctx.find_root().params, self.default_server)
        return connection.get(path, self.deadline)

    def _scope(self, plural: str, ctx: click.Context) -> list[str]:
        info = self.kinds[plural]
        params = ctx.params
        configured = context_scope(ctx.find_root().params)

        def typed(level: str) -> bool:
            source = ctx.get_parameter_source(level)
            return source is not None and source != click.core.ParameterSource.DEFAULT

        chosen: dict[str, str | None] = {}
        for level in SCOPE_LEVELS:  # as the real options (``params.ScopeOption``)
            if typed(level):
                chosen[level] = str(params.get(level) or "default")
            else:
                chosen[level] = context_default(level, configured, chosen)

        def value(level: str) -> str:
            return chosen[level] or "default"

        def given(level: str) -> bool:
            # the context's realm, space or stack counts as given
            return chosen[level] is not None

        if plural in ("secrets", "cellprofiles"):
            space = value("space") if given("space") else info["placeholder"]
            stack = value("stack") if given("stack") and given("space") else info["placeholder"]
            return [value("realm"), space, stack]
        return [value("realm"), value("space"), value("stack")][: info["parents"]]

    def list_names(self, plural: str, ctx: click.Context) -> list[str]:
        info = self.kinds[plural]
        if ctx.params.get("all_parents"):
            path = info["everywhere"]
        else:
            path = info["collection"]
            for mark, name in zip(_SCOPE_MARKS, self._scope(plural, ctx), strict=False):
                path = path.replace(mark, quote(name, safe=""))
        document = self._fetch(ctx, path)
        names: list[str] = []
        for item in document.get("items") or []:
            found = (item.get("metadata") or {}).get("name")
            if isinstance(found, str) and found not in names:
                names.append(found)
        return sorted(names)

    def _scoped(self, plural: str, ctx: click.Context, param: click.Parameter) -> list[str]:
        typed = ctx.params.get(param.name or "") if isinstance(param, click.Argument) else None
        already = set(typed) if isinstance(typed, tuple | list) else set()
        return [name for name in self.list_names(plural, ctx) if name not in already]

    # -- kinds and names --

    def _kinds(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        return list(self.kinds)

    def _kind_or_object(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[str]:
        if "/" not in incomplete:
            return list(self.kinds)
        kind_text = incomplete.partition("/")[0]
        plural = self.aliases.get(kind_text.lower())
        if plural is None:
            return []
        return [f"{kind_text}/{name}" for name in self.list_names(plural, ctx)]

    def _cells(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        """A cell's name; after ``cell/`` or ``cellset/`` (logs, exec, port-forward...) the
        names of that kind, prefixed."""
        if "/" in incomplete:
            return self._kind_or_object(ctx, param, incomplete)
        return self._scoped("cells", ctx, param)

    def _wait_targets(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[str]:
        if "/" in incomplete:
            return self._kind_or_object(ctx, param, incomplete)
        return [f"cell/{name}" for name in self.list_names("cells", ctx)]

    def _names(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        kind_text = ctx.params.get("kind") or ctx.params.get("kind_or_object")
        if not isinstance(kind_text, str) or "/" in kind_text:
            return []
        plural = self.aliases.get(kind_text.lower())
        if plural is None:
            return []
        return self._scoped(plural, ctx, param)

    def _containers(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        cell = ctx.params.get("name")
        if isinstance(cell, tuple | list):  # [cell] NAME | cell/NAME: the name comes last
            cell = cell[-1].rpartition("/")[2] if cell else None
        if not isinstance(cell, str) or not cell:
            return []
        path = self.kinds["cells"]["object"]
        for mark, name in zip(_SCOPE_MARKS, self._scope("cells", ctx), strict=True):
            path = path.replace(mark, quote(name, safe=""))
        document = self._fetch(ctx, path.replace(_NAME_MARK, quote(cell, safe="")))
        containers = (document.get("spec") or {}).get("containers") or []
        return [c["id"] for c in containers if isinstance(c, dict) and isinstance(c.get("id"), str)]

    def _explain(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        """``cell.spec.con`` -> ``cell.spec.containers`` (and its siblings), from the schema."""
        if "." not in incomplete:
            return list(self.kinds)
        kind_text, *steps = incomplete.split(".")
        plural = self.aliases.get(kind_text.lower())
        if plural is None:
            return []
        fields: Mapping[str, Any] = self.kinds[plural]["fields"]
        for step in steps[:-1]:
            if step not in fields:
                return []
            fields = fields[step]
        prefix = ".".join([kind_text, *steps[:-1]])
        return [f"{prefix}.{name}" for name in fields]

    def _contexts(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        document = read_config(config_file(ctx.find_root().params))
        return [str(c["name"]) for c in contexts_of(document)]


# --- the skeleton ----------------------------------------------------------------------


def _param_type(spec: Mapping[str, Any]) -> click.ParamType[Any]:
    if spec["t"] == "choice":
        return click.Choice(spec["choices"])
    if spec["t"] == "path":
        return click.Path(file_okay=spec["file"], dir_okay=spec["dir"])
    return click.STRING


def _option_decls(spec: Mapping[str, Any]) -> list[str]:
    opts: list[str] = spec["opts"]
    secondary: list[str] = spec["secondary"]
    paired = [f"{opt}/{other}" for opt, other in zip(opts, secondary, strict=False)]
    return [spec["name"], *paired, *opts[len(paired) :]]


def _param(spec: Mapping[str, Any], completers: Completers) -> click.Parameter:
    complete = completers.by_name(spec["completer"])
    kwargs: dict[str, Any] = {
        "nargs": spec["nargs"],
        "required": spec["required"],
        "expose_value": spec["expose"],
        "shell_complete": complete,
    }
    if "default" in spec:
        kwargs["default"] = spec["default"]
    if not spec.get("option"):
        return click.Argument([spec["name"]], type=_param_type(spec["type"]), **kwargs)
    if spec["flag"]:
        kwargs["is_flag"] = True
    else:
        kwargs["type"] = _param_type(spec["type"])
    if spec["count"]:
        kwargs.pop("nargs")
        kwargs["count"] = True
    return click.Option(
        _option_decls(spec),
        multiple=spec["multiple"],
        hidden=spec["hidden"],
        help=spec["help"],
        **kwargs,
    )


def skeleton(node: Mapping[str, Any], completers: Completers, name: str) -> click.Command:
    """The click command of a description: parses like the real one, runs nothing."""
    params = [_param(spec, completers) for spec in node["params"]]
    options: dict[str, Any] = {
        "params": params,
        "context_settings": dict(node["settings"]),
        "short_help": node["help"] or None,
        "hidden": node["hidden"],
    }
    if "commands" not in node:
        return click.Command(name, **options)
    group = click.Group(name, invoke_without_command=node["invokeWithoutCommand"], **options)
    for sub_name, sub in node["commands"].items():
        group.add_command(skeleton(sub, completers, sub_name))
    return group


def complete(instruction: str, *, prog_name: str = "kukectl") -> int:
    """Answer one completion request (``bash_complete``, ``zsh_source``, ...) on stdout."""
    try:
        timeout = float(os.environ.get(TIMEOUT_VAR) or DEFAULT_TIMEOUT)
    except ValueError:
        timeout = DEFAULT_TIMEOUT
    description = load_description()
    completers = Completers(description, timeout)
    root = skeleton(description["tree"], completers, prog_name)
    completion_class = get_completion_class(instruction.partition("_")[0])
    if completion_class is not None and instruction.endswith("_complete"):
        completers.root = root
        completers.words, _ = completion_class(
            root, {}, prog_name, COMPLETE_VAR
        ).get_completion_args()
    return shell_complete(root, {}, prog_name, COMPLETE_VAR, instruction)


def run_from_environment() -> int:
    """The entry point's completion path: the answer on stdout, and the exit code."""
    try:
        return complete(os.environ.get(COMPLETE_VAR, ""))
    except Exception:  # never a traceback into the shell
        return 1


if __name__ == "__main__":
    if sys.argv[1:] != ["prebuild"]:
        sys.exit("usage: python -m kukeon.cli.completion prebuild")
    print(f"wrote {prebuild()}")
