"""Identities and access policy: who is calling (htpasswd, registry tokens, OIDC) and what each
identity may do per repository. The HTTP layer authenticates; ``layers/policy`` enforces."""
