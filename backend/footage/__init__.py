"""Footage: insert a character into shot footage (issue 13; docs/footage.md). Reading the shot
(:mod:`.source`), lifting it into layers, the exact 3D compositing route; the neural route is
:mod:`backend.mimo`."""
