"""Dashboard credentials: scrypt hashes, the users file, sessions that expire, the throttle."""

from __future__ import annotations

import pytest

from twinvisor.control import auth


def test_hash_and_check() -> None:
    stored = auth.hash_password("s3cret-pass")
    assert stored.startswith("scrypt$16384$8$1$")
    assert auth.check_password("s3cret-pass", stored)
    assert not auth.check_password("s3cret-pasS", stored)
    assert auth.hash_password("s3cret-pass") != stored  # salted
    for broken in ("", "scrypt$1$2", "md5$x", "scrypt$99999999$8$1$AA==$AA=="):
        assert not auth.check_password("x", broken)


def test_users_file_round_trip_and_errors() -> None:
    users = {"ann": auth.User("ann", auth.Role.ADMIN, auth.hash_password("password1"))}
    text = auth.format_users(users)
    assert auth.parse_users(text, "f") == users
    with pytest.raises(auth.UsersFileError, match="f:2:"):
        auth.parse_users("# c\nann superuser scrypt$x\n", "f")
    with pytest.raises(auth.UsersFileError, match="scrypt hash"):
        auth.parse_users("ann admin plaintext\n", "f")


def test_sessions_expire_after_idle_time() -> None:
    s = auth.Sessions(ttl=10)
    sid, session = s.create(auth.User("ann", auth.Role.READ, "h"), now=0)
    assert s.get(sid, 5) is session
    assert s.get(sid, 14) is session  # used at 5: lives until 15
    assert s.get(sid, 30) is None
    assert s.get("guess", 0) is None and len(sid) >= 40


def test_throttle_locks_out_after_the_free_failures() -> None:
    t = auth.Throttle(free=3, window=100, lockout=10)
    for i in range(3):
        assert t.blocked_for("ann", i) == 0
        t.failed("ann", i)
    assert t.blocked_for("ann", 3) == pytest.approx(9)
    t.failed("ann", 3)
    assert t.blocked_for("ann", 4) == pytest.approx(19)  # doubles
    assert t.blocked_for("bob", 4) == 0
    assert t.blocked_for("ann", 200) == 0  # the window passed
