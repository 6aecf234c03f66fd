"""Consistent multi-view synthesis of a posed SMPL-X body (docs/generate.md): condition images,
sliding-window cross-frame attention, the ControlNet pipeline over K views, masks and the views
format. Imports diffusers/transformers lazily through its modules; this package file imports nothing.
"""
