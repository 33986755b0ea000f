"""Is the daemon healthy? One decision, taken by the daemon's once-a-second housekeeping and
read by everything that asks: the systemd watchdog ping, ``/healthz`` on the metrics port,
and ``meshscan watch --healthcheck`` (a container's HEALTHCHECK, which asks ``/healthz``).

Unhealthy, with one reason each:

- ``root_down``: a watched folder is gone (or replaced and not yet watched again): files put
  there are not seen;
- ``queue_stuck``: the oldest file waiting for its verdict has waited longer than
  ``stuck_after`` seconds;
- ``actions_stuck``: an action (quarantine, command) has been pending longer than
  ``actions_stuck_after`` seconds - it keeps failing (a quarantine folder not writable, a
  command that fails): the flagged file stays where it was uploaded.

The systemd watchdog is fed while there is no ``root_down`` or ``queue_stuck``: a restart can
cure a blind or wedged daemon, but not a quarantine folder someone must fix - restarting for
that would only stop the scanning too (``Health.restart_helps``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

ROOT_DOWN, QUEUE_STUCK, ACTIONS_STUCK = "root_down", "queue_stuck", "actions_stuck"
RESTART_HELPS = (ROOT_DOWN, QUEUE_STUCK)


@dataclass(frozen=True)
class Health:
    reasons: tuple[dict, ...] = ()
    checked_at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def restart_helps(self) -> bool:
        """Whether the systemd watchdog should stop being fed (see the module docstring)."""
        return any(r["reason"] in RESTART_HELPS for r in self.reasons)

    def to_json(self) -> str:
        """The body of ``/healthz``."""
        return json.dumps({"healthy": self.ok, "checked_at": round(self.checked_at, 3), "reasons": list(self.reasons)})


STARTING = Health(({"reason": "starting", "detail": "the daemon has not checked its folders yet"},))
"""Before the first housekeeping: not healthy yet (a container is not ready before that)."""


def assess(
    roots_up: dict[str, bool],
    oldest_pending: float,
    actions: dict[str, tuple[int, float | None]],
    stuck_after: float,
    actions_stuck_after: float,
    now: float | None = None,
) -> Health:
    """The health from what housekeeping measured: each root's state, the oldest waiting file's
    age in seconds, and ``{kind: (pending count, oldest creation time)}`` of the actions."""
    now = time.time() if now is None else now
    reasons: list[dict] = [
        {"reason": ROOT_DOWN, "root": root, "detail": "watched folder gone; files put there are not seen"}
        for root, up in roots_up.items()
        if not up
    ]
    if oldest_pending >= stuck_after:
        reasons.append({"reason": QUEUE_STUCK, "oldest_pending_seconds": round(oldest_pending, 1),
                        "bound_seconds": stuck_after})  # fmt: skip
    for kind, (count, oldest) in sorted(actions.items()):
        if count and oldest is not None and now - oldest >= actions_stuck_after:
            age = round(now - oldest, 1)
            reasons.append({"reason": ACTIONS_STUCK, "kind": kind, "pending": count, "oldest_seconds": age,
                            "bound_seconds": actions_stuck_after})  # fmt: skip
    return Health(tuple(reasons), now)


def probe(host: str, port: int, timeout: float = 5.0) -> tuple[bool, str]:
    """Ask a running daemon's ``/healthz`` (``meshscan watch --healthcheck``): whether it is
    healthy, and what it said (its JSON, or why no answer came - which is unhealthy too)."""
    import urllib.error
    import urllib.request

    if host in ("", "0.0.0.0"):  # noqa: S104 - bound to every address: ask the local one
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    url = f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - an http URL we built
            return resp.status == 200, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, json.dumps({"healthy": False, "reasons": [{"reason": "no_answer", "url": url,
                                                                 "detail": str(reason)}]})  # fmt: skip
