"""kukectl, the command line people use every day: kubectl's habits, kukeon's hierarchy.

Modules: ``config`` (contexts in ~/.config/kukeon/config.yaml and how the server, token
and CA are chosen), ``output`` (tables, YAML/JSON, describe; pure functions of resources),
``manifests`` (reading -f sources, ordering, missing parents, create-or-update
decisions), ``main`` (the click commands).

kukectl talks to the API only through ``kukeon.apiserver.client``; it never opens etcd.
"""
