"""Who is reviewing: the reviewers file, passwords, API keys and signed session cookies.

The reviewers file (TOML or JSON; ``--reviewers FILE``) names each reviewer and how they prove
it, never in the clear::

    [reviewers."Ann Moderator"]
    api_key_sha256 = "9f86d0…"                 # hex sha256 of an API key: Authorization: Bearer KEY
    password = "scrypt$16384$8$1$<salt hex>$<hash hex>"   # the login form (hashlib.scrypt, own salt)

(JSON: ``{"reviewers": {"Ann Moderator": {"api_key_sha256": "...", "password": "..."}}}``.) A
reviewer needs at least one of the two. ``python -m scanner.review.web.auth NAME`` asks for a
password (or ``--api-key`` makes a random key) and prints the entry to paste.

The name a reviewer logs in under is the ``by`` of their decisions: it comes from this file,
never from a form field. A login sets a session cookie signed with HMAC-SHA256 under a secret
drawn at random when the server starts (a restart logs everyone out; nothing to keep secret on
disk). Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_SECONDS = 12 * 3600
"""How long a login lasts."""
_HEX = frozenset("0123456789abcdef")


class ReviewersError(ValueError):
    """A reviewers file that cannot be used (the message says why)."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The ``password`` entry for a reviewers file: scrypt with a fresh 16-byte salt."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def _check_password_entry(name: str, entry: str) -> None:
    parts = entry.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(p.isdigit() for p in parts[1:4]):
        raise ReviewersError(f"reviewer {name!r}: password must be 'scrypt$N$r$p$<salt hex>$<hash hex>'")
    n, r, p = (int(x) for x in parts[1:4])
    if n < 2 or n > 2**20 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        raise ReviewersError(f"reviewer {name!r}: scrypt parameters out of range")
    try:
        bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        raise ReviewersError(f"reviewer {name!r}: salt and hash must be hex") from None


def verify_password(entry: str, password: str) -> bool:
    """Does ``password`` match a checked ``password`` entry?"""
    _, n, r, p, salt, want = entry.split("$")
    got = hashlib.scrypt(
        password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(want) // 2,
        maxmem=256 * 1024 * 1024,
    )  # fmt: skip
    return hmac.compare_digest(got, bytes.fromhex(want))


@dataclass(frozen=True)
class Reviewer:
    name: str
    api_key_sha256: bytes | None = None
    password: str | None = None


@dataclass
class Reviewers:
    """The reviewers of one server, by name."""

    by_name: dict[str, Reviewer] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Reviewers:
        """Read and check a reviewers file (TOML, or JSON when it starts with ``{``)."""
        try:
            text = Path(path).read_text("utf-8")
            doc = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ReviewersError(f"cannot read reviewers file {path}: {exc}") from None
        table = doc.get("reviewers") if isinstance(doc, dict) else None
        if not isinstance(table, dict) or not table:
            raise ReviewersError(f'{path} names no reviewer: it needs a [reviewers."NAME"] table per reviewer')
        return cls({name: _reviewer(str(name), entry) for name, entry in table.items()})

    def by_api_key(self, key: str) -> str | None:
        """The name whose API key this is (every digest is compared, whichever matches)."""
        given = hashlib.sha256(key.encode("utf-8")).digest()
        found = None
        for r in self.by_name.values():
            if r.api_key_sha256 is not None and hmac.compare_digest(given, r.api_key_sha256):
                found = r.name
        return found

    def login(self, name: str, password: str) -> str | None:
        """The name if ``password`` is theirs, else None (an unknown name costs a hash too)."""
        reviewer = self.by_name.get(name)
        entry = reviewer.password if reviewer is not None else None
        ok = verify_password(entry or _DUMMY, password)
        return name if ok and entry is not None else None


_DUMMY = hash_password("not a password", salt=b"\0" * 16)


def _reviewer(name: str, entry: object) -> Reviewer:
    if not name.strip() or not isinstance(entry, dict):
        raise ReviewersError(f"reviewer {name!r}: expected a table with api_key_sha256 and/or password")
    unknown = set(entry) - {"api_key_sha256", "password"}
    if unknown:
        raise ReviewersError(f"reviewer {name!r}: unknown key(s) {', '.join(sorted(unknown))}")
    key, password = entry.get("api_key_sha256"), entry.get("password")
    if key is None and password is None:
        raise ReviewersError(f"reviewer {name!r}: give api_key_sha256 or password (or both)")
    if key is not None and (not isinstance(key, str) or len(key) != 64 or not set(key.lower()) <= _HEX):
        raise ReviewersError(f"reviewer {name!r}: api_key_sha256 must be 64 hex characters")
    if password is not None:
        if not isinstance(password, str):
            raise ReviewersError(f"reviewer {name!r}: password must be a string")
        _check_password_entry(name, password)
    return Reviewer(name.strip(), bytes.fromhex(key) if key else None, password)


class Signer:
    """HMAC-SHA256 under a per-server random secret: session cookies and CSRF tokens."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    def sign(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}\n{value}".encode(), hashlib.sha256).hexdigest()

    def session(self, name: str, now: float | None = None) -> str:
        """A cookie value naming ``name`` until :data:`SESSION_SECONDS` from now."""
        body = {"n": name, "e": int((now or time.time()) + SESSION_SECONDS), "r": secrets.token_hex(8)}
        payload = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
        return f"{payload}.{self.sign('session', payload)}"

    def session_name(self, cookie: str | None, now: float | None = None) -> str | None:
        """The name in a cookie this server signed and that has not expired, else None."""
        if not cookie or "." not in cookie:
            return None
        payload, _, sig = cookie.rpartition(".")
        if not hmac.compare_digest(sig, self.sign("session", payload)):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            name, expires = str(body["n"]), float(body["e"])
        except (ValueError, KeyError, TypeError):
            return None
        return name if expires > (now or time.time()) else None


def main(argv: list[str] | None = None) -> None:
    """Print a reviewers-file entry: ``python -m scanner.review.web.auth NAME [--api-key]``."""
    import argparse
    import getpass

    parser = argparse.ArgumentParser(prog="python -m scanner.review.web.auth", description=main.__doc__)
    parser.add_argument("name")
    parser.add_argument("--api-key", action="store_true", help="make a random API key instead of a password")
    args = parser.parse_args(argv)
    print(f"[reviewers.{json.dumps(args.name)}]")
    if args.api_key:
        key = secrets.token_urlsafe(32)
        print(f'api_key_sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"')
        print(f"# the key to give {args.name} (not stored anywhere): {key}")
    else:
        print(f'password = "{hash_password(getpass.getpass(f"password for {args.name}: "))}"')


if __name__ == "__main__":
    main()
