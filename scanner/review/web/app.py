"""The web review queue: server-rendered pages over one results database.

:func:`review_router` builds the routes (under ``prefix``, ``/review`` by default) that
``meshscan review DB --web`` serves alone (:func:`create_review_app`) and ``meshscan serve
--review-db DB`` mounts beside its API. Pages (HTML, Jinja templates shipped with the package,
no external assets, no JavaScript):

- ``GET  {prefix}/``                          the queue: waiting items, highest score first;
  ``?verdict=review|flag``, ``?category=C``, ``?folder=PATH-PREFIX`` filter it
- ``GET  {prefix}/items/{id}``                one item: verdict, scores, evidence, versions,
  file metadata, preview, claim and decide forms (or the decision that stands)
- ``GET  {prefix}/items/{id}/preview.png``    the stored preview (404 when none is stored)
- ``POST {prefix}/items/{id}/claim``, ``/release``, ``/decide``   forms (CSRF token required)
- ``POST {prefix}/items/{id}/appeal``         reopen the item's decision as an appeal (reason)
- ``POST {prefix}/items/{id}/decide-appeal``  record the open appeal's outcome (upheld /
  overturned, reason); refused to the contested decision's reviewer and to the appellant
- ``GET  {prefix}/login``, ``POST {prefix}/login``, ``POST {prefix}/logout``
- ``GET  {prefix}/api/items``                 the queue as JSON (``meshscan review --format json``)

Every page needs a reviewer (:mod:`scanner.review.web.auth`): a browser without a session is
sent to the login page, a request with a wrong ``Authorization`` header (or for the preview or
the JSON queue) gets 401. Decisions go through :meth:`scanner.review.store.ReviewStore.decide`,
so the web and the command line write the same audit log, under the same lock; ``by`` is the
logged-in reviewer's name. Appeals go through :meth:`~scanner.review.store.ReviewStore.appeal`
and :meth:`~scanner.review.store.ReviewStore.decide_appeal` the same way, four eyes enforced by
the store. A claim held by another reviewer (:mod:`scanner.review.claims`) blocks a decision and
an appeal's outcome. Every response carries a strict Content-Security-Policy, ``X-Frame-Options:
DENY`` and ``Referrer-Policy: no-referrer``; everything from uploads (paths, member names,
explanations) is HTML-escaped by Jinja's autoescaping.

Each request opens the database for itself (read-only for pages), so the server holds no
connection across threads and sees decisions made from the command line at once.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from scanner.review import appeals
from scanner.review.claims import DEFAULT_CLAIM_MINUTES, ClaimBook, blocked
from scanner.review.errors import ReviewError
from scanner.review.queue import REVIEWABLE, ReviewItem, label
from scanner.review.store import DECISIONS, ReviewStore
from scanner.review.web import csrf
from scanner.review.web.auth import SESSION_SECONDS, Reviewers, Signer

SESSION_COOKIE = "meshscan_review_session"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
"""On every response of the review routes. No script may run at all (``default-src 'none'``,
no ``script-src``): the pages need none, and an injected ``<script>`` from an uploaded name
would be inert even if escaping ever failed."""

STATUS = {"claimed": 409, "already-decided": 409, "not-reviewable": 409, "content-changed": 409,
          "unknown-id": 404, "bad-id": 404, "ambiguous-id": 404, "not-decided": 409, "appeal-open": 409,
          "appeal-closed": 409, "no-open-appeal": 409, "same-reviewer": 403, "same-appellant": 403}  # fmt: skip
"""HTTP status of a refused decision or appeal by reason code (anything else: 422). Four eyes
(``same-reviewer``, ``same-appellant``) is 403: this reviewer may not decide it, whoever asks."""


@dataclass
class WebSettings:
    """What one review server serves and how."""

    db: str | os.PathLike[str]
    reviewers: Reviewers
    library: str | None = None
    """The signature library that ``confirm`` + enrol and ``dismiss`` + allowlist change (None:
    decisions without library actions only)."""
    audit_log: str | None = None
    """JSONL mirror appended after each decision (``--audit-log``)."""
    claim_minutes: float = DEFAULT_CLAIM_MINUTES
    prefix: str = "/review"
    signer: Signer = field(default_factory=Signer)


class SecureRoute(APIRoute):
    """A route whose every response carries :data:`SECURITY_HEADERS`."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            response = await handler(request)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return secured


