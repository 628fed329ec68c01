"""A Secret whose value holds a NUL byte, given to a container as a variable: the value is
never said, in the cell's status, its Events or kukeond's log.

No environment variable can hold a NUL (execve takes C strings): runc refused the create
with 'environment variable value can't contain null(\\x00): "NAME=<the value>"', and that
text, the secret whole, became the cell's status message (which the realm's viewers read)
and an ERROR line of kukeond's at every retry. Now the node refuses it as
SecretUnavailable naming the container and the variable, not the value; as a file
(mountPath) the same value reaches the container intact.
"""

from __future__ import annotations

import base64
import logging
import secrets

import pytest

from kukeon.api import AnyResource, Cell, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in
from .test_secrets import _everything_in_etcd

pytestmark = pytest.mark.integration


async def test_a_secret_with_a_nul_byte_is_not_said_as_a_variable(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kukeon")
    k = kukeond
    marker = f"nul-secret-{secrets.token_hex(8)}"
    value = marker.encode() + b"\0tail"
    await k.hierarchy()
    await k.apply(
        {
            "kind": "Secret",
            "metadata": {"name": "binary", "realm": k.realm},
            "data": {"v": base64.b64encode(value).decode()},
        }
    )
    ref = {"name": "binary", "key": "v"}
    as_env = [{"name": "LEAK", "secretRef": ref}]
    await k.apply(cell_doc(k, "env", [container(k, "app", secrets=as_env)]))

    def refused(cell: AnyResource) -> bool:
        return isinstance(cell, Cell) and cell.status.reason == "SecretUnavailable"

    failed = await k.wait_for(Kind.CELL, cell_key(k, "env"), until=refused, within=30)
    message = failed.status.message or ""
    assert "'LEAK'" in message, message
    assert "NUL byte" in message, message

    as_file = [{"name": "blob", "secretRef": ref, "mountPath": "/run/secrets/blob"}]
    await k.apply(cell_doc(k, "file", [container(k, "app", secrets=as_file)]))
    await k.wait_for(Kind.CELL, cell_key(k, "file"), state="Ready", within=30)
    code, mounted = await exec_in(k, "s1_st1_file_app", "od", "-An", "-c", "/run/secrets/blob")
    assert code == 0, mounted
    assert "\\0   t   a   i   l" in mounted, mounted

    assert marker.encode() not in await _everything_in_etcd(k)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert marker not in logged
