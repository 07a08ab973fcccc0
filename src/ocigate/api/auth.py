"""Authentication in the HTTP layer: who is calling, the 401 challenges that tell clients how to
log in, and the token endpoint of the Docker token flow (GET and OAuth2 POST ``/token``)."""

from __future__ import annotations

import base64
import binascii
import time
from pathlib import Path
from urllib.parse import parse_qs

import anyio.to_thread
import jwt

from ..auth.config import AuthConfig
from ..auth.htpasswd import Htpasswd
from ..auth.identity import ANONYMOUS, Identity
from ..auth.oidc import OidcVerifier
from ..auth.policy import Action, Policy
from ..auth.tokens import TOKEN_ACTIONS, Scope, TokenService, load_or_create_key
from ..oci.errors import Denied, OCIError, Unauthorized, Unsupported
from .http import Headers, Request

_FORM = "application/x-www-form-urlencoded"
_VERIFIED_TOKENS = 10_000
# What a token action needs from the policy (a token's push also covers moving a tag).
_POLICY_ACTION: dict[str, Action] = {"pull": "pull", "push": "push", "delete": "delete"}


class Authenticator:
    def __init__(self, config: AuthConfig, policy: Policy, data_dir: Path) -> None:
        self.config = config
        self.policy = policy
        self.htpasswd = Htpasswd(config.htpasswd) if config.htpasswd else None
        self.oidc = OidcVerifier(config.oidc) if config.oidc else None
        self.tokens: TokenService | None = None
        self._verified: dict[str, tuple[Identity, float]] = {}
        if config.realm == "token":
            key = load_or_create_key(config.token.key_file or data_dir / "token-key.pem")
            self.tokens = TokenService(
                key,
                issuer=config.token.issuer,
                service=config.token.service,
                expiry=config.token.expiry,
            )

    # -- who is calling --------------------------------------------------------------------

    async def identify(self, request: Request) -> Identity:
        header = request.headers.get("authorization")
        if not header:
            return ANONYMOUS
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            user, password = _basic(credentials.strip())
            return await self._login(user, password)
        if scheme == "bearer":
            return await self._bearer(credentials.strip())
        raise Unauthorized({"scheme": scheme[:20]}, "unsupported authorization scheme")

    async def _login(self, user: str, password: str) -> Identity:
        """A user name and password: an htpasswd user, or an OIDC token as the password."""
        if self.oidc is not None and self.oidc.looks_like_ours(password):
            return await self._oidc(password)
        if self.htpasswd is not None:
            htpasswd = self.htpasswd
            if await anyio.to_thread.run_sync(htpasswd.verify, user, password):
                return Identity(user, method="basic")
        raise Unauthorized(None, "invalid username or password")

    async def _bearer(self, token: str) -> Identity:
        if self.oidc is not None and self.oidc.looks_like_ours(token):
            return await self._oidc(token)
        if self.tokens is None:
            raise Unauthorized(None, "bearer tokens are not accepted here")
        # A client sends one token many times: skip the signature check until it expires.
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        try:
            identity, expires = self.tokens.verify(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized({"reason": str(exc)[:200]}, "invalid token") from exc
        if len(self._verified) >= _VERIFIED_TOKENS:
            self._verified.clear()
        self._verified[token] = (identity, expires)
        return identity

    async def _oidc(self, token: str) -> Identity:
        assert self.oidc is not None
        try:
            return await anyio.to_thread.run_sync(self.oidc.verify, token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized({"reason": str(exc)[:200]}, "invalid OIDC token") from exc

    # -- challenges ------------------------------------------------------------------------

    def challenge(self, request: Request, repo: str) -> Headers:
        if self.tokens is None:
            value = 'Basic realm="ocigate"'
        else:
            realm = self.config.token.realm or f"{_origin(request)}/token"
            value = f'Bearer realm="{realm}",service="{self.tokens.service}"'
            if repo:
                actions = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}
                value += f',scope="repository:{repo}:{actions.get(request.method, "pull,push")}"'
        return [(b"www-authenticate", value.encode())]

    def refuse(self, error: OCIError, identity: Identity) -> OCIError:
        """A denial for someone who could log in (or get a wider token) is a 401."""
        if isinstance(error, Denied) and identity.method in ("anonymous", "token"):
            return Unauthorized(error.detail, error.message)
        return error

    # -- the token endpoint ----------------------------------------------------------------

    async def token_endpoint(self, request: Request) -> tuple[int, dict[str, object]]:
        if self.tokens is None:
            raise Unsupported(None, "this registry uses Basic authentication, not tokens")
        if request.method == "POST":
            return await self._oauth2(request)
        identity = await self.identify(request)
        scopes = request.query.get("scope", [])
        token, expires_in = self._issue(identity, scopes, request.param("service"))
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {"token": token, "access_token": token, "expires_in": expires_in}
        return 200, {**body, "issued_at": issued}

    async def _oauth2(self, request: Request) -> tuple[int, dict[str, object]]:
        if not request.headers.get("content-type", "").startswith(_FORM):
            return 400, {"error": "invalid_request", "error_description": "expected a form"}
        form = {k: v[-1] for k, v in parse_qs((await request.read(65536)).decode()).items()}
        if form.get("grant_type") != "password":
            return 400, {"error": "unsupported_grant_type"}
        try:
            identity = await self._login(form.get("username", ""), form.get("password", ""))
        except Unauthorized:
            return 401, {"error": "invalid_grant"}
        scopes = form.get("scope", "").split()
        token, expires_in = self._issue(identity, scopes, form.get("service"))
        return 200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": " ".join(scopes),
        }

    def _issue(self, identity: Identity, scopes: list[str], service: str | None) -> tuple[str, int]:
        assert self.tokens is not None
        if service and service != self.tokens.service:
            raise Denied({"service": service[:100]}, "unknown service")
        access: dict[str, set[str]] = {}
        for text in scopes:
            for part in text.split(" "):
                scope = Scope.parse(part)
                if scope is None or scope.type != "repository":
                    continue
                # Grant exactly what the policy allows of what was asked.
                wanted = TOKEN_ACTIONS if "*" in scope.actions else scope.actions
                granted = {
                    a for a in wanted if a in TOKEN_ACTIONS and self._may(identity, scope, a)
                }
                access.setdefault(scope.name, set()).update(granted)
        return self.tokens.issue(identity, access)

    def _may(self, identity: Identity, scope: Scope, action: str) -> bool:
        needed = _POLICY_ACTION.get(action)
        return needed is not None and self.policy.decide(identity, scope.name, needed).allowed


def _basic(credentials: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Unauthorized(None, "malformed Basic credentials") from exc
    user, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthorized(None, "malformed Basic credentials")
    return user, password


def _origin(request: Request) -> str:
    host = request.headers.get("host", "localhost")
    scheme = request.scope.get("scheme", "http")
    return f"{scheme}://{host}"
