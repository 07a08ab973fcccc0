"""Listing tags (end-8a, end-8b)."""

from __future__ import annotations

import httpx
import pytest

from .helpers import (
    assert_error,
    follow_pages,
    next_link,
    parse_link,
    push_image,
    push_manifest,
    with_params,
)

# Chosen so that ASCII order and case-insensitive lexical order agree, but naive orderings
# (insertion, numeric) do not.
TAGS = ["v1", "latest", "9", "10", "1.0", "b_1", "b-1", "a"]
SORTED = sorted(TAGS)


@pytest.fixture
def tagged_repo(client: httpx.Client, repo: str) -> str:
    manifest = push_image(client, repo, TAGS[0])
    for tag in TAGS[1:]:
        push_manifest(client, repo, manifest, tag)
    return repo


def tags_url(repo: str, **params: str | int) -> str:
    return with_params(f"/v2/{repo}/tags/list", [(k, str(v)) for k, v in params.items()])


def test_list_tags(client: httpx.Client, tagged_repo: str) -> None:
    """ "Assuming a repository is found, this request MUST return a `200 OK` response code" with
    `{"name": "<name>", "tags": [...]}`; the tags "MUST be in lexical ... or ASCIIbetical"
    order."""
    resp = client.get(tags_url(tagged_repo))
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == {"name": tagged_repo, "tags": SORTED}


def test_list_tags_of_untagged_repository(client: httpx.Client, repo: str) -> None:
    """ "The list of tags MAY be empty if there are no tags on the repository." (manifest pushed
    by digest only)"""
    push_image(client, repo)
    resp = client.get(tags_url(repo))
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == repo
    assert not resp.json()["tags"]


@pytest.mark.parametrize("n", [1, 2, 3, len(TAGS) - 1])
def test_paginate_with_n(client: httpx.Client, tagged_repo: str, n: int) -> None:
    """With `n`, "the response MUST include `<int>` results" unless fewer exist; a `Link` header
    "MUST be set according to RFC 5988 with the Relation Type `rel="next"`". Following the links
    yields every tag exactly once, in order."""
    resp = client.get(tags_url(tagged_repo, n=n))
    assert resp.status_code == 200
    assert resp.json()["tags"] == SORTED[:n]
    assert next_link(resp) is not None, "more tags exist but no Link header"
    assert follow_pages(client, tags_url(tagged_repo, n=n), "tags") == SORTED


@pytest.mark.parametrize("n", [len(TAGS), len(TAGS) + 5, 1000])
def test_n_covering_everything(client: httpx.Client, tagged_repo: str, n: int) -> None:
    """When `n` is at least the number of tags, one response holds them all."""
    resp = client.get(tags_url(tagged_repo, n=n))
    assert resp.status_code == 200
    assert resp.json()["tags"] == SORTED
    assert follow_pages(client, tags_url(tagged_repo, n=n), "tags") == SORTED


def test_n_zero(client: httpx.Client, tagged_repo: str) -> None:
    """ "When `n` is zero, this endpoint MUST return an empty list, and MUST NOT include a `Link`
    header.\""""
    resp = client.get(tags_url(tagged_repo, n=0))
    assert resp.status_code == 200
    assert not resp.json()["tags"]
    assert "Link" not in resp.headers


@pytest.mark.parametrize(
    ("last", "n", "expected"),
    [
        ("a", None, SORTED[SORTED.index("a") + 1 :]),
        ("a", 2, SORTED[SORTED.index("a") + 1 : SORTED.index("a") + 3]),
        ("b", None, SORTED[SORTED.index("b-1") :]),
        ("v1", None, []),
        ("0", 3, SORTED[:3]),
    ],
    ids=["existing", "existing-with-n", "between-tags", "after-last", "before-first"],
)
def test_last_is_exclusive(
    client: httpx.Client, tagged_repo: str, last: str, n: int | None, expected: list[str]
) -> None:
    """ "A request of this sort will return up to `<int>` tags, beginning non-inclusively with
    `<tagname>`"; "When using the `last` query parameter, the `n` parameter is OPTIONAL.\""""
    params: dict[str, str | int] = {"last": last}
    if n is not None:
        params["n"] = n
    resp = client.get(tags_url(tagged_repo, **params))
    assert resp.status_code == 200
    assert (resp.json()["tags"] or []) == expected


def test_tags_of_unknown_repository(client: httpx.Client, repo: str) -> None:
    """A repository that does not exist: 404 NAME_UNKNOWN ("repository name not known to
    registry")."""
    assert_error(client.get(tags_url(repo)), 404, "NAME_UNKNOWN")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('</v2/r/tags/list?n=2&last=b>; rel="next"', {"next": "/v2/r/tags/list?n=2&last=b"}),
        ("<http://h/x?a=1,2>;rel=next", {"next": "http://h/x?a=1,2"}),
        ('<a>; rel="prev", <b>; title="x"; rel="next"', {"prev": "a", "next": "b"}),
    ],
    ids=["quoted", "unquoted-with-comma-in-url", "several-links"],
)
def test_link_header_parsing(header: str, expected: dict[str, str]) -> None:
    """The suite's own RFC 5988 `Link` parser, used to follow `rel="next"` pages."""
    assert parse_link(header) == expected
