"""One function per page: a view (``views.py``) to the HTML inside the frame (``html.py``)."""

from __future__ import annotations

from ..registry import Page, TagDetail
from .html import e, moment, short, size, url
from .views import Item, ManifestView, Referrer


def repo_path(repo: str) -> str:
    return f"r/{repo}"


def manifest_path(repo: str, reference: str) -> str:
    # "-" is never a whole component of a repository name: the split is unambiguous.
    return f"r/{repo}/-/manifest/{reference}"


def crumbs(base: str, repo: str, reference: str = "") -> str:
    parts = [f'<a href="{url(base)}">Repositories</a>']
    parts.append(f'<a href="{url(base, repo_path(repo))}">{e(repo)}</a>')
    if reference:
        parts.append(f"<span>{e(short(reference))}</span>")
    return " / ".join(parts)


def repositories(base: str, page: Page, query: str, last: str | None) -> str:
    form = (
        f'<form class="filter" method="get" action="{url(base)}" role="search">'
        f'<label for="q">Filter by name<input id="q" name="q" value="{e(query)}"'
        ' type="search" autocomplete="off"></label><button type="submit">Filter</button></form>'
    )
    if not page.items:
        listing = "<p>No repositories to show.</p>"
    else:
        rows = "".join(
            f'<li><a href="{url(base, repo_path(name))}">{e(name)}</a></li>' for name in page.items
        )
        listing = f'<ul class="repositories">{rows}</ul>'
    nxt = url(base, q=query or None, last=page.items[-1]) if page.more else None
    first = url(base, q=query or None) if last else None
    return form + listing + _pager(nxt, first)


def quota(row: tuple[str, ...] | None) -> str:
    """A repository's usage (``quota_table.usage_row``), above its tags; none without quotas."""
    if row is None:
        return ""
    _, used, tags, share, rule = row
    limit = "no quota applies" if rule == "-" else f"{e(share)} of quota <code>{e(rule)}</code>"
    return f'<p class="usage">Storage used: {e(used)}; tags: {e(tags)}; {limit}.</p>'


def tags(base: str, repo: str, rows: list[TagDetail], more: bool, last: str | None) -> str:
    if not rows:
        return "<p>No tags.</p>"
    body = "".join(
        "<tr>"
        f'<td><a href="{url(base, manifest_path(repo, row.tag))}">{e(row.tag)}</a></td>'
        f'<td><a href="{url(base, manifest_path(repo, str(row.digest)))}">'
        f"<code>{e(short(str(row.digest)))}</code></a></td>"
        f"<td>{e(row.media_type)}</td><td>{e(size(row.size))}</td><td>{moment(row.pushed)}</td>"
        "</tr>"
        for row in rows
    )
    table = (
        '<div class="scroll"><table class="tags"><caption class="visually-hidden">Tags</caption>'
        "<thead><tr><th scope=col>Tag</th><th scope=col>Digest</th>"
        "<th scope=col>Media type</th><th scope=col>Size</th><th scope=col>Pushed</th></tr>"
        f"</thead><tbody>{body}</tbody></table></div>"
    )
    nxt = url(base, repo_path(repo), last=rows[-1].tag) if more else None
    first = url(base, repo_path(repo)) if last else None
    return table + _pager(nxt, first)


def _pager(nxt: str | None, first: str | None) -> str:
    """Links to the next page and back to the first (``href`` values, escaped already)."""
    links = [f'<a rel="next" href="{nxt}">Next page</a>'] if nxt else []
    if first:
        links.append(f'<a href="{first}">First page</a>')
    return f'<nav class="pager" aria-label="Pages">{"".join(links)}</nav>' if links else ""


def manifest(base: str, repo: str, host: str, view: ManifestView) -> str:
    reference = f"{host}/{repo}@{view.digest}"
    facts = [
        ("Digest", f"<code>{e(view.digest)}</code>"),
        ("Media type", e(view.media_type)),
        ("Size", e(size(view.size))),
    ]
    if view.artifact_type:
        facts.append(("Artifact type", e(view.artifact_type)))
    if view.subject is not None:
        target = url(base, manifest_path(repo, view.subject.digest))
        facts.append(("Subject", f'<a href="{target}"><code>{e(view.subject.digest)}</code></a>'))
    parts = [
        _definitions(facts),
        "<h2>Pull</h2>",
        f'<pre class="cmd"><code>docker pull {e(reference)}</code></pre>',
        f'<pre class="cmd"><code>oras pull {e(reference)}</code></pre>',
    ]
    if view.children:
        parts.append("<h2>Platforms</h2>")
        parts.append(_descriptors(base, repo, view.children, link=True))
    if view.config is not None:
        parts.append("<h2>Config</h2>")
        parts.append(_descriptors(base, repo, [view.config], link=False))
    if view.layers:
        parts.append("<h2>Layers</h2>")
        parts.append(_descriptors(base, repo, view.layers, link=False))
    if view.annotations:
        parts.append("<h2>Annotations</h2>")
        parts.append(_definitions([(e(k), e(v)) for k, v in sorted(view.annotations.items())]))
    parts.append("<h2>Referrers</h2>")
    if view.referrers:
        parts.append(_tree(base, repo, view.referrers))
    else:
        parts.append("<p>No referrers.</p>")
    return "".join(parts)


def _definitions(pairs: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _descriptors(base: str, repo: str, items: list[Item], *, link: bool) -> str:
    platforms = any(item.platform for item in items)
    head = "<th scope=col>Platform</th>" if platforms else ""
    rows = []
    for item in items:
        digest = f"<code>{e(short(item.digest))}</code>"
        if link:
            digest = f'<a href="{url(base, manifest_path(repo, item.digest))}">{digest}</a>'
        platform = f"<td>{e(item.platform)}</td>" if platforms else ""
        rows.append(
            f"<tr>{platform}<td>{digest}</td><td>{e(item.media_type)}</td>"
            f"<td>{e(size(item.size))}</td></tr>"
        )
    return (
        f'<div class="scroll"><table><thead><tr>{head}<th scope=col>Digest</th>'
        "<th scope=col>Media type</th><th scope=col>Size</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _tree(base: str, repo: str, referrers: list[Referrer]) -> str:
    entries = []
    for node in referrers:
        item = node.item
        kind = item.artifact_type or item.media_type
        link = url(base, manifest_path(repo, item.digest))
        entry = f'<a href="{link}"><code>{e(short(item.digest))}</code></a> {e(kind)}'
        if node.referrers:
            entry += _tree(base, repo, node.referrers)
        entries.append(f"<li>{entry}</li>")
    return f'<ul class="tree">{"".join(entries)}</ul>'


def login(base: str, problem: str = "") -> str:
    message = f'<p class="error" role="alert">{e(problem)}</p>' if problem else ""
    return (
        f'{message}<form class="login" method="post" action="{url(base, "login")}">'
        '<label for="username">User name<input id="username" name="username"'
        ' autocomplete="username" required></label>'
        '<label for="password">Password<input id="password" name="password" type="password"'
        ' autocomplete="current-password" required></label>'
        '<button type="submit">Log in</button></form>'
    )


def error(base: str, message: str) -> str:
    return f'<p>{e(message)}</p><p><a href="{url(base)}">Back to the repositories</a></p>'
