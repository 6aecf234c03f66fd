"""Files in and out of the avatar pipeline: the views format, glb and OBJ export, split-vertex meshes."""
