"""ocigate: an OCI Distribution v1.1 registry and registry gateway.

Map of the package:
  oci/        pure OCI domain: digests, names, descriptors, manifests, media types, errors
  registry.py the Registry protocol every backend and layer implements
  store/      backends: embedded (files + SQLite), upstream gateway (+ router), memory (tests)
  layers/     Registry wrappers: policy, validate (artifact types), events (outbox)
  auth/       identities (htpasswd, registry tokens, OIDC) and the access-policy model
  client/     async OCI registry client: auth challenges, token cache, retries, streaming
  api/        the ASGI HTTP layer: routes → Registry calls, errors → spec JSON, login
  config.py   the one typed configuration model
  cli.py      `ocigate serve | fsck | gc | validate | events | config`
"""

__version__ = "0.1.0"
