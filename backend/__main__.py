"""``python -m backend ...``: the same command line as the ``avatar-studio`` console script."""

from backend.cli import main

# The guard matters: worker processes are started with multiprocessing's "spawn" method, which
# imports this module again (as __mp_main__) in every child.
if __name__ == "__main__":
    raise SystemExit(main())
