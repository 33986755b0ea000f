"""Ed25519 publisher keys: a private key signs bundles, its public key is what a subscriber
trusts. Keys are PEM files written by the ``cryptography`` package; a key is named by its
fingerprint (``ed25519:`` + the first 16 hex digits of the sha256 of the raw public key), which
bundles, ``verify`` and ``list`` print so people can compare it out of band."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from scanner.exchange.errors import BAD_KEY, Refused
from scanner.util import sha256_hex


def _crypto():  # noqa: ANN202 - the serialization module
    """``cryptography`` lives in the ``sign`` extra: say how to get it instead of a traceback."""
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise Refused(BAD_KEY, "signing needs the 'cryptography' package: pip install 'meshscan[share]'") from None
    return serialization


def fingerprint(raw_public: bytes) -> str:
    """A short, stable name for a public key (raw 32 bytes)."""
    return "ed25519:" + sha256_hex(raw_public)[:16]


@dataclass(frozen=True)
class PublicKey:
    """A trusted (or merely named) publisher key."""

    raw: bytes
    path: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature over ``data``."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except InvalidSignature:
            return False
        return True


def _raw_public(key) -> bytes:  # noqa: ANN001 - an Ed25519PublicKey
    s = _crypto()
    return key.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)


def keygen(out_dir: str | os.PathLike[str], name: str = "publisher") -> tuple[Path, Path, str]:
    """Write ``NAME.key`` (private, PKCS#8 PEM, mode 0600) and ``NAME.pub`` (public, PEM) into
    ``out_dir``; refuse to overwrite an existing key (losing a private key orphans every
    subscriber). Returns the two paths and the fingerprint."""
    s = _crypto()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    private_path, public_path = root / f"{name}.key", root / f"{name}.pub"
    for p in (private_path, public_path):
        if p.exists():
            raise Refused(BAD_KEY, f"{p} exists: keygen never overwrites a key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    public = key.public_key()
    public_path.write_bytes(public.public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path, fingerprint(_raw_public(public))


def load_private(path: str | os.PathLike[str]):  # noqa: ANN201 - an Ed25519PrivateKey
    """The private key at ``path``; :class:`Refused` (``bad-key``) when it is not one."""
    s = _crypto()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = s.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise Refused(BAD_KEY, f"{path} is not a readable private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise Refused(BAD_KEY, f"{path} is not an Ed25519 private key")
    return key


def load_public(path: str | os.PathLike[str]) -> PublicKey:
    """The public key at ``path`` (PEM); :class:`Refused` (``bad-key``) when it is not one."""
    s = _crypto()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = s.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise Refused(BAD_KEY, f"{path} is not a readable public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise Refused(BAD_KEY, f"{path} is not an Ed25519 public key")
    return PublicKey(_raw_public(key), os.fspath(path))


def public_of(private) -> PublicKey:  # noqa: ANN001 - an Ed25519PrivateKey
    """The public half of a private key."""
    return PublicKey(_raw_public(private.public_key()))
