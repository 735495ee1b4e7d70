"""The generator against an independent, literal reading of rosinality's reference forward pass.

`reference_forward` below is written from the architecture facts (fused per-sample modulated weights, grouped
convs, upfirdn by explicit zero insertion), working only from the state dict. It shares no code with
`localedit.stylegan2`, so agreement to 1e-4 means the layout and the maths both match.
"""

import hashlib
import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from localedit.stylegan2 import Generator, GeneratorConfig, seed_to_z


def _ref_kernel(gain):
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum() * gain


def _ref_upfirdn(x, kernel, up, pad0, pad1):
    b, c, h, w = x.shape
    if up > 1:
        z = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    weight = torch.flip(kernel, [0, 1]).view(1, 1, 4, 4).repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, groups=c)


def _ref_linear(sd, prefix, x, lr_mul=1.0, act=False):
    weight = sd[prefix + ".weight"]
    out = F.linear(x, weight * (lr_mul / math.sqrt(weight.shape[1])))
    bias = sd[prefix + ".bias"] * lr_mul
    if act:
        return F.leaky_relu(out + bias, 0.2) * math.sqrt(2)
    return out + bias


def _ref_modconv(sd, prefix, x, w, demodulate=True, upsample=False):
    b, cin, h, wd = x.shape
    weight = sd[prefix + ".weight"]  # [1, out, in, k, k]
    _, cout, _, k, _ = weight.shape
    style = _ref_linear(sd, prefix + ".modulation", w).view(b, 1, cin, 1, 1)
    weight = weight / math.sqrt(cin * k * k) * style
    if demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, cout, 1, 1, 1)
    x = x.reshape(1, b * cin, h, wd)
    if upsample:
        weight = weight.transpose(1, 2).reshape(b * cin, cout, k, k)
        out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
        out = out.view(b, cout, out.shape[2], out.shape[3])
        return _ref_upfirdn(out, _ref_kernel(4.0), 1, 1, 1)
    out = F.conv2d(x, weight.reshape(b * cout, cin, k, k), padding=k // 2, groups=b)
    return out.view(b, cout, h, wd)


def _ref_styled(sd, prefix, x, w, noise, upsample=False):
    out = _ref_modconv(sd, prefix + ".conv", x, w, upsample=upsample)
    out = out + sd[prefix + ".noise.weight"] * noise
    return F.leaky_relu(out + sd[prefix + ".activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)


def _ref_torgb(sd, prefix, x, w, skip):
    out = _ref_modconv(sd, prefix + ".conv", x, w, demodulate=False) + sd[prefix + ".bias"]
    if skip is not None:
        out = out + _ref_upfirdn(skip, _ref_kernel(4.0), 2, 2, 1)
    return out


def reference_forward(sd, z, n_mlp, lr_mlp=0.01, truncation=1.0):
    """rosinality's Generator([z], truncation, truncation_latent=latent_avg, randomize_noise=False)."""
    w = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        w = _ref_linear(sd, f"style.{i}", w, lr_mul=lr_mlp, act=True)
    if truncation < 1:
        w = sd["latent_avg"] + truncation * (w - sd["latent_avg"])
    noise = [sd[f"noises.noise_{i}"] for i in range(sum(k.startswith("noises.") for k in sd))]
    x = sd["input.input"].repeat(z.shape[0], 1, 1, 1)
    x = _ref_styled(sd, "conv1", x, w, noise[0])
    skip = _ref_torgb(sd, "to_rgb1", x, w, None)
    for j in range(sum(re.fullmatch(r"to_rgbs\.\d+\.bias", k) is not None for k in sd)):
        x = _ref_styled(sd, f"convs.{2 * j}", x, w, noise[2 * j + 1], upsample=True)
        x = _ref_styled(sd, f"convs.{2 * j + 1}", x, w, noise[2 * j + 2])
        skip = _ref_torgb(sd, f"to_rgbs.{j}", x, w, skip)
    return w, skip


def _randomised(config, seed=0):
    """A generator whose every parameter is non-trivial, so no term of the forward pass can hide."""
    torch.manual_seed(seed)
    g = Generator(config).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise.weight") or name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "modulation" in name else 0.0))
        g.latent_avg.copy_(torch.randn_like(g.latent_avg))
    return g


PARITY_CONFIGS = [
    GeneratorConfig(size=16, style_dim=16, n_mlp=2, channels=(16, 16, 16)),
    GeneratorConfig(size=32, style_dim=32, n_mlp=3, channels=(48, 32, 24, 8)),
    GeneratorConfig(size=64, style_dim=24, n_mlp=2, channels=(32, 32, 16, 16, 8)),
]


@pytest.mark.parametrize("config", PARITY_CONFIGS, ids=lambda c: f"size{c.size}")
@pytest.mark.parametrize("truncation", [1.0, 0.7])
def test_parity_with_reference(config, truncation, capsys):
    g = _randomised(config)
    sd = {k: v.clone() for k, v in g.state_dict().items()}
    z = torch.randn(3, config.style_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_w, ref_img = reference_forward(sd, z, config.n_mlp, truncation=truncation)
        w = g.truncate(g.mapping(z), truncation)
        styles = g.styles(w)
        img = g.synthesize(styles)
        # The style of each layer is its modulation applied to w.
        ref_style = _ref_linear(sd, "convs.2.conv.modulation", ref_w)
    diffs = {"w": (w - ref_w).abs().max(), "style": (styles["convs.2"] - ref_style).abs().max(),
             "image": (img - ref_img).abs().max()}
    with capsys.disabled():
        print(f"\n[parity] size {config.size}, channels {config.channels}, ψ {truncation}: max abs diff "
              + ", ".join(f"{k} {float(v):.1e}" for k, v in diffs.items()))
    assert img.shape == (3, 3, config.size, config.size)
    assert all(v <= 1e-4 for v in diffs.values()), diffs


def _rosinality_keys(size, n_mlp=8):
    """The g_ema key set of rosinality's Generator, enumerated from its module tree."""
    keys = [f"style.{i}.{p}" for i in range(1, n_mlp + 1) for p in ("weight", "bias")]
    keys.append("input.input")
    mod = ["conv.weight", "conv.modulation.weight", "conv.modulation.bias"]
    keys += [f"conv1.{p}" for p in mod + ["noise.weight", "activate.bias"]]
    keys += [f"to_rgb1.{p}" for p in mod + ["bias"]]
    blocks = int(math.log2(size)) - 2
    keys += [f"noises.noise_{i}" for i in range(2 * blocks + 1)]
    for j in range(blocks):
        keys += [f"convs.{2 * j}.{p}" for p in mod + ["conv.blur.kernel", "noise.weight", "activate.bias"]]
        keys += [f"convs.{2 * j + 1}.{p}" for p in mod + ["noise.weight", "activate.bias"]]
        keys += [f"to_rgbs.{j}.{p}" for p in mod + ["bias", "upsample.kernel"]]
    return keys


@pytest.mark.parametrize("size,count", [(256, 135), (1024, 171)])
def test_golden_rosinality_layout(size, count):
    with torch.device("meta"):
        g = Generator(GeneratorConfig(size=size, channel_multiplier=2))
    sd = g.state_dict()
    rosinality = {k: v for k, v in sd.items() if k != "latent_avg"}
    assert len(rosinality) == count
    assert sorted(rosinality) == sorted(_rosinality_keys(size))
    assert sd["latent_avg"].shape == (512,)
    assert sd["input.input"].shape == (1, 512, 4, 4)
    assert sd["style.8.weight"].shape == (512, 512)
    assert sd["convs.8.conv.weight"].shape == (1, 256, 512, 3, 3)  # 64 → 128: 512 in, 128·cm out
    assert sd["to_rgbs.0.conv.weight"].shape == (1, 3, 512, 1, 1)
    assert sd[f"noises.noise_{2 * (int(math.log2(size)) - 2)}"].shape == (1, 1, size, size)
    assert sd["convs.0.conv.blur.kernel"].shape == (4, 4)


def test_channel_multiplier_table():
    assert GeneratorConfig(size=256, channel_multiplier=1).channel(64) == 256
    assert GeneratorConfig(size=256, channel_multiplier=2).channel(64) == 512
    assert GeneratorConfig(size=256, channel_multiplier=2).channel(256) == 128


def test_styles_keys_and_shapes(tiny_generator, tiny_config):
    w = tiny_generator.mapping(torch.randn(2, tiny_config.style_dim))
    styles = tiny_generator.styles(w)
    assert tuple(styles) == tiny_generator.style_layers
    assert tiny_generator.style_layers[:5] == ("conv1", "to_rgb1", "convs.0", "convs.1", "to_rgbs.0")
    # A style scales the conv's *input* channels.
    assert styles["convs.0"].shape == (2, 32)
    assert styles["convs.2"].shape == (2, 32)
    assert styles["convs.4"].shape == (2, 24)
    assert styles["to_rgbs.2"].shape == (2, 16)


def test_layer_inputs_resolutions(tiny_generator, tiny_config):
    styles = tiny_generator.styles(tiny_generator.mapping(torch.randn(2, tiny_config.style_dim)))
    acts = tiny_generator.layer_inputs(styles, ["conv1", "convs.2", "convs.3", "to_rgbs.1"])
    assert acts["conv1"].shape == (2, 32, 4, 4)
    assert acts["convs.2"].shape == (2, 32, 8, 8)  # an upsampling conv reads the lower resolution
    assert acts["convs.3"].shape == (2, 24, 16, 16)
    assert acts["to_rgbs.1"].shape == (2, 24, 16, 16)
    with pytest.raises(ValueError, match="unknown style layers"):
        tiny_generator.layer_inputs(styles, ["convs.99"])


def test_bad_inputs_explain_themselves(tiny_generator):
    with pytest.raises(ValueError, match=r"z must have shape \[B, 32\]"):
        tiny_generator.mapping(torch.randn(2, 5))
    with pytest.raises(ValueError, match="noise must be"):
        tiny_generator.synthesize(tiny_generator.styles(torch.randn(1, 32)), noise="loud")
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(size=48)
    with pytest.raises(ValueError, match="unknown generator config keys"):
        GeneratorConfig.from_dict({"size": 32, "colour": 1})


def test_config_round_trip(tiny_config):
    assert GeneratorConfig.from_dict(tiny_config.to_dict()) == tiny_config


def test_const_noise_is_deterministic_and_random_noise_is_not(tiny_generator):
    styles = tiny_generator.styles(torch.randn(1, 32))
    with torch.no_grad():
        a, b = tiny_generator.synthesize(styles), tiny_generator.synthesize(styles)
        c = tiny_generator.synthesize(styles, noise="random")
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


_SEED_SCRIPT = """
import hashlib, torch
from localedit.stylegan2 import Generator, GeneratorConfig, seed_to_z
torch.manual_seed(0)
g = Generator(GeneratorConfig(size=16, style_dim=16, n_mlp=2, channels=(16, 16, 16))).eval()
with torch.no_grad():
    img = g.synthesize(g.styles(g.mapping(seed_to_z(1234, 16))))
print(hashlib.sha256(img.numpy().tobytes()).hexdigest())
"""


def test_same_seed_same_image_across_processes():
    digests = {subprocess.run([sys.executable, "-c", _SEED_SCRIPT], capture_output=True, text=True,
                              check=True).stdout.strip() for _ in range(2)}
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(size=16, style_dim=16, n_mlp=2, channels=(16, 16, 16))).eval()
    with torch.no_grad():
        img = g.synthesize(g.styles(g.mapping(seed_to_z(1234, 16))))
    digests.add(hashlib.sha256(img.numpy().tobytes()).hexdigest())
    assert len(digests) == 1
    assert not torch.equal(seed_to_z(1, 16), seed_to_z(2, 16))
