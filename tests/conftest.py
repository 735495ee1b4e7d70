"""Shared fixtures: a tiny random generator keeps every test fast on a 2-core CPU.

The Hub settings below are made at import, before anything imports huggingface_hub (gradio does too): it reads
HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when imported. Every test talks to the fake Hub on 127.0.0.1
(tests/fakehub.py) and caches into a throwaway folder, never to the real Hub or the user's cache.
"""

import atexit
import os
import shutil
import socket
import tempfile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKE_HUB_PORT = _free_port()
_HF_HOME = tempfile.mkdtemp(prefix="localedit-tests-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ.update(
    HF_ENDPOINT=f"http://127.0.0.1:{FAKE_HUB_PORT}",
    HF_HOME=_HF_HOME,
    HF_HUB_CACHE=os.path.join(_HF_HOME, "hub"),
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_HUB_DISABLE_PROGRESS_BARS="1",
    HF_HUB_DISABLE_XET="1",  # the fake Hub serves plain HTTP files, as the Hub does for non-Xet repos
)
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
    os.environ.pop(_name, None)

import pytest  # noqa: E402  (after the environment above, on purpose)
import torch  # noqa: E402

# The test models are tiny: with two threads, synchronisation dominates each op, and on a busy 2-core machine a
# 32×32 forward pass measured 0.5 s against 2 ms single-threaded.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fake_hub():
    """The fake Hub, serving on HF_ENDPOINT for the whole session; tests use their own repo names."""
    from fakehub import FakeHub

    hub = FakeHub()
    hub.start(FAKE_HUB_PORT)
    yield hub
    hub.stop()


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
