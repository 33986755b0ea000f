"""Where a banked signature came from, written into its ``source`` field and read back.

``signatures update`` records each signature it imports with the source
``bank <publisher> (<key fingerprint>)`` (then ``: <the publisher's own source>`` when it had
one). The text travels with the signature wherever the library goes (a merge, a re-export),
so a match can always say whose signature matched - :mod:`scanner.matching` reads it back here.
"""

from __future__ import annotations

import re

_BANK = re.compile(r"bank (?P<publisher>.+?) \((?P<key>ed25519:[0-9a-f]{16})\)(?::|$)")


def bank_source(publisher: str, key: str, original: str = "") -> str:
    """The ``source`` of a signature imported from ``publisher``'s bank signed by ``key``."""
    return f"bank {publisher} ({key})" + (f": {original}" if original else "")


def bank_of(source: str) -> tuple[str, str] | None:
    """(publisher, key fingerprint) of a banked signature's ``source``; None for one enrolled
    locally. When a bank re-publishes another's signature, the outer (nearest) bank is named."""
    found = _BANK.match(source or "")
    return (found["publisher"], found["key"]) if found else None
