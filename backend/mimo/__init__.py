"""The neural insertion route (MIMO, CVPR 2025) in diffusers terms: a library the ``footage.insert``
job imports lazily when ``route == "neural"`` (docs/mimo.md).

- :mod:`.config`: :class:`NeuralConfig` (steps, seed, windows, guidance, scheduler, size).
- :mod:`.windows`: overlapping frame windows and the blend weights at their seams.
- :mod:`.motion_code`: SMPL-X vertices carrying learned latent codes, rasterised per frame.
- :mod:`.reference`: reference attention (identity features of the reference UNet injected into the
  denoising UNet's self-attention).
- :mod:`.network`: the composed decoder (:class:`MimoNet`) and loading it from the model registry.
- :mod:`.pipeline`: :func:`insert_neural`, the public entry point.
- :mod:`.data`, :mod:`.train`: training clips from ``clips.render`` datasets; the training loop.

Nothing here imports the server or the jobs layer; torch is imported by these modules, so the server
never imports this package.
"""
