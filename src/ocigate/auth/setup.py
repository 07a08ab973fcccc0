"""The policy to enforce, from the configured policy and logins."""

from __future__ import annotations

from .config import AuthConfig
from .policy import ACTIONS, Policy, PolicyConfig

# With logins configured but no policy written: every logged-in user may do everything.
_LOGGED_IN_MAY_DO_ALL = PolicyConfig.model_validate(
    {"repositories": {"**": [{"who": ["authenticated"], "actions": list(ACTIONS)}]}}
)


def effective_policy(policy: PolicyConfig | None, auth: AuthConfig | None) -> Policy | None:
    """The policy to enforce, or None for an open registry (no auth, no policy)."""
    if policy is not None:
        return Policy(policy)
    if auth is not None:
        return Policy(_LOGGED_IN_MAY_DO_ALL)
    return None
