"""Building the policy and the authenticator the settings describe."""

from __future__ import annotations

from ..config import Settings
from .policy import ACTIONS, Policy, PolicyConfig

# With logins configured but no policy written: every logged-in user may do everything.
_LOGGED_IN_MAY_DO_ALL = PolicyConfig.model_validate(
    {"repositories": {"**": [{"who": ["authenticated"], "actions": list(ACTIONS)}]}}
)


def effective_policy(settings: Settings) -> Policy | None:
    """The policy to enforce, or None for an open registry (no auth, no policy)."""
    if settings.policy is not None:
        return Policy(settings.policy)
    if settings.auth is not None:
        return Policy(_LOGGED_IN_MAY_DO_ALL)
    return None
