"""Authentication in the HTTP layer: who is calling, the 401 challenges that tell clients how to
log in, and the token endpoint of the Docker token flow (GET and OAuth2 POST ``/token``)."""

from __future__ import annotations

import base64
import binascii
import re
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
from ..auth.tokens import (
    CATALOG_SCOPE,
    TOKEN_ACTIONS,
    InsufficientScope,
    Scope,
    TokenService,
    load_or_create_key,
)
from ..oci.errors import Denied, OCIError, Unauthorized, Unsupported
from .http import Headers, Request
from .routes import Route

_FORM = "application/x-www-form-urlencoded"
_VERIFIED_TOKENS = 10_000
# What a token action needs from the policy (a token's push also covers moving a tag).
_POLICY_ACTION: dict[str, Action] = {"pull": "pull", "push": "push", "delete": "delete"}
# The token actions a client should ask for, by request method, when challenged.
_CHALLENGE_ACTIONS = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}
# host[:port] as RFC 3986 allows it (reg-name, IPv4 or [IPv6]): nothing else enters the realm.
_HOST = re.compile(r"(?:[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


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
            if not user and not password:
                return ANONYMOUS  # what some clients send after a logout
            return await self.login(user, password)
        if scheme == "bearer":
            return await self._bearer(credentials.strip())
        raise Unauthorized({"scheme": scheme[:20]}, "unsupported authorization scheme")

    async def login(self, user: str, password: str) -> Identity:
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

    def refusal(
        self, request: Request, route: Route | None, identity: Identity, error: OCIError
    ) -> tuple[OCIError, Headers]:
        """The answer to a refused request, as distribution gives it. A caller who could log in
        is challenged (401). A registry token the request needs more than (whether the policy
        would grant it or not) gets 401 ``error="insufficient_scope"`` naming the scope: clients
        fetch a token for a plain challenge but give up, saying "denied", on this one. A user
        who logged in directly (Basic, OIDC) and is refused gets ``403 DENIED``."""
        if isinstance(error, InsufficientScope):
            unauthorized = Unauthorized(error.detail, error.message)
            return unauthorized, self._challenge(request, error.scope, "insufficient_scope")
        token = identity.method == "token"
        if isinstance(error, Denied) and (identity.anonymous or token):
            error = Unauthorized(error.detail, error.message)
        if error.status != 401:
            return error, []
        wanted = self._wanted_scope(request, route)
        problem = "insufficient_scope" if token and wanted else None
        return error, self._challenge(request, wanted, problem)

    def _wanted_scope(self, request: Request, route: Route | None) -> str | None:
        if route is None or route.endpoint == "base":
            return None
        if route.endpoint == "catalog":
            return CATALOG_SCOPE
        if not route.name:
            return None
        return f"repository:{route.name}:{_CHALLENGE_ACTIONS.get(request.method, 'pull,push')}"

    def _challenge(self, request: Request, scope: str | None, error: str | None) -> Headers:
        if self.tokens is None:
            return [(b"www-authenticate", b'Basic realm="ocigate"')]
        params = {
            "realm": self.config.token.realm or f"{_origin(request)}/token",
            "service": self.tokens.service,
            "scope": scope,
            "error": error,
        }
        value = "Bearer " + ",".join(f"{k}={_quoted(v)}" for k, v in params.items() if v)
        return [(b"www-authenticate", value.encode("latin-1"))]

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
            identity = await self.login(form.get("username", ""), form.get("password", ""))
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
        catalog = False
        for text in scopes:
            for part in text.split(" "):
                # Anyone may list the catalog: the listing shows what the policy lets them pull.
                catalog = catalog or part == CATALOG_SCOPE
                scope = Scope.parse(part)
                if scope is None or scope.type != "repository":
                    continue
                # Grant exactly what the policy allows of what was asked.
                wanted = TOKEN_ACTIONS if "*" in scope.actions else scope.actions
                granted = {
                    a for a in wanted if a in TOKEN_ACTIONS and self._may(identity, scope, a)
                }
                access.setdefault(scope.name, set()).update(granted)
        return self.tokens.issue(identity, access, catalog=catalog)

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
    """This server's origin as the client addressed it: the Host header when it is a plain
    host[:port], else the address the connection arrived on."""
    host = request.headers.get("host", "")
    if not _HOST.fullmatch(host):
        server = request.scope.get("server") or ("localhost", None)
        address, port = str(server[0]), server[1]
        address = f"[{address}]" if ":" in address else address
        host = f"{address}:{port}" if port else address
    scheme = "https" if request.scope.get("scheme") == "https" else "http"
    return f"{scheme}://{host}"


def _quoted(value: str) -> str:
    """An RFC 9110 quoted-string: quotes and backslashes escaped, control characters (CR, LF,
    …) and anything beyond Latin-1 percent-encoded, so no value can end the header or the
    parameter early."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub(r"[\x00-\x1f\x7f]|[^\x00-\xff]", _percent, escaped) + '"'


def _percent(found: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in found.group().encode())
