"""Avatar from views: En3D-style geometric sculpting (GS), explicit texturing (ET) and SMPL-X rigging.

Stages live in small modules, each with a typed ``Config`` dataclass; ``pipeline.build_avatar`` chains
them. Subpackages: ``geometry`` (sculpting), ``texture`` (UVs and texture), ``rig`` (labels and
skinning), ``io`` (views in, glb/OBJ out), ``eval`` (metrics, synthetic characters). See
docs/avatar.md for the views format and the stage list. Importing this package is cheap: torch is
imported by the stage modules, not here.
"""
