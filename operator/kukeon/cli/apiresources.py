"""`kukectl api-resources`: the kinds kukectl knows, their short names and where they live,
as kubectl's (from the client's own table: no server, as `explain`)."""

from __future__ import annotations

import click

from kukeon.api.names import GROUP, VERSION
from kukeon.client.paths import KINDS

from .runner import print_text
from .tables import format_rows

API_VERSION = f"{GROUP}/{VERSION}"


def resource_rows() -> list[list[str]]:
    """NAME, SHORTNAMES, APIVERSION, PARENTS, KIND of every kind, by name."""
    rows = []
    for info in sorted(KINDS.values(), key=lambda i: i.plural):
        singular = info.kind.value.lower()
        short = [a for a in info.aliases if a not in (info.plural, singular)]
        parents = ",".join(KINDS[p].kind.value.lower() for p in info.parents) or "<none>"
        rows.append([info.plural, ",".join(short), API_VERSION, parents, info.kind.value])
    return rows


@click.command("api-resources")
@click.option("--no-headers", is_flag=True, help="Leave out the header line.")
@click.option("-o", "--output", type=click.Choice(["table", "name"]), default="table")
def api_resources(no_headers: bool, output: str) -> None:
    """List the kinds: name, short names, API version, the parents a name lives under, kind.

    \b
    Examples:
      kukectl api-resources
      kukectl api-resources -o name
    """
    rows = resource_rows()
    if output == "name":
        print_text("\n".join(row[0] for row in rows))
        return
    header = [] if no_headers else [["NAME", "SHORTNAMES", "APIVERSION", "PARENTS", "KIND"]]
    print_text("\n".join(format_rows(header + rows)))
