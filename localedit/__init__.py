"""localedit: local semantic editing of StyleGAN2 images ("Editing in Style", Collins et al., CVPR 2020)."""

from localedit.stylegan2 import Generator, GeneratorConfig, seed_to_z

__all__ = ["Generator", "GeneratorConfig", "seed_to_z"]
