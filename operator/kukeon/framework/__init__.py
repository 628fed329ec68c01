"""The operator framework: handlers, per-object queues, retries, finalizers, leases.

Inspired by kopf; the transport is the etcd registry (``kukeon.store``), never the host.
"""
