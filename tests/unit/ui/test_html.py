"""The HTML helpers every page goes through."""

from __future__ import annotations

from ocigate.auth.identity import ANONYMOUS, Identity
from ocigate.ui.html import e, frame, moment, short, size, url


def test_escaping_covers_attributes() -> None:
    assert e('<a href="x">\'&') == "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;"


def test_urls_are_encoded_then_escaped() -> None:
    assert url("/ui/", "r/a b", last="x&y", q=None) == "/ui/r/a%20b?last=x%26y"
    assert url("/ui/", "r/x/-/manifest/sha256:ab") == "/ui/r/x/-/manifest/sha256:ab"
    assert url("/ui/", '"><script>') == "/ui/%22%3E%3Cscript%3E"


def test_sizes_and_times_read_well() -> None:
    assert [size(n) for n in (0, 1023, 1024, 5 * 1024 * 1024, 3 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3072.0 GiB",
    ]
    assert moment(None) == "unknown"
    assert moment(0) == '<time datetime="1970-01-01T00:00:00+00:00">1970-01-01 00:00:00 UTC</time>'
    assert short("sha256:" + "a" * 64) == "sha256:aaaaaaaaaaaa"


def test_the_frame_escapes_the_title_and_user() -> None:
    page = frame("/ui/", "<t>", "<p>body</p>", Identity("<u>"), logins=True).decode()
    assert "<title>&lt;t&gt; · ocigate</title>" in page and "<span>&lt;u&gt;</span>" in page
    assert "<p>body</p>" in page  # the body is HTML already
    anonymous = frame("/ui/", "t", "", ANONYMOUS, logins=True).decode()
    assert 'href="/ui/login"' in anonymous
    assert "Log in" not in frame("/ui/", "t", "", ANONYMOUS, logins=False).decode()
