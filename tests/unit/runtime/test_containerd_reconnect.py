"""ContainerdClient against an in-process gRPC server: headers, retries and re-dialling."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from kukeon.runtime.containerd import ContainerdClient, NamespaceNotFoundError
from kukeon.runtime.containerd._gen.services.namespaces.v1 import (
    namespace_pb2,
    namespace_pb2_grpc,
)
from kukeon.runtime.containerd._gen.services.version.v1 import version_pb2, version_pb2_grpc


class _Version(version_pb2_grpc.VersionServicer):
    def __init__(self) -> None:
        self.namespaces: list[str] = []

    async def Version(  # noqa: N802 - the gRPC method name
        self,
        request: empty_pb2.Empty,
        context: grpc.aio.ServicerContext[empty_pb2.Empty, version_pb2.VersionResponse],
    ) -> version_pb2.VersionResponse:
        metadata = dict(context.invocation_metadata() or ())
        self.namespaces.append(str(metadata.get("containerd-namespace")))
        return version_pb2.VersionResponse(version="test", revision="r")


class _Namespaces(namespace_pb2_grpc.NamespacesServicer):
    async def Get(  # noqa: N802 - the gRPC method name
        self,
        request: namespace_pb2.GetNamespaceRequest,
        context: grpc.aio.ServicerContext[
            namespace_pb2.GetNamespaceRequest, namespace_pb2.GetNamespaceResponse
        ],
    ) -> namespace_pb2.GetNamespaceResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"namespace {request.name}: not found")
        raise AssertionError("unreachable")


async def _serve(socket: Path, servicer: _Version) -> grpc.aio.Server:
    server = grpc.aio.server()
    version_pb2_grpc.add_VersionServicer_to_server(servicer, server)
    # The generated stub marks every RPC of NamespacesServicer abstract; at runtime the base
    # class answers UNIMPLEMENTED for those a servicer does not define (all but Get here).
    namespaces = _Namespaces()  # type: ignore[abstract]
    namespace_pb2_grpc.add_NamespacesServicer_to_server(namespaces, server)
    server.add_insecure_port(f"unix://{socket}")
    await server.start()
    return server


async def test_every_call_names_a_namespace(tmp_path: Path) -> None:
    servicer = _Version()
    server = await _serve(tmp_path / "c.sock", servicer)
    try:
        async with ContainerdClient(str(tmp_path / "c.sock")) as client:
            assert (await client.version()).version == "test"
    finally:
        await server.stop(None)
    assert servicer.namespaces == ["default"]


async def test_not_found_becomes_a_typed_error(tmp_path: Path) -> None:
    server = await _serve(tmp_path / "c.sock", _Version())
    try:
        async with ContainerdClient(str(tmp_path / "c.sock")) as client:
            with pytest.raises(
                NamespaceNotFoundError, match=re.escape("'gone.kukeon.io' not found")
            ):
                await client.namespaces.get("gone.kukeon.io")
    finally:
        await server.stop(None)


async def test_calls_wait_for_a_restarted_daemon_and_redial(tmp_path: Path) -> None:
    socket = tmp_path / "c.sock"
    servicer = _Version()
    server = await _serve(socket, servicer)
    async with ContainerdClient(str(socket), retry_timeout=20.0) as client:
        await client.version()
        first_generation = client.generation
        await server.stop(None)

        async def restart_later() -> grpc.aio.Server:
            await asyncio.sleep(1.0)
            return await _serve(socket, servicer)

        restarting = asyncio.ensure_future(restart_later())
        try:
            assert (await client.version()).version == "test"
            assert client.generation > first_generation  # the channel was re-dialled
        finally:
            await (await restarting).stop(None)
