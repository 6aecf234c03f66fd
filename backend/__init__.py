"""avatar-studio compute backend: job server, body model, rasterizers and pipelines.

Never imports ``bpy``. Works in the protocol's conventions throughout (see docs/protocol.md,
"Coordinate conventions"): world is right-handed, Y up, metres (SMPL-X's own frame); cameras are
OpenCV-style (x right, y down, looking down +z).
"""

__version__ = "0.1.0"
