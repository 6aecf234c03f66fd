"""Triangle-mesh utilities shared by body/, render/ and avatar/: normals, adjacency, closest points.

One home for each: ``normals`` (face and vertex normals, numpy and torch), ``adjacency`` (vertex
adjacency and diffusion over it), ``closest`` (exact closest points and signed distance).
"""
