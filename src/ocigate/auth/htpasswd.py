"""Users from an htpasswd file (bcrypt only), re-read whenever the file changes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import bcrypt

_DEFAULT_COST = 12


class Htpasswd:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, bytes] = {}
        # Checked for unknown users, so they cost as much as a wrong password (no timing oracle).
        self._dummy = b""
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
        dummy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(rounds=_typical_cost(users)))
        self._users, self._stamp, self._verified, self._dummy = users, stamp, {}, dummy

    def verify(self, user: str, password: str) -> bool:
        """Blocking (bcrypt is slow on purpose): call from a thread."""
        self._reload()
        hashed = self._users.get(user)
        if hashed is None:
            _checkpw(password, self._dummy)
            return False
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if self._verified.get(key) == hashed:
            return True
        ok = _checkpw(password, hashed)
        if ok:
            self._verified[key] = hashed
        return ok


def _checkpw(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:  # e.g. a password longer than bcrypt's 72 bytes
        return False


def _typical_cost(users: dict[str, bytes]) -> int:
    """The most common bcrypt cost among the users (``$2b$COST$…``), so the dummy check takes
    as long as a real one."""
    costs = [int(h[4:6]) for h in users.values() if h[4:6].isdigit() and 4 <= int(h[4:6]) <= 31]
    return max(set(costs), key=costs.count) if costs else _DEFAULT_COST
