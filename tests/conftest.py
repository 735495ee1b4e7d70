"""Shared fixtures: a tiny random generator keeps every test fast on a 2-core CPU."""

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_config():
    from localedit.stylegan2 import GeneratorConfig

    # 32x32 with a channel change between resolutions, so parity covers the channel table.
    return GeneratorConfig(size=32, style_dim=32, n_mlp=2, channels=(32, 32, 24, 16), name="tiny")


@pytest.fixture(scope="session")
def tiny_generator(tiny_config):
    from localedit.stylegan2 import Generator

    torch.manual_seed(0)
    g = Generator(tiny_config).eval()
    with torch.no_grad():
        # A random latent_avg, so truncation is exercised against a non-zero centre.
        g.latent_avg.copy_(torch.randn_like(g.latent_avg) * 0.1)
        # Non-zero noise strengths, so the noise path is exercised.
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.1)
    return g


@pytest.fixture(scope="session")
def tiny_catalog(tiny_generator):
    """A catalog of the tiny generator with two labelled parts; K=4 on convs.2's 8×8 input."""
    from localedit.catalog import build_catalog

    catalog = build_catalog(tiny_generator, "convs.2", 4, n_samples=12, progress=False)
    return catalog.with_parts({"eyes": [0], "mouth": [1, 2]}, epsilon={"eyes": 30.0, "mouth": 10.0})
