"""SMPL-X skeleton facts the add-on needs without the backend: joint order, parents, and how the
pose vector is split into the payload's named fields (docs/protocol.md, "SMPL-X parameters").

The importer names bones after the joint names the backend sends and stores each bone's joint
index in the bone's ``smplx_joint`` custom property; the exporter reads that property, so renamed
bones still export correctly. These tables are the fallback for rigs without the property.
"""

from __future__ import annotations

from .wire import smplx as _smplx

# The joint tree and the payload's pose layout are shared with the backend through the protocol.
NUM_JOINTS = _smplx.NUM_JOINTS
JOINT_NAMES: tuple[str, ...] = _smplx.JOINT_NAMES
PARENTS: tuple[int, ...] = _smplx.PARENTS
# Payload field -> (first joint, number of joints), in joint order. Together they cover 0..54.
POSE_FIELDS: tuple[tuple[str, int, int], ...] = _smplx.POSE_FIELDS

JOINT_PROPERTY = "smplx_joint"
