"""`twinvisor passwd USER [--role admin|read] [--file F] [--delete]`: add or change a dashboard
user in the users file ([daemon.http] users_file, mode 0600). The password is asked twice on a
terminal, or read as one line from stdin (for scripts); only its salted scrypt hash is stored.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from twinvisor.control import auth
from twinvisor.linux import fsutil


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("new password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return first


def cmd_passwd(args: argparse.Namespace, users_file: str) -> int:
    if not auth.valid_user_name(args.user):
        print(
            f"twinvisor: invalid user name {args.user!r} (letters, digits, . _ @ -)",
            file=sys.stderr,
        )
        return 2
    try:
        with open(users_file, encoding="utf-8") as f:
            users = auth.parse_users(f.read(), users_file)
    except FileNotFoundError:
        users = {}
    except (OSError, auth.UsersFileError) as e:
        print(f"twinvisor: {e}", file=sys.stderr)
        return 2
    if args.delete:
        if users.pop(args.user, None) is None:
            print(f"twinvisor: no user {args.user!r} in {users_file}", file=sys.stderr)
            return 1
    else:
        try:
            password = _password()
        except ValueError as e:
            print(f"twinvisor: {e}", file=sys.stderr)
            return 1
        if len(password) < 8:
            print("twinvisor: the password must have at least 8 characters", file=sys.stderr)
            return 2
        role = auth.Role(args.role)
        users[args.user] = auth.User(args.user, role, auth.hash_password(password))
    os.makedirs(os.path.dirname(os.path.abspath(users_file)), exist_ok=True)
    if not fsutil.write_atomic(users_file, auth.format_users(users), mode=0o600):
        print(f"twinvisor: cannot write {users_file}", file=sys.stderr)
        return 1
    what = "removed" if args.delete else f"set ({args.role})"
    print(f"user {args.user} {what} in {users_file}")
    return 0
