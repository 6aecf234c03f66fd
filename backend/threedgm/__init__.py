"""En3D's 3D generative model (3DGM, issue 14): a triplane avatar GAN trained on rendered clips.

Modules, one job each (docs/threedgm.md): :mod:`.config` (tiny / base), :mod:`.dataset` (clips ->
items), :mod:`.body` (posed body, skinning for the warp), :mod:`.warp` (inverse LBS),
:mod:`.triplane` (mapping + synthesis + plane sampling + decoder), :mod:`.volume` (rays and volume
rendering), :mod:`.patches` (patch-composed rendering), :mod:`.generator`, :mod:`.discriminator`,
:mod:`.train` (the GAN loop, checkpoints, resume), :mod:`.evaluate` (FID hook, sample sheets),
:mod:`.metrics` (FID / KID / PSNR / SSIM / ID).
"""
