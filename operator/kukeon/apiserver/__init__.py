"""The aiohttp REST API over the registry: routes, authn/authz, watch streaming, logs, exec."""
