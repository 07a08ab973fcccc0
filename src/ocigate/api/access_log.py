"""What request data may be echoed or logged: clipped, and with secrets in the query masked."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote

ECHO_MAX = 256  # characters of a path echoed in an error body
LOG_MAX = 1024  # characters of the path, and of the query, in one access log line
MASK = "***"
# Query parameters whose values are credentials or signatures: presigned URLs, OAuth2 and
# token-endpoint fields, distribution's signed upload state.
SECRET_PARAMS = frozenset(
    {
        "_state",
        "password",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "secret",
        "signature",
        "sig",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked when cut."""
    return text if len(text) <= limit else text[:limit] + "…"


def logged_query(raw: bytes) -> str:
    """The query string for the log, each secret parameter's value replaced by ``***``."""
    if not raw:
        return ""
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    shown = "&".join(
        f"{quote(name, safe='')}={MASK if name.lower() in SECRET_PARAMS else quote(value, safe='')}"
        for name, value in pairs
    )
    return clip(shown, LOG_MAX)
