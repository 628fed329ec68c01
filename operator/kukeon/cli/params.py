"""The parameters kukectl's commands share: kinds, durations, the scope of an object, the
``--dry-run`` choice and manifests given with ``-f``."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import click
from click.shell_completion import CompletionItem

from kukeon.api.names import SCOPE_PLACEHOLDER, SCOPED_KINDS, Kind
from kukeon.api.signals import parse_signal
from kukeon.client.paths import KINDS, kind_for_alias

from .runner import EXIT_USAGE, ManifestProblems, error_line, fail

if TYPE_CHECKING:
    from .manifests import Document


_KUBECTL_KINDS = {
    **dict.fromkeys(("pod", "pods", "po"), "cells"),
    **dict.fromkeys(("deployment", "deployments", "deploy", "replicaset", "rs"), "cellsets"),
    **dict.fromkeys(("namespace", "namespaces", "ns"), "realms (then spaces and stacks)"),
}
"""Kinds a kubectl user types by habit, and kukeon's kind for them."""


def kubectl_kind(text: str) -> str | None:
    """kukeon's kind for a kind kubectl users type (``pods``: ``cells``), or None."""
    return _KUBECTL_KINDS.get(text.lower())


def kubectl_hint(text: str, before: str = " (", after: str = ")") -> str:
    """`` (for kubectl's 'pods': cells)`` when ``text`` is a kind kubectl users type."""
    ours = kubectl_kind(text)
    return f"{before}for kubectl's {text!r}: {ours}{after}" if ours else ""


def unknown_kind(text: str) -> str:
    """The error for a kind no alias names, in kubectl's words ("the server doesn't have a
    resource type"); kubectl's own names point to kukeon's, a typo to the kind it is
    closest to."""
    import difflib

    names = ", ".join(info.plural for info in KINDS.values())
    hint = kubectl_hint(text)
    if not hint:
        aliases = {alias: kind for alias in _ALIASES if (kind := kind_for_alias(alias))}
        close = difflib.get_close_matches(text.lower(), aliases, n=1, cutoff=0.6)
        hint = f" (did you mean {KINDS[aliases[close[0]]].plural}?)" if close else ""
    return (
        f"the server doesn't have a resource type {json.dumps(text)}: "
        f"unknown kind {text!r}{hint}; expected one of {names}"
    )


_ALIASES = tuple(
    alias for info in KINDS.values() for alias in (info.plural, info.kind.value, *info.aliases)
)
"""Every name of a kind, for the nearest one to a typo."""


class KindType(click.ParamType[Kind]):
    """A kind name or alias: ``cells``, ``cell``, ``ce``, ``Cell``."""

    name = "kind"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Kind:
        if isinstance(value, Kind):
            return value
        kind = kind_for_alias(str(value))
        if kind is None:
            self.fail(unknown_kind(str(value)), param, ctx)
        return kind

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return [
            CompletionItem(info.plural)
            for info in KINDS.values()
            if info.plural.startswith(incomplete)
        ]


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """``60s``, ``1m30s``, ``500ms``, ``2h`` or a plain number of seconds: finite, >= 0."""
    total = _duration_seconds(text)
    # float() reads "nan", "inf", "-5" and "1e400" (inf): none is a length of time.
    if not math.isfinite(total) or total < 0:
        raise ValueError(f"invalid duration {text!r}: a length of time is finite and >= 0")
    return total


def _duration_seconds(text: str) -> float:
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    position, total = 0, 0.0
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * scale[match.group(2)]
        position = match.end()
    if position != len(value) or not value:
        raise ValueError(f"invalid duration {text!r} (examples: 30s, 1m30s, 500ms, 2h)")
    return total


class DurationType(click.ParamType[float]):
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float | int):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class IntegerRange(click.IntRange):
    """click's ``IntRange`` that says what it wants: an integer (``--replicas abc`` was
    "'abc' is not a valid integer range", as if a range were asked for); its help shows
    ``INTEGER`` and the bounds, as ``[x>=0]``."""

    name = "integer"


class FiniteFloatRange(click.FloatRange):
    """click's ``FloatRange`` without ``nan``: every comparison with nan is false, so
    click's bounds let it through (``--cpus nan`` then failed converting it to an int).
    A value that is no number is "not a valid float", not "not a valid float range"."""

    name = "float"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


class KindOrObjectType(click.ParamType[tuple[Kind, str | None]]):
    """``KIND`` or kubectl's ``KIND/NAME`` (``delete cell/web``, ``label cell/web a=b``): the
    kind and the name given with it, if any."""

    name = "kind"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[Kind, str | None]:
        if isinstance(value, tuple):
            return value  # already converted (a default)
        kind_text, slash, name = str(value).partition("/")
        if slash and not name:
            self.fail(f"{value!r}: KIND/NAME needs the name after '/'", param, ctx)
        return KIND.convert(kind_text, param, ctx), (name if slash else None)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return KIND.shell_complete(ctx, param, incomplete)


