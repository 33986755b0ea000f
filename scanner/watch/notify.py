"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``) without a dependency: one
datagram per message to ``$NOTIFY_SOCKET``. Outside systemd (no socket) every call is a no-op.

The daemon says ``READY=1`` once it watches and has reconciled, and ``WATCHDOG=1`` only while it
is healthy by ``scanner.watch.health`` (every root watched, no file waiting past
``--stuck-after``): a daemon that is stuck, or blind, stops pinging and systemd restarts it after
``WatchdogSec``. Stuck actions alone keep the ping (a restart cannot make a quarantine folder
writable); they show on ``/healthz`` and ``meshscan watch-health``."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd; False when not run by it or on error."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True
