"""runc's ProcessDetails (what ListPids says of each process) read without its stubs: the
exec id that tells a session's process from the container's own ones."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from kukeon.runtime.containerd.tasks import process_details_exec_id


def _process_details(exec_id: str) -> bytes:
    """The message as runc's shim writes it (containerd/runc/options/oci.proto), built from
    a descriptor, not by hand."""
    file = descriptor_pb2.FileDescriptorProto(name="h148_runc.proto", package="containerd.runc.v1")
    message = file.message_type.add(name="ProcessDetails")
    message.field.add(
        name="exec_id",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    cls = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("containerd.runc.v1.ProcessDetails")
    )
    return bytes(cls(exec_id=exec_id).SerializeToString())


@pytest.mark.parametrize("exec_id", ["exec-0123456789ab", "probe-1", "x" * 300, "é"])
def test_the_exec_id_is_read(exec_id: str) -> None:
    assert process_details_exec_id(_process_details(exec_id)) == exec_id


def test_no_details_is_no_exec_id() -> None:
    assert process_details_exec_id(b"") == ""


def test_fields_of_a_later_runc_are_skipped() -> None:
    # field 2 varint 150, field 3 fixed64, field 4 bytes, field 5 fixed32, then exec_id
    extra = b"\x10\x96\x01" + b"\x19" + bytes(8) + b"\x22\x02ab" + b"\x2d" + bytes(4)
    assert process_details_exec_id(extra + _process_details("cp-1")) == "cp-1"


@pytest.mark.parametrize("broken", [b"\x0a\x05ab", b"\x0a", b"\x08\x80", b"\x0b"])
def test_a_broken_message_is_an_error(broken: bytes) -> None:
    with pytest.raises(ValueError, match="ProcessDetails"):
        process_details_exec_id(broken)
