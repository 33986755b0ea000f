"""Save the web review queue's screenshots shown in the README: run the browser tests
(tests/integration/test_review_web_browser.py) with MESHSCAN_SCREENSHOTS pointing here.

    python docs/screenshots.py

Writes docs/review-queue.png, docs/review-item.png and docs/review-appeal.png (an item with an
open appeal, as the second reviewer sees it; 1280 px wide) and
docs/review-queue-phone.png (390 px), from a real scan of the demo proxies and a real server
driven by Debian's Chromium. Needs the test extra and the chromium package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent


def main() -> int:
    env = {**os.environ, "MESHSCAN_SCREENSHOTS": str(DOCS), "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="meshscan-demo-") as base:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={base}",
                   "tests/integration/test_review_web_browser.py"]  # fmt: skip
        return subprocess.call(command, cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main())
