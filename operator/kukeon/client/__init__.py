"""Clients of kukeon's API: what kukectl, and anything else that drives kukeon, speaks.

Modules: ``paths`` (the URL layout of every kind, shared with the API server),
``apiclient`` (the typed async client: ``ApiClient``, ``SyncApiClient``; its parts'
names are importable from it too), ``address`` (where the server is), ``errors``
(``ApiRequestError``, ``ServerUnreachable``, an answer decoded), ``busy`` (a 429 waited
out and asked again), ``streams`` (the opens of watches, followed streams and sessions),
``httpexchange`` (one request on a connection of its own, for a short-lived client
without aiohttp), ``reflector`` (a watch that resumes and relists) and ``mergepatch``
(RFC 7386, the PATCH format both sides speak).

This package imports ``kukeon.api`` and nothing else of the project: never the API server,
the store or the daemon, so a client loads neither aetcd nor grpc nor prometheus_client,
and aiohttp only for what needs it (streams, uploads, watches, WebSockets). Importing the
package itself loads nothing.
"""
