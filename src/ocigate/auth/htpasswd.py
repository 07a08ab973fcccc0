"""Users from an htpasswd file (bcrypt only), re-read whenever the file changes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import bcrypt


class Htpasswd:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, bytes] = {}
        # Successful logins by a hash of the credentials, so repeat requests skip bcrypt.
        self._verified: dict[bytes, bytes] = {}

    def _reload(self) -> None:
        stat = os.stat(self.path)
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return
        users: dict[str, bytes] = {}
        for line in self.path.read_text().splitlines():
            name, sep, hashed = line.strip().partition(":")
            if sep and name and hashed.startswith(("$2a$", "$2b$", "$2y$")):
                users[name] = hashed.encode()
        self._users, self._stamp, self._verified = users, stamp, {}

    def verify(self, user: str, password: str) -> bool:
        """Blocking (bcrypt is slow on purpose): call from a thread."""
        self._reload()
        hashed = self._users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if self._verified.get(key) == hashed:
            return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            self._verified[key] = hashed
        return ok
