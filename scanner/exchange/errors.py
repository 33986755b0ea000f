"""Why a bundle or an update is refused: one reason code per cause, so that a cron job or a
dashboard can tell a tampered bundle from a stale one without reading prose."""

from __future__ import annotations

from typing import Final

from scanner.errors import MeshscanError

UNSIGNED: Final = "unsigned"
"""The bundle carries no signature."""
UNTRUSTED_KEY: Final = "untrusted-key"
"""Signed, but by a key not among the trusted ones."""
BAD_SIGNATURE: Final = "bad-signature"
"""The signature does not verify: the bundle was modified after signing (tampered)."""
MALFORMED: Final = "malformed"
"""Not a meshscan bundle, or cut short (a truncated download)."""
FORMAT_VERSION: Final = "format-version"
"""A bundle format this scanner does not read."""
DESCRIPTOR_VERSION: Final = "descriptor-version"
"""Records built with another descriptor version: they cannot be compared with this scanner's."""
ROLLBACK: Final = "rollback"
"""Older than what the library already holds from this publisher."""
VERSION_CONFLICT: Final = "version-conflict"
"""Same version number as the one held, different content (a publisher error or a replay)."""
TOO_LARGE: Final = "too-large"
"""Bigger than the download cap."""
FETCH_FAILED: Final = "fetch-failed"
"""The source could not be read."""
BAD_KEY: Final = "bad-key"
"""A key file that is not an Ed25519 key of the expected kind."""
UNMANAGED_LIBRARY: Final = "unmanaged-library"
"""``update`` swaps libraries it created itself; a hand-made folder is not replaced."""
BUSY: Final = "busy"
"""Another ``update``, ``disable`` or ``enable`` of the same library held its lock too long."""

REASONS: Final = frozenset(
    {
        UNSIGNED,
        UNTRUSTED_KEY,
        BAD_SIGNATURE,
        MALFORMED,
        FORMAT_VERSION,
        DESCRIPTOR_VERSION,
        ROLLBACK,
        VERSION_CONFLICT,
        TOO_LARGE,
        FETCH_FAILED,
        BAD_KEY,
        UNMANAGED_LIBRARY,
        BUSY,
    }
)


class Refused(MeshscanError):
    """A bundle, key or update refused, with its reason code (one of :data:`REASONS`)."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        self.reason = reason
        super().__init__(f"[{reason}] {message}")
