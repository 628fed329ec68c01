"""The registry: every resource is one JSON document in etcd, written only by compare-and-swap.

Why each rule is the way it is:

- ``resourceVersion`` is the key's etcd ``mod_revision``, never stored in the document:
  it cannot be stale and costs nothing to keep right.
- create is ``if create_revision(key) == 0``; a child create also compares its parent's
  ``mod_revision`` with the last one it saw alive and not being deleted (on a miss the
  transaction's failure branch reads the parent and the create tries again). Marking a
  parent for deletion bumps that revision, so a child can never slip in under a dying one.
- a parent is removed by a transaction that also compares every child range as empty
  (``create_revision(range) == 0``), so the two races (child create, parent delete) are
  both decided inside etcd, and no orphan can exist.
- update and update_status compare the caller's ``resourceVersion``; a lost compare is
  ``Conflict`` (never retried here: the caller must re-read and re-decide). update takes
  spec and metadata and keeps the stored status; update_status takes status only. The
  stored bytes they merge with come from a small cache keyed by exact revision when the
  registry has seen that revision (bytes at a revision never change), else from a read.
- every write is validated with ``kukeon.api.parse_resource`` first and refused over
  1 MiB before anything is sent.
- list reads every page at the revision of the first page: one consistent snapshot.
- watch resumes from the last delivered revision after any stream failure (member killed,
  leader lost) and turns compaction into ``Gone`` so the caller relists.
- what etcd holds is untrusted (``decoding``): a document that does not decode as a valid
  resource of its key is skipped by list and watch (logged once per version, counted in
  ``invalid_documents``), raises ``InvalidStoredDocument`` when read by name, and is
  removed by ``delete``. To a watcher, an object whose new version is invalid is DELETED,
  and one whose invalid version is replaced by a valid one is ADDED.

The registry is put together from one module per concern, each a layer of the class:
``registrybase`` (connection, state, raw etcd calls), ``codec`` (validation, size,
sealing and decoding of documents), ``txn`` (the transactions' compares and operations),
``documentcache`` (bytes by revision), ``reads`` (get, list), ``deletion`` (finalizers,
deletion, cascades), ``writes`` (create, update, update_status), ``watch`` and
``resealing`` (key rotation).
"""

from __future__ import annotations

from kukeon.api import AnyResource

from .codec import MAX_DOCUMENT_BYTES
from .deletion import CHILDREN_FINALIZER
from .reads import LIST_PAGE_SIZE, ResourceList
from .resealing import RegistryResealing
from .watch import RegistryWatch, WatchEvent
from .writes import RegistryWrites

__all__ = [
    "CHILDREN_FINALIZER",
    "LIST_PAGE_SIZE",
    "MAX_DOCUMENT_BYTES",
    "AnyResource",
    "Registry",
    "ResourceList",
    "WatchEvent",
]


class Registry(RegistryWrites, RegistryWatch, RegistryResealing):
    """Async CRUD + watch of kukeon resources in etcd. Build it with ``await Registry.connect``."""
