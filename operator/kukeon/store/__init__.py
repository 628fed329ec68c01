"""The registry on etcd: versioned documents, CAS writes, status, finalizers, list + watch.

etcd is the only source of truth. This package may import ``kukeon.api`` and nothing else
of the project.
"""
