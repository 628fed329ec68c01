"""One controller per kind (realm, space, stack, cell): spec in etcd becomes host state.

Controllers are written with ``kukeon.framework`` and act on the host only through
``kukeon.runtime``.
"""
