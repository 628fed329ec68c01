"""``kukectl port-forward``'s ``[LOCAL:]REMOTE``: a side that is no port number is a usage
error (exit 2) naming the argument and which side is wrong, as kubectl's "error parsing
remote port 'nan'"; a lone port is both sides and named remote, as kubectl checks it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from kukeon.cli.portforward import PortPair, parse_ports

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("nan:80", "'nan:80': the local port 'nan' is not a port number, 0-65535"),
        ("80:nan", "'80:nan': the remote port 'nan' is not a port number, 1-65535"),
        ("inf", "'inf': the remote port 'inf' is not a port number, 1-65535"),
        ("-1", "'-1': the remote port '-1' is not a port number"),
        ("99999", "'99999': the remote port '99999' is not a port number"),
        ("8080:99999", "'8080:99999': the remote port '99999'"),
        ("99999:80", "'99999:80': the local port '99999'"),
        ("80.0", "'80.0': the remote port '80.0'"),
        ("0", "'0': the remote port '0' is not a port number, 1-65535"),
        ("\u00b2", "the remote port '\u00b2'"),
        ("80:", "'80:': expected [LOCAL:]REMOTE"),
        ("1:2:3", "'1:2:3': expected [LOCAL:]REMOTE"),
    ],
)
def test_a_wrong_port_names_the_argument_and_its_side(spec: str, said: str) -> None:
    result = CliRunner().invoke(cli, [*NO_SERVER, "port-forward", "web", "--", spec])
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert "unexpected failure" not in result.output


def test_ports_as_kubectl_reads_them() -> None:
    assert parse_ports(("8080:80", "80", ":443", "0:22")) == [
        PortPair(8080, 80),
        PortPair(80, 80),
        PortPair(0, 443),
        PortPair(0, 22),
    ]
