"""Exit 0 when the local server's /health answers 200, else 1 (Docker HEALTHCHECK).

Slim images have no curl, so the image runs ``python -m serving.healthcheck``.
It imports only the standard library to stay quick.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request


def main() -> int:
    """Probe ``http://127.0.0.1:$PORT/health``."""
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
