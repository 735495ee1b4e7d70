"""The coverage loss (IMLE): nearest-sample search, the part weights, and its pull on a tiny generator."""

import pytest
import torch

from localedit.coverage import SamplePool, coverage_loss, features, nearest, pixel_weights, weighted_mse
from localedit.faces import PARTS
from localedit.stylegan2 import Generator, GeneratorConfig


def _tiny() -> Generator:
    torch.manual_seed(0)
    return Generator(GeneratorConfig(size=16, style_dim=16, n_mlp=2, channels=(16, 16, 8)))


def test_nearest_is_the_closest_row():
    pool = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    queries = torch.tensor([[9.0, 1.0], [1.0, 8.0], [0.5, 0.5], [10.0, 0.1]])
    assert nearest(pool, queries).tolist() == [1, 2, 0, 1]


def test_pixel_weights_weigh_only_the_small_parts():
    labels = torch.tensor([[[PARTS.index(p) for p in ("eyes", "hair", "mouth", "skin")]]])
    weights = pixel_weights(labels, 10.0)
    assert weights.shape == (1, 1, 1, 4)
    assert weights.flatten().tolist() == [10.0, 1.0, 10.0, 1.0]


def test_weighted_mse():
    fake, real = torch.zeros(1, 3, 1, 2), torch.ones(1, 3, 1, 2)
    real[..., 1] = 3.0  # squared errors 1 and 9 per channel
    assert weighted_mse(fake, real, torch.ones(1, 1, 1, 2)).item() == pytest.approx(5.0)
    assert weighted_mse(fake, real, torch.tensor([[[[3.0, 1.0]]]])).item() == pytest.approx((3 + 9) / 4)


def test_pool_answers_its_own_samples():
    g = _tiny()
    pool = SamplePool(8, 16)
    with pytest.raises(RuntimeError, match="refresh"):
        pool.nearest_z(torch.zeros(1, 3, 16, 16))
    pool.refresh(g, chunk=3)
    with torch.no_grad():
        images = g.synthesize(g.styles(g.mapping(pool.z[[5, 2]])))
    # A pool sample is its own nearest neighbour.
    assert torch.equal(pool.nearest_z(images), pool.z[[5, 2]])
    assert pool.features.shape == (8, 3 * 16 * 16) and torch.equal(features(images), pool.features[[5, 2]])


def test_coverage_steps_bring_the_nearest_sample_closer():
    g = _tiny()
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    weights = torch.ones(4, 1, 16, 16)
    pool = SamplePool(16, 16)
    pool.refresh(g)
    opt = torch.optim.Adam(g.parameters(), lr=0.01)
    before = coverage_loss(g, pool, real, weights).item()
    for _ in range(20):
        opt.zero_grad()
        coverage_loss(g, pool, real, weights).backward()
        opt.step()
    assert coverage_loss(g, pool, real, weights).item() < 0.8 * before
