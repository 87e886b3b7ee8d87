"""Entry point for ``python -m serving``."""

from serving.cli import main

# LitServe spawns its inference worker, which re-imports this module as
# ``__mp_main__``: the guard keeps the worker from starting a second server.
if __name__ == "__main__":
    raise SystemExit(main())
