"""``meshscan serve``: the scanner as an HTTP service (FastAPI, run by uvicorn).

Needs the ``serve`` extra (``pip install 'meshscan[serve]'``). The app factory is
:func:`scanner.serve.app.create_app`; the command is ``scanner/cli/serve_cmd.py``.
"""