def with_names(kind: tuple[Kind, str | None], names: Sequence[str]) -> tuple[Kind, list[str]]:
    """The kind and every name: the one of ``KIND/NAME`` first, then ``names`` (after a
    ``KIND/NAME`` each is ``KIND/NAME`` too, of the same kind: one command, one kind)."""
    kind_, first = kind
    if first is None:
        return kind_, [nonempty_name(name) for name in names]
    every = [first]
    for word in names:
        groups = kind_name_groups(word, []) if "/" in word else []
        if not groups or groups[0][0] != kind_:
            fail(f"{word!r}: after KIND/NAME give KIND/NAME of the same kind", EXIT_USAGE)
        every += groups[0][1]
    return kind_, every


def one_object(kind: tuple[Kind, str | None], name: str | None) -> tuple[Kind, str]:
    """``KIND NAME`` or ``KIND/NAME``, exactly one object (exit 2 otherwise)."""
    kind_, names = with_names(kind, [name] if name is not None else [])
    if len(names) != 1:
        fail("give KIND NAME or KIND/NAME: one object", EXIT_USAGE)
    return kind_, names[0]


class NameType(click.ParamType[str]):
    """The name of a container (``-c``), a node (``--node``), a realm, space or stack, or
    kukectl's ``--context``: an empty one is refused (exit 2, naming the option), not read
    as "not given", which acts on the default container or node, or on every container
    (``kill -c ''``), or takes ``KUKEON_CONTEXT``'s or the current context, nor sent, a path
    the server does not have (``realms//cells``)."""

    def __init__(self, what: str) -> None:
        self.name = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text.strip():
            self.fail(f"an empty {self.name} name; give one, or leave the option out", param, ctx)
        return text


class NonEmptyType(click.ParamType[str]):
    """An argument naming something (an image reference) or kukectl's ``--server`` and
    ``--token``: an empty one is refused (exit 2), not sent, a path the server does not have
    (``images/``, "no such API path"), nor replaced by the environment's or the context's."""

    def __init__(self, what: str) -> None:
        self.name = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text:
            self.fail(f"an empty {self.name}; give one", param, ctx)
        return text


class SignalType(click.ParamType[str]):
    """A signal as kukeond reads one (``TERM``, ``SIGKILL``, ``hup``, ``9``): what names no
    signal (``-s ''``, ``-s 0``, ``-s -9``) is a usage error (exit 2), not a request the
    server refuses (exit 1)."""

    name = "signal"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if parse_signal(text) is None:  # docker's names: RTMIN+3 (systemd's) too
            self.fail(
                f"{value!r} is no signal: give a name (TERM, SIGKILL, hup, RTMIN+3...) or a number",
                param,
                ctx,
            )
        return text


def nonempty_name(name: str) -> str:
    """``name``, exit 2 when it is empty: ``kill ''`` or ``get cell ''`` named no object, and
    asked for a path the server does not have (``wait realm '' --for=delete`` was met)."""
    if not name:
        fail("an empty name: give the object's name", EXIT_USAGE)
    return name


class ContainerNamesType(click.ParamType[tuple[str, ...]]):
    """Comma-separated container names, or ``*`` (``set env -c``); an empty one is refused:
    ``-c ''`` would otherwise choose none and change nothing, saying "unchanged"."""

    name = "containers"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value  # already converted
        names = tuple(str(value).split(","))
        if not all(name.strip() for name in names):
            self.fail(
                f"{str(value)!r}: an empty container name; give C1,C2 or * for every one",
                param,
                ctx,
            )
        return names


KIND = KindType()
KIND_OR_OBJECT = KindOrObjectType()
DURATION = DurationType()
CONTAINER = NameType("container")
NODE = NameType("node")
CONTAINERS = ContainerNamesType()
IMAGE_REFERENCE = NonEmptyType("image reference")
# kukectl's own --context, --server and --token (``main``).
CONTEXT = NameType("context")
SERVER = NonEmptyType("server address")
TOKEN = NonEmptyType("token")
SIGNAL = SignalType()


class ScopeOption(click.Option):
    """``--realm``, ``--space`` or ``--stack``: when not typed, the chosen context's value
    (``kukectl config set-context --realm``, kubectl's context namespace) before the
    option's own default. A value from the context is reported as ``DEFAULT_MAP``: it
    counts as given where "not given" means "none" (a Secret's space), yet a manifest's
    own parents win over it (``manifest_scope``)."""

    def consume_value(
        self, ctx: click.Context, opts: Mapping[str, Any]
    ) -> tuple[Any, click.core.ParameterSource]:
        value, source = super().consume_value(ctx, opts)
        if source != click.core.ParameterSource.DEFAULT or self.name is None:
            return value, source
        from .configdoc import context_default, context_scope

        # Typed options are processed first, so the levels above are known here.
        configured = context_default(self.name, context_scope(ctx.find_root().params), ctx.params)
        if configured is None:
            return value, source
        return configured, click.core.ParameterSource.DEFAULT_MAP


