"""kukeond: configuration, wiring of store, controllers and API server, signals, shutdown."""

from kukeon.daemon import leanaiohttp, leanprometheus

# Before any of kukeond's modules imports them: aiohttp's server side without the client
# nor the system's mime.types, prometheus-client's metrics without its HTTP servers
# (kukeon.leanpackage).
leanaiohttp.register_without_init()
leanaiohttp.without_system_mime_types()
leanprometheus.register_without_init()
