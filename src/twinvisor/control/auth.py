"""Credentials for the dashboard on the TCP listener: users with salted scrypt password hashes,
sessions that expire, CSRF tokens bound to a session, and a login throttle.

The users file (written by `twinvisor passwd`, mode 0600), one user a line:

    NAME ROLE scrypt$N$r$p$SALT$HASH        # ROLE: admin (every action) or read (look only)

SALT and HASH are base64. Nothing here does I/O on the network; the clock is passed in, so the
throttle and expiry are testable without waiting.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from enum import StrEnum

ROLE_NAMES = ("admin", "read")
_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~16 MiB, a few tens of ms per check
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class Role(StrEnum):
    ADMIN = "admin"
    READ = "read"


class UsersFileError(ValueError):
    pass


# hashlib and hmac (OpenSSL's libcrypto: 1 MiB of PSS) are imported by the functions that
# hash: every supervisor imports this module for its control socket, few ever see a login


def hash_password(password: str, salt: bytes | None = None) -> str:
    import hashlib

    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    import hashlib
    import hmac

    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt" or int(n) > 2**20 or int(r) > 32 or int(p) > 16:
            return False
        want = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str


def parse_users(text: str, where: str) -> dict[str, User]:
    users: dict[str, User] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or not _NAME.fullmatch(parts[0]) or parts[1] not in ROLE_NAMES:
            raise UsersFileError(f"{where}:{number}: expected 'NAME admin|read scrypt$...'")
        if not parts[2].startswith("scrypt$"):
            raise UsersFileError(f"{where}:{number}: the password must be a scrypt hash")
        users[parts[0]] = User(parts[0], Role(parts[1]), parts[2])
    return users


def format_users(users: dict[str, User]) -> str:
    lines = ["# twinvisor dashboard users: NAME ROLE HASH (written by `twinvisor passwd`)"]
    lines += [f"{u.name} {u.role.value} {u.password_hash}" for u in users.values()]
    return "\n".join(lines) + "\n"


def valid_user_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


@dataclass
class Session:
    user: str
    role: Role
    csrf: str
    expires: float


@dataclass
class Sessions:
    """Live sessions by their (random, unguessable) id; a session expires `ttl` seconds after
    its last use."""

    ttl: float = 3600.0
    limit: int = 1000
    _by_id: dict[str, Session] = field(default_factory=dict)

    def create(self, user: User, now: float) -> tuple[str, Session]:
        if len(self._by_id) >= self.limit:
            self.expire(now)
            if len(self._by_id) >= self.limit:  # still full: the oldest goes
                del self._by_id[min(self._by_id, key=lambda k: self._by_id[k].expires)]
        import secrets  # at the first login: every supervisor imports this module

        sid = secrets.token_urlsafe(32)
        session = Session(user.name, user.role, secrets.token_urlsafe(32), now + self.ttl)
        self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None, now: float) -> Session | None:
        session = self._by_id.get(sid or "")
        if session is None:
            return None
        if session.expires <= now:
            del self._by_id[sid or ""]
            return None
        session.expires = now + self.ttl
        return session

    def drop(self, sid: str | None) -> None:
        self._by_id.pop(sid or "", None)

    def expire(self, now: float) -> None:
        for sid in [k for k, s in self._by_id.items() if s.expires <= now]:
            del self._by_id[sid]


@dataclass
class Throttle:
    """Failed logins per key (client address, user name): after `free` failures within
    `window` seconds, every attempt is refused until `lockout` seconds after the last failure
    (doubling with each further failure, up to `max_lockout`)."""

    free: int = 5
    window: float = 300.0
    lockout: float = 30.0
    max_lockout: float = 900.0
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def blocked_for(self, key: str, now: float) -> float:
        recent = [t for t in self._failures.get(key, []) if now - t < self.window]
        self._failures[key] = recent
        if len(recent) < self.free:
            return 0.0
        wait = min(self.lockout * 2.0 ** (len(recent) - self.free), self.max_lockout)
        return max(0.0, recent[-1] + wait - now)

    def failed(self, key: str, now: float) -> None:
        if len(self._failures) > 10_000:  # an attacker spraying keys: forget the oldest
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(key, []).append(now)
        del self._failures[key][: -self.free * 4]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
