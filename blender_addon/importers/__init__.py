"""Importers: job results -> Blender data. One module per result kind; each takes plain numpy
arrays, the job's ``data`` dict and downloaded files, so it can be tested without a backend."""

from __future__ import annotations
