"""localedit: local semantic editing of StyleGAN2 images ("Editing in Style", Collins et al., CVPR 2020)."""

from localedit.catalog import Catalog, build_catalog
from localedit.edit import Editor, EditParams, EditResult, Latent, Query
from localedit.hub import Model, ModelNotFoundError, load_model
from localedit.parts import Part
from localedit.stylegan2 import Generator, GeneratorConfig, seed_to_z

__all__ = ["Catalog", "Part", "build_catalog", "Editor", "EditParams", "EditResult", "Latent", "Query", "Model",
           "ModelNotFoundError", "load_model", "Generator", "GeneratorConfig", "seed_to_z"]
