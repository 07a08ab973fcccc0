"""ocigate: an OCI Distribution v1.1 registry and registry gateway.

Map of the package:
  oci/        pure OCI domain: digests, names, descriptors, manifests, media types, errors
  registry.py the Registry protocol every backend and layer implements
  store/      backends: embedded (files + SQLite)
  api/        the ASGI HTTP layer: routes → Registry calls, errors → spec JSON
  config.py   the one typed configuration model
  cli.py      `ocigate serve | fsck`
"""

__version__ = "0.1.0"