def scope_option(
    level: str, help_text: str, *, default: str | None = "default"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One scope option, ``level`` being realm, space or stack (see ``ScopeOption``)."""
    shown = "the context's, else default" if default is not None else False
    return click.option(
        f"--{level}",
        cls=ScopeOption,
        type=NameType(level),
        default=default,
        show_default=shown,
        help=help_text,
    )


def scope_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for level in reversed(("realm", "space", "stack")):
        func = scope_option(level, f"{level.capitalize()} of the objects.")(func)
    return func


def scope_for(kind: Kind, realm: str, space: str, stack: str) -> tuple[str, ...]:
    if kind in SCOPED_KINDS:
        # A Secret (a CellProfile) belongs to its realm unless --space (and --stack) narrow
        # it: here the options' "default" defaults mean "none" ("-" in its key).
        ctx = click.get_current_context(silent=True)

        def given(name: str) -> bool:
            if ctx is None:
                return True
            return ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT

        space_part = space if given("space") else SCOPE_PLACEHOLDER
        stack_part = stack if given("stack") else SCOPE_PLACEHOLDER
        if space_part == SCOPE_PLACEHOLDER:
            stack_part = SCOPE_PLACEHOLDER
        return (realm, space_part, stack_part)
    return (realm, space, stack)[: len(KINDS[kind].parents)]


def dry_run_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--dry-run",
        type=click.Choice(["none", "server", "client"]),
        default="none",
        show_default=True,
        help="server: the server validates without writing; client: validate locally only.",
    )(func)


FILE_OPTION = click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    # Not empty: `-f ''` read the current directory's every file as manifests.
    type=NonEmptyType("file name"),
    help="Manifest file, directory of manifests, or - for stdin (repeatable).",
)


def manifest_scope_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--realm/--space/--stack`` of a command reading manifests: the parents of the
    documents that name none (kubectl's ``-n``), unset by default."""
    for level in reversed(("realm", "space", "stack")):
        func = scope_option(
            level,
            f"The {level} of documents that name none; a document naming another is an "
            f"error (kubectl's -n). Unset: the context's {level}, for documents that name none.",
            default=None,
        )(func)
    return func


class ManifestScope(NamedTuple):
    """The parents a manifest command gives the documents that name none."""

    given: dict[str, str]
    """Typed on the command line: a document naming another parent is an error."""
    configured: dict[str, str]
    """The context's: only for documents naming none, as kubectl's context namespace."""


def manifest_scope(
    ctx: click.Context, realm: str | None, space: str | None, stack: str | None
) -> ManifestScope:
    """The scope options by level, split by where they came from (``ManifestScope``)."""
    values = {"realm": realm, "space": space, "stack": stack}
    given: dict[str, str] = {}
    configured: dict[str, str] = {}
    for level, value in values.items():
        source = ctx.get_parameter_source(level)
        if value is None or source == click.core.ParameterSource.DEFAULT:
            continue
        if source == click.core.ParameterSource.DEFAULT_MAP:
            configured[level] = value
        else:
            given[level] = value
    return ManifestScope(given, configured)


VALIDATE_LEVELS = {
    "strict": "Strict",
    "true": "Strict",
    "warn": "Warn",
    "ignore": "Ignore",
    "false": "Ignore",
}
"""kubectl's ``--validate`` words and the server's ``fieldValidation`` each means."""


def validate_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """kubectl's ``--validate``: what is done with fields no model knows."""
    return click.option(
        "--validate",
        type=click.Choice(list(VALIDATE_LEVELS), case_sensitive=False),
        default="strict",
        show_default=True,
        is_flag=False,
        flag_value="strict",
        help="Unknown fields: strict (or true) refuses them; warn leaves them out and says "
        "so on stderr; ignore (or false) leaves them out silently. The server is asked the "
        "same (fieldValidation), for the fields it does not know.",
    )(func)


def field_validation(validate: str) -> str | None:
    """The ``fieldValidation`` to send for ``--validate`` (None: the server's default, Strict)."""
    level = VALIDATE_LEVELS[validate.lower()]
    return None if level == "Strict" else level


RECURSIVE_OPTION = click.option(
    "-R",
    "--recursive",
    is_flag=True,
    help="Read the manifests of -f's directories and of every directory below them.",
)


def load_manifest_files(
    files: Sequence[str],
    *,
    scope: ManifestScope | None = None,
    validate: str = "strict",
    recursive: bool = False,
) -> list[Document]:
    """The documents of ``-f`` sources, every one validated (exit 2 naming each problem);
    ``scope``: parents of the documents that name none (``manifest_scope_options``);
    ``validate``: ``--validate`` (warn, ignore: unknown fields left out, warn saying which);
    ``recursive``: ``-R``, directories below a directory's too."""
    if not files:
        fail("-f/--filename is required (a file, a directory or - for stdin)", EXIT_USAGE)
    from kukeon.client.apiclient import print_warning

    from .manifests import load_documents, read_sources

    level = field_validation(validate)
    dropped: list[str] | None = [] if level is not None else None
    try:
        given, configured = scope if scope is not None else ({}, {})
        documents = load_documents(
            read_sources(files, recursive=recursive),
            scope=given,
            defaults=configured,
            dropped=dropped,
        )
    except ManifestProblems as exc:
        for line in exc.lines:
            error_line(line)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read manifests: {exc}", EXIT_USAGE)
    if level == "Warn":
        for line in dropped or ():
            print_warning(line)
    return documents


def cell_key(realm: str, space: str, stack: str, name: str) -> tuple[str, str, str, str]:
    """The key of cell ``name`` in the stack the scope options name."""
    return (realm, space, stack, name)


def kind_name_groups(first: str, rest: Sequence[str]) -> list[tuple[Kind, list[str]]]:
    """`KIND NAME...` or `KIND/NAME...` as (kind, names) groups in the order given (exit 2
    for an unknown kind or a mix of the two forms)."""
    if "/" not in first:
        return [(_kind_named(first), [nonempty_name(name) for name in rest])]
    groups: list[tuple[Kind, list[str]]] = []
    for word in (first, *rest):
        kind_text, sep, name = word.partition("/")
        if not sep or not name:
            fail(f"{word!r}: with KIND/NAME every argument is KIND/NAME", EXIT_USAGE)
        kind = _kind_named(kind_text)
        if groups and groups[-1][0] == kind:
            groups[-1][1].append(name)
        else:
            groups.append((kind, [name]))
    return groups


def _kind_named(text: str) -> Kind:
    kind = kind_for_alias(text)
    if kind is None:
        fail(unknown_kind(text), EXIT_USAGE)  # not click's "Invalid value: " before it
    return kind


CELL_FORMS = "NAME, cell NAME or cell/NAME"
"""How the commands that act on one cell accept it, as kubectl and docker users type it."""


def cell_argument(func: Callable[..., Any]) -> Callable[..., Any]:
    """The cell a command acts on, in any of the `CELL_FORMS` (see :func:`cell_named`)."""
    return click.argument("name", nargs=-1, required=True, metavar="[cell] NAME|cell/NAME")(func)


def cell_named(words: Sequence[str]) -> str:
    """The name of the cell `words` name: ``NAME``, ``cell NAME`` or ``cell/NAME`` (any
    alias of the kind: ``cells``, ``ce``...); exit 2 for another kind or shape."""
    return _one_named(words, (Kind.CELL,))[1]


SET_CELL_FORMS = f"{CELL_FORMS}, or cellset/NAME (one of its cells)"


def cell_or_set_named(words: Sequence[str]) -> tuple[Kind, str]:
    """``cell_named``, or a CellSet (``cellset/NAME``, ``cellset NAME``) for the commands
    that act on one of its cells, as kubectl's ``logs deploy/web`` and ``exec deploy/web``."""
    return _one_named(words, (Kind.CELL, Kind.CELL_SET))


def _one_named(words: Sequence[str], kinds: Sequence[Kind]) -> tuple[Kind, str]:
    if len(words) == 1 and "/" not in words[0]:
        return Kind.CELL, nonempty_name(words[0])
    forms = SET_CELL_FORMS if Kind.CELL_SET in kinds else CELL_FORMS
    what = "cells or cell sets" if Kind.CELL_SET in kinds else "cells only; kind: cell or cells"
    usage = f"expected {forms} (this command acts on {what})"
    if len(words) not in (1, 2):
        fail(f"{' '.join(words)!r}: {usage}", EXIT_USAGE)
    if "/" not in words[0] and kind_for_alias(words[0]) is None:
        fail(f"{words[0]!r} is not a kind{kubectl_hint(words[0])}: {usage}", EXIT_USAGE)
    groups = kind_name_groups(words[0], words[1:])
    kind, names = groups[0]
    if kind not in kinds:
        fail(f"{KINDS[kind].plural} are not accepted: {usage}", EXIT_USAGE)
    if len(groups) != 1 or len(names) != 1:
        fail(f"{' '.join(words)!r}: {usage}", EXIT_USAGE)
    return kind, names[0]
