"""Explicit texturing (ET): semantic UV unwrap, atlas packing, UV-space raster, texture fit and fill."""
