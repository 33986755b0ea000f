"""``signatures status``: one library's versions, subscribed publishers with their key
fingerprints, disabled signatures and the verified state of its audit log, as plain data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scanner.exchange.events import verify_events
from scanner.exchange.subscribe import banks, read_state
from scanner.library import SignatureLibrary


def library_status(path: str | os.PathLike[str], lib: SignatureLibrary) -> dict[str, Any]:
    """The status of the library at ``path`` (already loaded as ``lib``). A library made by
    hand has no banks and no events; a subscribed one is read through its symlink."""
    folder = Path(path).resolve()
    state = read_state(folder)
    check = verify_events(state["events"], state["disabled"])
    return {
        "library": {
            "path": str(path),
            "folder": str(folder),
            "name": lib.name,
            "library_version": lib.library_version,
            "descriptor_version": lib.descriptor_version,
            "signatures": len(lib),
            "allowlist": len(lib.allowlist),
        },
        "banks": banks(folder),
        "disabled": state["disabled"],
        "audit": {
            "events": check.events,
            "chained": check.chained,
            "head": check.head,
            "ok": check.ok,
            "problems": check.problems,
            "notes": check.notes,
            "last": state["events"][-1] if state["events"] else None,
        },
    }
