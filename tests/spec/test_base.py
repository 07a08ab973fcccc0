"""Determining support: ``GET /v2/``."""

from __future__ import annotations

import httpx


def test_v2_root_returns_200(client: httpx.Client) -> None:
    """ "If the response is `200 OK`, then the registry implements this specification."

    distribution sends ``Docker-Distribution-API-Version: registry/2.0``; ocigate does too.
    """
    resp = client.get("/v2/")
    assert resp.status_code == 200
    assert resp.headers.get("Docker-Distribution-API-Version") == "registry/2.0"


def test_v2_root_without_trailing_slash_is_not_a_server_error(client: httpx.Client) -> None:
    """`/v2` (no slash) is a common client spelling; it must at least not fail with 5xx."""
    resp = client.get("/v2")
    assert resp.status_code < 500
