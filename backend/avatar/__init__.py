"""Avatar from views: En3D-style geometric sculpting (GS), explicit texturing (ET) and SMPL-X rigging.

Stages live in small modules, each with a typed ``Config`` dataclass; ``pipeline.run_pipeline`` chains
them. See docs/avatar.md for the views format and the stage list. Importing this package is cheap:
torch is imported by the stage modules, not here.
"""
