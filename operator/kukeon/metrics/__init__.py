"""Prometheus collectors and the /metrics endpoint."""
