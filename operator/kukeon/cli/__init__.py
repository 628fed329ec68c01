"""kukectl, the command line people use every day: kubectl's habits, kukeon's hierarchy.

Modules:

- shared helpers: ``runner`` (the root options, exit codes, one ``error:`` line per failure,
  running a coroutine against the API), ``params`` (kinds, durations, scope, ``--dry-run``,
  ``-f``), ``config`` (how the server, token and CA are chosen) and ``configfile`` (the
  contexts of ~/.config/kukeon/config.yaml, read only when there is one), ``tables``
  (tables computed from the server's JSON documents), ``output`` (YAML/JSON, describe;
  pure functions of resources), ``manifests`` (reading -f sources, ordering, missing parents,
  create-or-update decisions), ``jsonpath``, ``eventview``, ``untar``;
- one module per command or family of commands: ``apply`` (apply, create -f), ``secret``
  (create secret, secret rotate-key), ``get`` (get, describe), ``edit``, ``diff``,
  ``metadata`` (label, annotate, patch), ``delete``, ``wait``, ``explain``, ``events``,
  ``run``, ``lifecycle`` (start, stop, restart, kill), ``logs``, ``sessions`` (exec,
  attach), ``transfer`` (cp), ``portforward``, ``images``, ``top``, ``nodes`` (cordon,
  uncordon, drain), ``config_commands``, ``version``, ``completion_command``;
- ``main``: the root command, where every command is registered, one line each, by the
  module and attribute it lives at (``lazygroup``: a module is imported only when its
  command runs, completes or is listed by --help); no command module imports it (a unit
  test keeps it so);
- ``entry``: the console script; ``completion``: shell completion on a cached skeleton of
  the tree, without importing the commands.

kukectl talks to the API only through ``kukeon.client``; it never opens etcd.
"""
