"""Body preview pipeline: pose the body with a motion, render it through a camera path, write files.

``pipeline.render_preview`` (PNG sequences per pass, an mp4, 2D keypoints), ``openpose`` (pose
conditioning images), ``video`` (PNG/mp4 encoding). Built on ``backend.body`` and the rasterizer
core ``backend.render``; used by the ``body.preview`` job and ``avatar-studio preview``.
"""
