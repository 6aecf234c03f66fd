"""Evaluation metrics over folders of images, for ``avatar-studio eval`` and ``bench/`` (docs/eval.md).

Modules, one job each: :mod:`.images` (reading and pairing image / mask / normal folders, bounded
and checked), :mod:`.paired` (PSNR / SSIM / LPIPS between paired folders, masks optional),
:mod:`.normals` (angular error of normal maps against ground truth), :mod:`.generative` (FID / KID /
IS-360 through the ``inception`` role, CLIP identity consistency through the ``clip`` role).
The formulas of FID/KID/identity are :mod:`backend.threedgm.metrics`' (torch-fidelity's own).
"""
