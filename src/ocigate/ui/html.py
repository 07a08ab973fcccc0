"""Escaping, the page frame and the stylesheet.

No template engine: pages are small f-strings in ``pages.py``, and every value from outside (a
repository name, an annotation, a user name) goes through :func:`e` on its way in. One rule,
visible at each interpolation, no dependency.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from ..auth.identity import Identity


def e(value: object) -> str:
    """Text as HTML, quotes included (safe inside attribute values)."""
    return html.escape(str(value), quote=True)


def url(base: str, path: str = "", **query: str | None) -> str:
    """``base`` + ``path`` (percent-encoded, ``/`` and ``:`` kept) + the non-empty query."""
    target = base + quote(path, safe="/:@")
    given = {k: v for k, v in query.items() if v}
    return e(f"{target}?{urlencode(given)}" if given else target)


def size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def moment(seconds: float | None) -> str:
    """A UTC time as HTML; "unknown" when the backend cannot tell (a gateway)."""
    if seconds is None:
        return "unknown"
    when = datetime.fromtimestamp(seconds, UTC)
    return f'<time datetime="{when.isoformat()}">{when:%Y-%m-%d %H:%M:%S} UTC</time>'


def short(digest: str) -> str:
    algorithm, _, hexa = digest.partition(":")
    return f"{algorithm}:{hexa[:12]}" if hexa else digest


def frame(
    base: str, title: str, body: str, identity: Identity, logins: bool, crumbs: str = ""
) -> bytes:
    """A whole page: ``body`` and ``crumbs`` are HTML already, ``title`` is text."""
    if not logins:
        who = ""
    elif identity.anonymous:
        who = f'<a href="{url(base, "login")}">Log in</a>'
    else:
        who = (
            f'<form method="post" action="{url(base, "logout")}" class="logout">'
            f"<span>{e(identity.label())}</span> <button type=submit>Log out</button></form>"
        )
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · ocigate</title>
<link rel="stylesheet" href="{url(base, "style.css")}">
</head>
<body>
<header><a class="home" href="{url(base)}">ocigate</a><nav aria-label="Account">{who}</nav></header>
<nav aria-label="Breadcrumb" class="crumbs">{crumbs}</nav>
<main id="main">
<h1>{e(title)}</h1>
{body}
</main>
</body>
</html>
"""
    return page.encode()


# Contrast: text #1a1a1a and links #0645ad on white pass WCAG AA; tables scroll inside their
# own box on a phone instead of widening the page.
STYLESHEET = b"""
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff}
header{display:flex;justify-content:space-between;align-items:center;gap:1rem;
 padding:.5rem 1rem;background:#f2f2f2;border-bottom:1px solid #ccc;flex-wrap:wrap}
.home{font-weight:bold;color:#1a1a1a;text-decoration:none}
a{color:#0645ad}
main,.crumbs{padding:0 1rem;max-width:72rem;margin:0 auto;overflow-wrap:anywhere}
.crumbs{padding-top:.5rem;overflow-wrap:anywhere}
h1{font-size:1.4rem;overflow-wrap:anywhere}
h2{font-size:1.1rem;margin-top:1.5rem}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
code,pre{font:14px/1.4 ui-monospace,monospace;overflow-wrap:anywhere}
pre{background:#f6f6f6;padding:.5rem;white-space:pre-wrap;border:1px solid #ddd}
form.filter,form.login{display:flex;gap:.5rem;flex-wrap:wrap;align-items:end;margin:1rem 0}
label{display:flex;flex-direction:column;font-weight:600}
input,button{font:inherit;padding:.3rem .5rem}
button{cursor:pointer}
.logout{display:flex;gap:.5rem;align-items:center;margin:0}
.pager{display:flex;gap:1rem;margin:1rem 0}
.error{color:#8b0000;font-weight:600}
ul.tree{padding-left:1.2rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dt{font-weight:600;min-width:0}
dd{margin:0;overflow-wrap:anywhere}
.cmd{user-select:all}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
@media (max-width:600px){dl{grid-template-columns:1fr}dd{margin-bottom:.4rem}}
"""
