"""kukeond: configuration, wiring of store, controllers and API server, signals, shutdown."""

from kukeon.daemon import leanaiohttp, leanprometheus

# Before any of kukeond's modules imports them: aiohttp's server side without the client,
# prometheus-client's metrics without its HTTP servers (kukeon.leanpackage).
leanaiohttp.register_without_init()
leanprometheus.register_without_init()
