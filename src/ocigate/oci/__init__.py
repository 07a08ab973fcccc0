"""Pure OCI domain code: digests, names, descriptors, manifests, media types and errors.

Imports nothing from the rest of ocigate.
"""
