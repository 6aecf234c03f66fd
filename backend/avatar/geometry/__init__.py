"""Geometric sculpting (GS): the DMTet field, its tet grid, marching tets and the body SDF it starts from."""
