"""CSRF protection of the review forms: a signed double-submit token.

Every browser gets a random nonce in an ``HttpOnly``, ``SameSite=Strict`` cookie; every form
carries ``HMAC(server secret, nonce)`` in a hidden field. A POST is accepted only when the field
is the HMAC of the cookie's nonce: another site can neither read the cookie nor compute the
token, and a token lifted from one browser is useless without that browser's cookie. Requests
authenticated with ``Authorization: Bearer KEY`` carry no cookie a browser would send on its
own, so they need no token.
"""

from __future__ import annotations

import hmac
import secrets

from scanner.review.web.auth import Signer

CSRF_COOKIE = "meshscan_review_csrf"
CSRF_FIELD = "csrf"


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def token_for(signer: Signer, nonce: str) -> str:
    """The form token that goes with a browser's nonce."""
    return signer.sign("csrf", nonce)


def valid(signer: Signer, nonce: str | None, token: object) -> bool:
    """Is ``token`` (a form field) the token of ``nonce`` (the cookie)?"""
    if not nonce or not isinstance(token, str) or not token:
        return False
    return hmac.compare_digest(token, token_for(signer, nonce))
