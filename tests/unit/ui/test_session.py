"""The login cookie: signed, expiring, bound to its secret; the shared secret file."""

from __future__ import annotations

import os
from pathlib import Path

from ocigate.auth.identity import Identity
from ocigate.ui.session import Sessions, load_or_create_secret

ALICE = Identity("alice", frozenset({"team-a"}), method="oidc")


def test_a_cookie_carries_the_identity_until_it_expires() -> None:
    sessions = Sessions(b"k" * 32, ttl=60)
    assert sessions.identity(sessions.issue(ALICE)) == ALICE
    expired = Sessions(b"k" * 32, ttl=0)
    assert expired.identity(expired.issue(ALICE)) is None


def test_another_secret_rejects_it() -> None:
    cookie = Sessions(b"a" * 32, ttl=60).issue(ALICE)
    assert Sessions(b"b" * 32, ttl=60).identity(cookie) is None


def test_malformed_cookies_are_nobody() -> None:
    sessions = Sessions(b"k" * 32, ttl=60)
    valid = sessions.issue(ALICE)
    for cookie in ("", ".", "a.b", "!!!.x", valid + "x", valid.replace(".", "")):
        assert sessions.identity(cookie) is None, cookie


def test_the_secret_file_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ui-session.key"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_or_create_secret(path) == first
    assert list(path.parent.iterdir()) == [path]  # no temporary file left
