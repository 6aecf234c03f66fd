"""The protocol <-> Blender world axes in the add-on's words; the convention itself is
``protocol/axes.py`` (docs/protocol.md "Coordinate conventions"), shared with the backend.

protocol world: right-handed, Y up, metres. Blender world: right-handed, Z up, metres.
A Blender point (x, y, z) is the protocol point (x, z, -y).
"""

from __future__ import annotations

from .wire import axes as _axes

# C: protocol coordinates -> Blender coordinates (a rotation; its transpose goes the other way).
BLENDER_FROM_PROTOCOL = _axes.Z_UP_FROM_Y_UP
PROTOCOL_FROM_BLENDER = _axes.Y_UP_FROM_Z_UP
to_blender = _axes.y_up_to_z_up  # (..., 3) protocol points or directions -> Blender
to_protocol = _axes.z_up_to_y_up  # (..., 3) Blender points or directions -> protocol
