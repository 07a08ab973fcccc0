"""Capabilities that are not storage: each a :class:`~ocigate.registry.Registry` wrapping another.

``stack.build`` assembles them from the settings around the store.
"""
