"""kukeond: configuration, wiring of store, controllers and API server, signals, shutdown."""

from kukeon.daemon.leanaiohttp import register_without_init

# Before any of kukeond's modules imports aiohttp: its server side without the client.
register_without_init()
