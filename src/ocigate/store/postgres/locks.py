"""The advisory-lock keys every replica agrees on: ``(NAMESPACE, key)`` pairs, the namespace
being ocigate's so that other applications sharing the database do not collide with it."""

from __future__ import annotations

NAMESPACE = 0x6F636967  # "ocig"

MIGRATIONS = 1  # held while migrating the schema
GC = 2  # shared by commits and links, exclusive for garbage collection
OUTBOX_ORDER = 3  # held by a transaction from its outbox insert to its commit
REPOSITORY = 0x6F636968  # a second namespace: per repository, keyed by hashtext(name)
