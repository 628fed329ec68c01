"""The v1beta1 resource model: pydantic models of every kind, validation, defaults, manifests.

This package is the vocabulary of the whole project and imports nothing else from it:
the store, the controllers, the API server and kukectl all speak these types.
"""
