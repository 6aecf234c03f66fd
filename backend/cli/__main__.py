"""``python -m backend.cli ...``: the same as ``python -m backend`` (the module ran as a script before
it became a package)."""

from backend.cli import main

# Guarded like backend/__main__.py: spawned worker processes import this module again.
if __name__ == "__main__":
    raise SystemExit(main())
