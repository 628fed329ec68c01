"""Attachment records: what each attachment of a cell was made with, kept on disk.

An attachment is made by the CNI plugins (driver ``cni``) or by kukeond itself over netlink
(driver ``netlink``, ``inprocess``: the record has the same shape, its result written as
the bridge plugin's would be); a record without a driver is from before there were two.

CNI requires a network's exact configuration and its ADD result for CHECK and DEL, and
both must survive a daemon restart (a restart keeps every address). A cell has one record
per interface: its first one (``eth0``, the space's network or the root container's own
``cniConfigPath``) at ``<dir>/<cell id>.json``, as always; each further one (``eth1``...,
the spaces its containers' ``networks`` join) at ``<dir>/<cell id>.d/<ifname>.json``. The
orphan collector lists ``<dir>/*.json`` as the cells with an attachment, so the further
records, one directory down, never count as cells of their own.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from kukeon.runtime.network._files import read_text_or_none, unlink_if_present, write_atomically
from kukeon.runtime.network.bridge import is_valid_ifname
from kukeon.runtime.network.cni.config import NetworkConfigList, parse_conflist
from kukeon.runtime.network.cni.invoke import RuntimeConf
from kukeon.runtime.network.cni.result import CniResult, parse_result
from kukeon.runtime.network.errors import CniConfigError, NetworkError

RECORD_VERSION = 1
PRIMARY_IFNAME = "eth0"
DRIVER_CNI = "cni"
DRIVER_NETLINK = "netlink"


@dataclass(frozen=True)
class AttachmentRecord:
    """One interface of a cell: the conflist and runtime configuration of its ADD, its result."""

    conflist: NetworkConfigList
    conf: RuntimeConf
    result: CniResult
    driver: str = DRIVER_CNI
    """``cni`` (made by the plugins: CHECK and DEL through them) or ``netlink`` (made by
    kukeond itself, ``inprocess``); records written before the field existed are CNI's."""


class AttachmentRecords:
    """The records of every attachment of this node's cells, under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, cell_id: str, ifname: str = PRIMARY_IFNAME) -> Path:
        RuntimeConf(container_id=cell_id, netns=Path("/"))  # validates the id as a file name
        if ifname == PRIMARY_IFNAME:
            return self.directory / f"{cell_id}.json"
        if not is_valid_ifname(ifname):
            raise NetworkError(f"{ifname!r} is not a valid interface name")
        return self._extra_dir(cell_id) / f"{ifname}.json"

    def _extra_dir(self, cell_id: str) -> Path:
        return self.directory / f"{cell_id}.d"

    async def save(self, record: AttachmentRecord) -> None:
        conf = record.conf
        document = {
            "version": RECORD_VERSION,
            "driver": record.driver,
            "conflist": json.loads(record.conflist.to_json()),
            "netns": str(conf.netns),
            "ifname": conf.ifname,
            "args": dict(conf.args),
            "capabilityArgs": dict(conf.capability_args),
            "result": dict(record.result.raw),
        }
        path = self.path(conf.container_id, conf.ifname)
        await asyncio.to_thread(write_atomically, path, json.dumps(document, indent=2), mode=0o600)

    async def load(self, cell_id: str, ifname: str = PRIMARY_IFNAME) -> AttachmentRecord | None:
        path = self.path(cell_id, ifname)
        text = await asyncio.to_thread(read_text_or_none, path)
        if text is None:
            return None
        try:
            document = json.loads(text)
            conflist = parse_conflist(json.dumps(document["conflist"]), source=str(path))
            conf = RuntimeConf(
                container_id=cell_id,
                netns=Path(document["netns"]),
                ifname=str(document["ifname"]),
                args={str(k): str(v) for k, v in document.get("args", {}).items()},
                capability_args=dict(document.get("capabilityArgs", {})),
            )
            result = parse_result(document["result"], plugin=str(path))
            driver = str(document.get("driver", DRIVER_CNI))
        except (ValueError, KeyError, TypeError, CniConfigError) as error:
            raise NetworkError(f"attachment record {path} is unreadable: {error}") from error
        return AttachmentRecord(conflist=conflist, conf=conf, result=result, driver=driver)

    async def drop(self, cell_id: str, ifname: str = PRIMARY_IFNAME) -> None:
        await asyncio.to_thread(unlink_if_present, self.path(cell_id, ifname))
        await asyncio.to_thread(_remove_empty_dir, self._extra_dir(cell_id))

    async def extra_ifnames(self, cell_id: str) -> list[str]:
        """The interfaces beyond the first that the cell has a record of, sorted."""
        directory = self._extra_dir(cell_id)

        def names() -> list[str]:
            if not directory.is_dir():
                return []
            return sorted(p.stem for p in directory.glob("*.json") if is_valid_ifname(p.stem))

        return await asyncio.to_thread(names)

    async def attached(self) -> list[tuple[str, str]]:
        """(cell id, ifname) of every attachment recorded here, from the records' names."""

        def names() -> list[tuple[str, str]]:
            if not self.directory.is_dir():
                return []
            first = [(path.stem, PRIMARY_IFNAME) for path in self.directory.glob("*.json")]
            further = [
                (path.parent.name.removesuffix(".d"), path.stem)
                for path in self.directory.glob("*.d/*.json")
            ]
            return sorted(first + further)

        return await asyncio.to_thread(names)

    async def joined(self, network: str) -> list[tuple[str, str]]:
        """(cell id, ifname) of every further attachment to the CNI network ``network``."""
        return await asyncio.to_thread(self._scan, network, first=False)

    async def on_network(self, network: str) -> list[tuple[str, str]]:
        """(cell id, ifname) of every attachment, first or further, to ``network``."""
        return await asyncio.to_thread(self._scan, network, first=True)

    def _scan(self, network: str, *, first: bool) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if not self.directory.is_dir():
            return found
        paths = sorted(self.directory.glob("*.d/*.json"))
        if first:
            paths = sorted(self.directory.glob("*.json")) + paths
        for path in paths:
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
                name = document["conflist"]["name"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if name != network:
                continue
            if path.parent == self.directory:
                found.append((path.stem, PRIMARY_IFNAME))
            else:
                found.append((path.parent.name.removesuffix(".d"), path.stem))
        return found


def _remove_empty_dir(path: Path) -> None:
    """The directory of a cell's further records, once they are all gone."""
    if path.is_dir() and not any(path.iterdir()):
        shutil.rmtree(path, ignore_errors=True)