class Web:
    """The shared state of the review routes: settings, templates, identity, rendering."""

    def __init__(self, settings: WebSettings) -> None:
        self.s = settings
        self.prefix = settings.prefix.rstrip("/")
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("scanner.review.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["score"] = lambda x: "-" if x is None else f"{x:.2f}"
        self.env.filters["percent"] = lambda x: "-" if x is None else f"{x:.0%}"
        self.env.filters["when"] = when
        self.env.filters["name"] = lambda item: label(os.path.basename(item.path) or item.path, item.member)
        self.env.filters["folder"] = lambda item: os.path.dirname(item.path)

    # ------------------------------------------------------------------ identity
    def bearer(self, request: Request) -> str | None:
        """The reviewer named by a valid ``Authorization: Bearer KEY`` header, if any."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self.s.reviewers.by_api_key(key.strip())

    def who(self, request: Request) -> str | None:
        """The reviewer behind this request (API key, else session cookie), or None. A name
        removed from the reviewers file loses its session at once."""
        if "authorization" in request.headers:
            return self.bearer(request)
        name = self.s.signer.session_name(request.cookies.get(SESSION_COOKIE))
        return name if name in self.s.reviewers.by_name else None

    def unauthenticated(self, request: Request, api: bool = False) -> Response:
        if api or "authorization" in request.headers:
            return JSONResponse({"detail": "[unauthorised] log in, or send Authorization: Bearer KEY",
                                 "reason": "unauthorised"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{self.prefix}/login?{urlencode({'next': target})}", status_code=303)

    def safe_next(self, target: object) -> str:
        """Where to go after logging in: a path of this queue only (never another site)."""
        text = str(target or "")
        ok = text.startswith(self.prefix + "/") and not text.startswith("//") and "\\" not in text
        return text if ok else self.prefix + "/"

    async def form(self, request: Request, who: str | None) -> dict[str, Any] | None:
        """The posted form, or None if its CSRF token is missing or wrong (a bearer-authenticated
        request needs none)."""
        data = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if who is not None and self.bearer(request) == who:
            return data
        ok = csrf.valid(self.s.signer, request.cookies.get(csrf.CSRF_COOKIE), data.get(csrf.CSRF_FIELD))
        return data if ok else None

    # ------------------------------------------------------------------ rendering
    def render(self, request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        """A page, with the CSRF nonce cookie set if the browser has none yet."""
        nonce = request.cookies.get(csrf.CSRF_COOKIE)
        fresh = nonce is None
        nonce = nonce or csrf.new_nonce()
        html = self.env.get_template(template).render(
            prefix=self.prefix, csrf_token=csrf.token_for(self.s.signer, nonce), reviewer=ctx.pop("reviewer", None),
            **ctx,
        )  # fmt: skip
        response = HTMLResponse(html, status_code=status)
        if fresh:
            response.set_cookie(csrf.CSRF_COOKIE, nonce, httponly=True, samesite="strict", path=self.prefix or "/")
        return response

    def refused(self, request: Request, who: str | None, status: int, message: str) -> HTMLResponse:
        return self.render(request, "message.html", status=status, reviewer=who, title="Refused", message=message)

    def store(self, readonly: bool = True) -> ReviewStore:
        return ReviewStore(self.s.db, readonly=readonly)

    def claims(self, store: ReviewStore) -> ClaimBook:
        return ClaimBook(store.results, self.s.claim_minutes)


def when(stamp: object) -> str:
    """An ISO 8601 UTC time as people read it: ``2026-11-30 01:22 UTC`` (unchanged if not one)."""
    text = str(stamp or "")
    if len(text) >= 16 and text[10] == "T" and text.endswith(("+00:00", "Z")):
        return f"{text[:10]} {text[11:16]} UTC"
    return text or "-"


# ---------------------------------------------------------------------- the queue
def _category(item: ReviewItem) -> str | None:
    return item.category or item.top[0]


def queue_page(web: Web, verdict: str, category: str, folder: str) -> dict[str, Any]:
    """What the list page shows: the waiting items that pass the filters, with their claims,
    and counts of all that wait (so a filter shows what it leaves out)."""
    with web.store() as store:
        waiting = store.queue(REVIEWABLE)
        decided = len(store.decided_items())
        claims = web.claims(store).active()
        appealed = store.open_appeals()
    shown = [
        i for i in waiting
        if (not verdict or i.verdict == verdict) and (not category or _category(i) == category)
        and (not folder or i.path.startswith(folder))
    ]  # fmt: skip
    return {
        "items": [(i, claims.get(i.id)) for i in shown],
        "appeals": appealed,
        "waiting": len(waiting),
        "decided": decided,
        "by_verdict": Counter(i.verdict for i in waiting),
        "by_category": Counter(_category(i) or "none" for i in waiting),
        "filters": {"verdict": verdict, "category": category, "folder": folder},
        "label": label,
    }


def find_item(store: ReviewStore, item_ref: str) -> ReviewItem:
    """The item ``item_ref`` names among the current results; failing that, a decided item as
    its decision recorded it (an appeal is about the judged content, even when the file has
    changed or gone since, and the queue links to it)."""
    try:
        return store.find(item_ref)
    except ReviewError as exc:
        if exc.code != "unknown-id" or (full := appeals.resolve(item_ref, store.decided_items())) is None:
            raise
        return store.recorded_item(full)


def appeal_doc(history: appeals.History | None) -> dict[str, Any]:
    """An open appeal as ``meshscan review --format json`` shows it (``{"appeal": {...}}``: the
    appeal's id, who, why, when, and the contested ``decision``), or nothing."""
    if history is None or history.appeal is None or history.decision is None:
        return {}
    appeal = {k: history.appeal.get(k) for k in ("appeal_id", "by", "reason", "at")}
    contested = {k: history.decision.get(k) for k in ("decision_id", "decision", "by", "reason", "at")}
    return {"appeal": {**appeal, "decision": contested}}


def barred(history: appeals.History, who: str | None) -> str | None:
    """Why ``who`` may not decide the open appeal of ``history`` (four eyes), or None."""
    if who is None or not history.appeal_open:
        return None
    try:
        appeals.check_outcome(history, who)
    except ReviewError as exc:
        return f"{exc} [{exc.code}]"
    return None


def item_page(web: Web, item_ref: str, who: str | None = None) -> dict[str, Any]:
    """What the item page shows to ``who`` (raises :class:`ReviewError` for an unknown id)."""
    from scanner.library import CATEGORIES

    with web.store() as store:
        item = find_item(store, item_ref)
        decision = store.decision_for(item.id)
        history = store.history(item.id)
        claim = web.claims(store).holder(item.id)
        has_preview = item.sha256 is not None and store.results.preview(item.sha256) is not None
        now = store.results.row(item.path, item.member or "")
        changed = now is None or now.sha256 != item.sha256  # an appeal about content since changed or gone
        size = None if changed else store.results.size_of(item.path, item.member or "")
    rec = item.record
    return {
        "item": item,
        "label": label(item.path, item.member),
        "decision": decision,
        "history": history,
        "barred": barred(history, who),
        "outcomes": appeals.OUTCOMES,
        "claim": claim,
        "reviewable": item.verdict in REVIEWABLE,
        "has_preview": has_preview,
        "changed": changed,
        "size": size,
        "scores": sorted(item.scores.items(), key=lambda kv: -kv[1]),
        "matches": rec.get("matches") or [],
        "rec": rec,
        "categories": CATEGORIES,
        "library": web.s.library,
        "decisions": DECISIONS,
        "item_url": f"{web.prefix}/items/{quote(item.id)}",
    }


def decide(web: Web, item_ref: str, who: str, form: dict[str, str]) -> str:
    """Record the decision the form asks for, as ``who``; returns the item id. Raises
    :class:`ReviewError` when it is refused (claimed by someone else, already decided, ...)."""
    reason = form.get("reason", "").strip()
    decision = form.get("decision", "")
    if decision not in DECISIONS:
        raise ReviewError("bad-decision", "choose confirm or dismiss")
    if not reason:
        raise ReviewError("missing-reason", "a decision needs a reason: say why")
    enrol = web.s.library if form.get("enrol") == "on" else None  # with dismiss: refused by ReviewStore
    allow = web.s.library if form.get("allowlist") == "on" else None
    category = (form.get("category") or None) if enrol else None
    with web.store(readonly=False) as store:
        item = store.find(item_ref)
        claims = web.claims(store)
        held = claims.holder(item.id)
        if held is not None and held.by != who:
            raise ReviewError("claimed", blocked(held))
        outcome = store.decide(item.id, decision, who, reason, enrol_library=enrol, category=category,
                               allowlist_library=allow, mirror=web.s.audit_log)  # fmt: skip
        claims.clear(item.id)
    if outcome.mirror_error:
        raise ReviewError("mirror", f"the decision was recorded, but {outcome.mirror_error}")
    return item.id


def file_appeal(web: Web, item_ref: str, who: str, form: dict[str, str]) -> str:
    """Reopen the decision on the item as an appeal filed by ``who`` (the logged-in reviewer,
    perhaps on an uploader's behalf: their reason goes in the form); returns the item id."""
    reason = form.get("reason", "").strip()
    if not reason:
        raise ReviewError("missing-reason", "an appeal needs a reason: say why the decision is contested")
    with web.store(readonly=False) as store:
        item = find_item(store, item_ref)
        row = store.appeal(item.id, who, reason, mirror=web.s.audit_log)
    if row.get("mirror_error"):
        raise ReviewError("mirror", f"the appeal was recorded, but {row['mirror_error']}")
    return item.id


def decide_appeal(web: Web, item_ref: str, who: str, form: dict[str, str]) -> str:
    """Record the outcome of the item's open appeal, as ``who``: refused while someone else
    holds a claim on the item, and (by the store) to the contested decision's reviewer and to
    the appellant. Returns the item id."""
    outcome, reason = form.get("outcome", ""), form.get("reason", "").strip()
    if outcome not in appeals.OUTCOMES:
        raise ReviewError("bad-outcome", f"choose {' or '.join(appeals.OUTCOMES)}")
    if not reason:
        raise ReviewError("missing-reason", "an appeal's outcome needs a reason: say why")
    with web.store(readonly=False) as store:
        item = find_item(store, item_ref)
        claims = web.claims(store)
        held = claims.holder(item.id)
        if held is not None and held.by != who:
            raise ReviewError("claimed", blocked(held))
        row = store.decide_appeal(item.id, who, outcome, reason, mirror=web.s.audit_log)
        claims.clear(item.id)
    if row.get("mirror_error"):
        raise ReviewError("mirror", f"the outcome was recorded, but {row['mirror_error']}")
    return item.id


def claim_or_release(web: Web, item_ref: str, who: str, release: bool) -> str:
    """Claim (or release) an item: one waiting for a decision, or a decided one whose appeal
    is open - then only by someone who may decide the appeal (four eyes)."""
    with web.store(readonly=False) as store:
        item = find_item(store, item_ref)
        if not release and store.decision_for(item.id) is not None:
            history = store.history(item.id)
            if not history.appeal_open:
                raise ReviewError("already-decided", f"item {item.short_id} is decided: nothing to claim")
            appeals.check_outcome(history, who)
        claims = web.claims(store)
        claims.release(item.id, who) if release else claims.claim(item.id, who)
    return item.id


# ---------------------------------------------------------------------- routes
def review_router(settings: WebSettings) -> APIRouter:
    """The review pages under ``settings.prefix`` (left out of any OpenAPI schema)."""
    web = Web(settings)
    router = APIRouter(prefix=web.prefix, route_class=SecureRoute, include_in_schema=False)
    _login_routes(router, web)
    _queue_routes(router, web)
    _item_routes(router, web)
    _action_routes(router, web)
    return router


def _login_routes(router: APIRouter, web: Web) -> None:
    @router.get("/login")
    def login_form(request: Request, next: str = "") -> Response:
        return web.render(request, "login.html", next=web.safe_next(next), error=None, name="")

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await web.form(request, None)
        if form is None:
            return web.refused(request, None, 403, "The form's security token is missing or wrong: reload the "
                               "page and try again.")  # fmt: skip
        name = form.get("name", "").strip()
        who = await run_in_threadpool(web.s.reviewers.login, name, form.get("password", ""))
        target = web.safe_next(form.get("next"))
        if who is None:
            return web.render(request, "login.html", status=401, next=target, name=name,
                              error="Unknown name or wrong password.")  # fmt: skip
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, web.s.signer.session(who), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", path=web.prefix or "/")  # fmt: skip
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        who = web.who(request)
        if who is not None and await web.form(request, who) is None:
            return web.refused(request, who, 403, "The form's security token is missing or wrong.")
        response = RedirectResponse(f"{web.prefix}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=web.prefix or "/")
        return response


def _queue_routes(router: APIRouter, web: Web) -> None:
    @router.get("/")
    def queue(request: Request, verdict: str = "", category: str = "", folder: str = "") -> Response:
        who = web.who(request)
        if who is None:
            return web.unauthenticated(request)
        verdict = verdict if verdict in REVIEWABLE else ""
        return web.render(request, "queue.html", reviewer=who, **queue_page(web, verdict, category, folder))

    @router.get("/api/items")
    def api_items(request: Request) -> Response:
        who = web.who(request)
        if who is None:
            return web.unauthenticated(request, api=True)
        with web.store() as store:
            claims = web.claims(store).active()
            appealed = store.open_appeals()
            items = [
                {**i.to_dict(), **appeal_doc(appealed.get(i.id)), "claimed_by": getattr(claims.get(i.id), "by", None)}
                for i in store.queue(REVIEWABLE)
            ]
        return JSONResponse(items)


def _item_routes(router: APIRouter, web: Web) -> None:
    @router.get("/items/{item_ref}")
    def item(request: Request, item_ref: str) -> Response:
        who = web.who(request)
        if who is None:
            return web.unauthenticated(request)
        try:
            ctx = item_page(web, item_ref, who)
        except ReviewError as exc:
            return web.refused(request, who, STATUS.get(exc.code, 422), f"{exc} [{exc.code}]")
        return web.render(request, "item.html", reviewer=who, error=None, **ctx)

    @router.get("/items/{item_ref}/preview.png")
    def preview(request: Request, item_ref: str) -> Response:
        who = web.who(request)
        if who is None:
            return web.unauthenticated(request, api=True)
        try:
            with web.store() as store:
                item = store.find(item_ref)
                png = store.results.preview(item.sha256) if item.sha256 else None
        except ReviewError as exc:
            return Response(f"{exc} [{exc.code}]", status_code=404, media_type="text/plain")
        if png is None:
            return Response("no preview stored", status_code=404, media_type="text/plain")
        return Response(png, media_type="image/png")


def _action_routes(router: APIRouter, web: Web) -> None:
    async def act(request: Request, item_ref: str, work: Callable[[str, dict[str, str]], str]) -> Response:
        who = web.who(request)
        if who is None:
            return web.unauthenticated(request)
        form = await web.form(request, who)
        if form is None:
            return web.refused(request, who, 403, "The form's security token is missing or wrong: reload the "
                               "page and try again.")  # fmt: skip
        try:
            item_id = await run_in_threadpool(work, who, form)
        except ReviewError as exc:
            try:
                ctx = await run_in_threadpool(item_page, web, item_ref, who)
            except ReviewError:
                return web.refused(request, who, STATUS.get(exc.code, 422), f"{exc} [{exc.code}]")
            return web.render(request, "item.html", status=STATUS.get(exc.code, 422), reviewer=who,
                              error=f"{exc} [{exc.code}]", **ctx)  # fmt: skip
        return RedirectResponse(f"{web.prefix}/items/{quote(item_id)}", status_code=303)

    forms = {  # POST /items/{ref}/<action>: what the form does, given the reviewer and the form
        "decide": lambda ref, who, form: decide(web, ref, who, form),
        "appeal": lambda ref, who, form: file_appeal(web, ref, who, form),
        "decide-appeal": lambda ref, who, form: decide_appeal(web, ref, who, form),
        "claim": lambda ref, who, form: claim_or_release(web, ref, who, False),
        "release": lambda ref, who, form: claim_or_release(web, ref, who, True),
    }

    def form_route(do: Callable) -> Callable:
        async def route(request: Request, item_ref: str) -> Response:
            return await act(request, item_ref, lambda who, form: do(item_ref, who, form))

        return route

    for action, do in forms.items():
        router.add_api_route(f"/items/{{item_ref}}/{action}", form_route(do), methods=["POST"],
                             name=f"{action.replace('-', '_')}_route")  # fmt: skip


def create_review_app(settings: WebSettings) -> FastAPI:
    """The review queue on its own (``meshscan review DB --web``): ``/`` leads to it."""
    app = FastAPI(title="meshscan review", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(review_router(settings))
    prefix = settings.prefix.rstrip("/")

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse(f"{prefix}/", status_code=303)

    return app
