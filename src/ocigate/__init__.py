"""ocigate: an OCI Distribution v1.1 registry and registry gateway.

Map of the package (the README's "Architecture" says more):
  oci/          the OCI domain: digests, names, descriptors, manifests, media types, errors
  registry.py   the Registry protocol every backend and layer implements
  store/        backends: ports (BlobStore + MetadataStore), core (the logic over them),
                embedded (files + SQLite), memory, upstream, cache, gateway (routing)
  layers/       Registry wrappers: policy, validation, rate limits, referrers tag schema
  events/       events: layer, outbox, webhooks, config, CLI
  auth/         identities (htpasswd, registry tokens, OIDC) and the access-policy model
  client/       async OCI registry client: auth challenges, token cache, pooled connections
  api/          the ASGI HTTP layer: routes -> Registry calls, errors -> spec JSON
  server/       the built-in HTTP/1.1 server, TLS, the uvicorn and granian launchers
  assemble.py   settings -> backend, layers, jobs, the app (the one reader of all Settings)
  config.py     the one typed configuration model
  cli.py        `ocigate serve | fsck | gc | validate | events | config`
"""

__version__ = "0.1.0"
