"""`GET /v2/_catalog`: the repository list (from the Docker registry API, kept by ocigate).

The registry may hold repositories created by other tests (or other users of a live
registry), so these tests look only at the ones they create, which share a random prefix.
"""

from __future__ import annotations

import secrets

import httpx
import pytest

from .helpers import follow_pages, next_link, push_image, with_params


@pytest.fixture
def catalog_repos(client: httpx.Client) -> list[str]:
    prefix = f"spec/catalog-{secrets.token_hex(4)}"
    repos = [f"{prefix}/{suffix}" for suffix in ("c", "a", "b", "a/nested")]
    for repo in repos:
        push_image(client, repo, "t")
    return sorted(repos)


def catalog_url(**params: str | int) -> str:
    return with_params("/v2/_catalog", [(k, str(v)) for k, v in params.items()])


def test_catalog_lists_repositories(client: httpx.Client, catalog_repos: list[str]) -> None:
    """`{"repositories": [...]}` names every repository, each once, in sorted order."""
    everything = follow_pages(client, catalog_url(), "repositories")
    assert everything == sorted(everything)
    assert len(everything) == len(set(everything))
    assert [r for r in everything if r in catalog_repos] == catalog_repos


def test_catalog_paging(client: httpx.Client, catalog_repos: list[str]) -> None:
    """`n`/`last`: `last` is exclusive, `n` bounds the page, `Link: <...>; rel="next"` leads on;
    the pages together give each of our repositories exactly once, in order."""
    before_first = catalog_repos[0].rsplit("/", 1)[0]  # the common prefix sorts first
    resp = client.get(catalog_url(n=2, last=before_first))
    assert resp.status_code == 200
    assert resp.json()["repositories"] == catalog_repos[:2]
    assert next_link(resp) is not None
    pages = follow_pages(client, catalog_url(n=2, last=before_first), "repositories")
    assert pages[: len(catalog_repos)] == catalog_repos
    assert len(pages) == len(set(pages))

    resp = client.get(catalog_url(n=1, last=catalog_repos[0]))
    assert resp.json()["repositories"] == catalog_repos[1:2]
