"""The web review queue: server-rendered pages over one results database, for review teams.

* :mod:`~scanner.review.web.app` - the routes (:func:`review_router`), the standalone app of
  ``meshscan review DB --web`` (:func:`create_review_app`) and its settings;
* :mod:`~scanner.review.web.auth` - the reviewers file, passwords, API keys, signed sessions;
* :mod:`~scanner.review.web.csrf` - the CSRF token every form carries;
* ``templates/`` - the pages (Jinja, inline CSS, no scripts, no external assets).

Needs the serve extra (FastAPI, uvicorn, python-multipart, Jinja2).
"""
