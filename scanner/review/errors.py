"""The one error of human review, shared by the queue, the audit log and the library actions."""

from __future__ import annotations

from scanner.errors import MeshscanError


class ReviewError(MeshscanError):
    """A review request that cannot be carried out; ``code`` is a stable reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
