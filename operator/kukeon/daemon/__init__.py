"""kukeond: configuration, wiring of store, controllers and API server, signals, shutdown."""
