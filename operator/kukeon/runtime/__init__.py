"""Host adapters: containerd over gRPC, cgroupfs (v2 and v1), CNI, netns, nftables.

Each adapter sits behind a small interface with one real implementation. Nothing here
imports ``kukeon.store`` or ``kukeon.controllers``: the runtime knows the host, not etcd.
"""
