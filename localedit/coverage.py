"""The coverage loss: implicit maximum likelihood estimation (IMLE; Li & Malik 2018) beside the GAN loss.

A GAN trained on little compute keeps what its discriminator is quick to notice and drops the rest: on the
procedural faces it renders the hair, skin and clothes in all their colours, but the iris and lip colours of only a
fraction of its data's pairs (the `color_variety` of `evaluate`). Local editing can only move a part's look when
the samples vary in it. IMLE is the counterweight: for each real face, the nearest of a pool of generated samples
is pulled towards it, so no face of the data is left without a sample near it. The discriminator keeps the samples
sharp; this term keeps them varied.

The pool is drawn afresh every few steps and compared at a low resolution, which decides which sample is nearest
cheaply. The pull is a pixel MSE, weighted up on the small parts (eyes, brows, nose, mouth) by the real faces' own
labels, since an iris is a handful of pixels in a 64 px face and would otherwise weigh almost nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from localedit.stylegan2 import Generator

SMALL_PARTS = ("eyes", "eyebrows", "nose", "mouth")
FEATURE_SIZE = 16  # the resolution the nearest sample is chosen at


def features(images: Tensor) -> Tensor:
    """[B, 3, H, W] in [-1, 1] → [B, 3·16·16]: the picture box-filtered to FEATURE_SIZE, for nearest-sample search."""
    return F.adaptive_avg_pool2d(images.float(), FEATURE_SIZE).flatten(1)


def pixel_weights(labels: Tensor, part_weight: float) -> Tensor:
    """labels [B, H, W] (localedit.faces.PARTS indices) → weights [B, 1, H, W]: `part_weight` on SMALL_PARTS, 1
    elsewhere."""
    from localedit.faces import PARTS

    small = torch.zeros(len(PARTS), dtype=torch.bool, device=labels.device)
    small[[PARTS.index(p) for p in SMALL_PARTS]] = True
    return torch.where(small[labels.long()], part_weight, 1.0)[:, None].float()


def nearest(pool: Tensor, queries: Tensor) -> Tensor:
    """Index into `pool` [P, D] of the nearest row to each of `queries` [B, D] (Euclidean): [B] long."""
    return torch.cdist(queries, pool).argmin(1)


def weighted_mse(fake: Tensor, real: Tensor, weights: Tensor) -> Tensor:
    """Σ w·(fake − real)² / Σ w over the batch: a mean squared error whose small parts count `part_weight`-fold."""
    weights = weights.expand_as(real)
    return ((fake.float() - real.float()).square() * weights).sum() / weights.sum()


class SamplePool:
    """`size` generated samples, drawn afresh by `refresh`, kept as their z and their low-resolution features."""

    def __init__(self, size: int, style_dim: int):
        self.size, self.style_dim = size, style_dim
        self.z: Tensor | None = None
        self.features: Tensor | None = None

    @torch.no_grad()
    def refresh(self, g: Generator, chunk: int = 128) -> None:
        device = g.latent_avg.device
        self.z = torch.randn(self.size, self.style_dim, device=device)
        feats = []
        for zc in self.z.split(chunk):
            feats.append(features(g.synthesize(g.styles(g.mapping(zc)), noise="const")))
        self.features = torch.cat(feats)

    def nearest_z(self, real: Tensor) -> Tensor:
        """For each real face [B, 3, H, W], the z of the pool sample nearest to it: [B, style_dim]."""
        if self.z is None or self.features is None:
            raise RuntimeError("the pool is empty: call refresh() first")
        return self.z[nearest(self.features, features(real))]


def coverage_loss(g: Generator, pool: SamplePool, real: Tensor, weights: Tensor) -> Tensor:
    """The IMLE term for a batch of real faces: the weighted MSE between each and its nearest pool sample, rendered
    again with gradients (through the mapping too, so the sampling distribution moves as well as the renderer)."""
    z = pool.nearest_z(real)
    fake = g.synthesize(g.styles(g.mapping(z)), noise="const")
    return weighted_mse(fake, real, weights)
