"""StyleGAN2 generator (Karras et al. 2020) in plain PyTorch, laid out as rosinality's `g_ema`.

The module tree, parameter names and shapes match rosinality/stylegan2-pytorch, so its checkpoints load with
`strict=True`. The forward pass is split the way local editing needs it (paper §3.2):

    z --mapping--> w --styles--> {layer: σ [B, C_in]} --synthesize--> image

`styles` exposes every modulated layer's σ, the per-channel scale StyleGAN2 applies to the conv's **input**
channels; `synthesize` consumes an (edited) dict of σ. Modulation is applied to the activations rather than
folded into per-sample weights: the two are algebraically identical (the parity test compares them), and the
activation form needs one ordinary conv for a whole batch, which is what a CPU wants.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# rosinality's channel table; 64×64 and above scale with channel_multiplier.
_ROSINALITY_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
_BLUR = (1.0, 3.0, 3.0, 1.0)


def from_known_keys(cls: type, d: dict, what: str):
    """A config dataclass from a dict (a config.json, a checkpoint), refusing keys it does not know by name."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; allowed: {sorted(known)}")
    return cls(**d)


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to build a Generator; round-trips through a model folder's `config.json`."""

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channels: tuple[int, ...] | None = None  # explicit channels for 4, 8, ..., size; overrides the table
    lr_mlp: float = 0.01
    truncation: float = 0.7  # the model's default ψ
    name: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        log = math.log2(self.size) if self.size > 0 else 0.5
        if self.size < 8 or log != int(log):
            raise ValueError(f"size must be a power of two ≥ 8, got {self.size}")
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
            if len(self.channels) != int(log) - 1:
                raise ValueError(
                    f"channels lists one count per resolution 4..{self.size}: "
                    f"expected {int(log) - 1} values, got {len(self.channels)}"
                )
        elif self.size > 1024:
            raise ValueError("sizes above 1024 need an explicit channels table")

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(2**i for i in range(2, int(math.log2(self.size)) + 1))

    def channel(self, resolution: int) -> int:
        if self.channels is not None:
            return self.channels[self.resolutions.index(resolution)]
        base = _ROSINALITY_CHANNELS[resolution]
        return base * self.channel_multiplier if resolution >= 64 else base

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels) if self.channels is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        return from_known_keys(cls, d, "generator config")


def _blur_kernel(scale: float = 1.0) -> Tensor:
    k = torch.tensor(_BLUR)
    k = k[None, :] * k[:, None]
    return k / k.sum() * scale


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion, pad, then FIR-filter every channel with `kernel` [kh, kw].

    x [B, C, H, W] → [B, C, H·up + pad0 + pad1 − kh + 1, ...]. Same padding on both axes, as StyleGAN2 uses.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    # conv2d is a correlation; flipping makes it the convolution upfirdn2d defines.
    weight = kernel.flip(0, 1)[None, None].expand(c, 1, *kernel.shape).to(x.dtype)
    return F.conv2d(x, weight, groups=c)


def fused_leaky_relu(x: Tensor, bias: Tensor, slope: float = 0.2, gain: float = math.sqrt(2)) -> Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), slope) * gain


class PixelNorm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weights stored at N(0, 1/lr_mul²), scaled at run time."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ModulatedConv2d(nn.Module):
    """Modulated conv: the style σ [B, C_in] scales the input channels; demodulation renormalises outputs."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            # Transposed conv (stride 2) then a [1,3,3,1] blur with pad (1, 1), gain 4 for the zero insertion.
            self.blur = Blur(pad=(1, 1), scale=4.0)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        weight = self.weight[0] * self.scale  # [out, in, k, k]
        x = x * style[:, :, None, None]
        if self.upsample:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # ‖w'_o‖² = Σ_i σ_i² Σ_k w²_oik, so demodulation is a per-sample, per-output-channel scale.
            demod = torch.rsqrt(style.pow(2) @ weight.pow(2).sum((2, 3)).t() + 1e-8)
            x = x * demod[:, :, None, None]
        if self.upsample:
            x = self.blur(x)
        return x


class Blur(nn.Module):
    def __init__(self, pad: tuple[int, int], scale: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", _blur_kernel(scale))
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", _blur_kernel(4.0))

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=2, pad=(2, 1))


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor) -> Tensor:
        # Noise is added before the bias and the activation.
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    def __init__(self, channel: int):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, 4, 4))


class Generator(nn.Module):
    """StyleGAN2 generator. State dict: rosinality's `g_ema` keys plus `latent_avg` [style_dim]."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.style_dim = config.style_dim
        self.style = nn.Sequential(
            PixelNorm(),
            *(EqualLinear(config.style_dim, config.style_dim, lr_mul=config.lr_mlp, activation=True)
              for _ in range(config.n_mlp)),
        )
        res = config.resolutions
        self.input = ConstantInput(config.channel(4))
        self.conv1 = StyledConv(config.channel(4), config.channel(4), config.style_dim)
        self.to_rgb1 = ToRGB(config.channel(4), config.style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        self.num_layers = 2 * len(res) - 1
        for i in range(self.num_layers):
            r = res[(i + 1) // 2]
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        in_channel = config.channel(4)
        for r in res[1:]:
            out_channel = config.channel(r)
            self.convs.append(StyledConv(in_channel, out_channel, config.style_dim, upsample=True))
            self.convs.append(StyledConv(out_channel, out_channel, config.style_dim))
            self.to_rgbs.append(ToRGB(out_channel, config.style_dim))
            in_channel = out_channel
        self.n_latent = 2 * len(res)
        self.register_buffer("latent_avg", torch.zeros(config.style_dim))
        # (name, module, index into the per-layer w) in synthesis order. A toRGB shares its w index with the
        # next block's first conv, as in rosinality's forward.
        self._layers: list[tuple[str, ModulatedConv2d, int]] = [
            ("conv1", self.conv1.conv, 0), ("to_rgb1", self.to_rgb1.conv, 1)]
        for j in range(len(res) - 1):
            self._layers += [(f"convs.{2 * j}", self.convs[2 * j].conv, 2 * j + 1),
                             (f"convs.{2 * j + 1}", self.convs[2 * j + 1].conv, 2 * j + 2),
                             (f"to_rgbs.{j}", self.to_rgbs[j].conv, 2 * j + 3)]

    @property
    def style_layers(self) -> tuple[str, ...]:
        """Names of the modulated layers, in synthesis order (the keys of `styles`)."""
        return tuple(name for name, _, _ in self._layers)

    @property
    def style_dims(self) -> dict[str, int]:
        """{layer: channels of its σ}, in synthesis order: the layout of one image's point in style space."""
        return {name: conv.weight.shape[2] for name, conv, _ in self._layers}

    def mapping(self, z: Tensor) -> Tensor:
        """z [B, style_dim] → w [B, style_dim]."""
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ValueError(f"z must have shape [B, {self.style_dim}], got {list(z.shape)}")
        return self.style(z)

    def truncate(self, w: Tensor, psi: float) -> Tensor:
        """The truncation trick around `latent_avg`: ψ=1 leaves w unchanged, ψ=0 gives the average face."""
        return self.latent_avg + psi * (w - self.latent_avg)

    def styles(self, w: Tensor) -> dict[str, Tensor]:
        """w [B, style_dim] (or per-layer [B, n_latent, style_dim]) → {layer name: σ [B, C_in]}."""
        if w.ndim == 2:
            w = w[:, None].expand(-1, self.n_latent, -1)
        if w.ndim != 3 or w.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(f"w must have shape [B, {self.style_dim}] or [B, {self.n_latent}, "
                             f"{self.style_dim}], got {list(w.shape)}")
        return {name: conv.modulation(w[:, i]) for name, conv, i in self._layers}

    def seed_styles(self, seeds: Iterable[int], truncation: float) -> dict[str, Tensor]:
        """Seeds → their styles {layer: [B, C]}: each seed's z (`seed_to_z`), mapped, truncated around `latent_avg`
        (always, ψ = 1 included, so a seed's bytes never depend on the path taken)."""
        z = torch.cat([seed_to_z(s, self.style_dim) for s in seeds]).to(self.latent_avg.device)
        return self.styles(self.truncate(self.mapping(z), truncation))

    def synthesize(self, styles: dict[str, Tensor], noise: str = "const") -> Tensor:
        """{layer: σ [B, C_in]} → image [B, 3, H, W], nominally in [-1, 1].

        noise="const" uses the stored `noises.noise_N` buffers, so a target and its edit share their noise;
        "random" draws fresh noise from torch's global generator.
        """
        return self._run(styles, noise, capture=())[0]

    def layer_inputs(self, styles: dict[str, Tensor], names: Iterable[str],
                     noise: str = "const") -> dict[str, Tensor]:
        """The raw activations entering each named modulated layer: {name: [B, C_in, h, w]}."""
        return self.trace(styles, names, noise)[1]

    def trace(self, styles: dict[str, Tensor], names: Iterable[str],
              noise: str = "const") -> tuple[Tensor, dict[str, Tensor]]:
        """One synthesis pass that returns the image and the inputs of the named layers."""
        names = tuple(names)
        unknown = sorted(set(names) - set(self.style_layers))
        if unknown:
            raise ValueError(f"unknown style layers {unknown}; known: {list(self.style_layers)}")
        return self._run(styles, noise, capture=names)

    def _noise(self, i: int, like: Tensor, noise: str) -> Tensor:
        buf = getattr(self.noises, f"noise_{i}")
        if noise == "const":
            return buf
        if noise == "random":
            return torch.randn(like.shape[0], 1, *buf.shape[2:], dtype=like.dtype, device=like.device)
        raise ValueError(f'noise must be "const" or "random", got {noise!r}')

    def _run(self, styles: dict[str, Tensor], noise: str,
             capture: tuple[str, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        missing = [n for n in self.style_layers if n not in styles]
        if missing:
            raise ValueError(f"styles is missing layers {missing}")
        batch = styles["conv1"].shape[0]
        captured: dict[str, Tensor] = {}

        def grab(name: str, x: Tensor) -> None:
            if name in capture:
                captured[name] = x

        x = self.input.input.expand(batch, -1, -1, -1)
        grab("conv1", x)
        x = self.conv1(x, styles["conv1"], self._noise(0, x, noise))
        grab("to_rgb1", x)
        skip = self.to_rgb1(x, styles["to_rgb1"])
        for j, to_rgb in enumerate(self.to_rgbs):
            for k in (2 * j, 2 * j + 1):
                grab(f"convs.{k}", x)
                x = self.convs[k](x, styles[f"convs.{k}"], self._noise(k + 1, x, noise))
            grab(f"to_rgbs.{j}", x)
            skip = to_rgb(x, styles[f"to_rgbs.{j}"], skip)
        return skip, captured

    def forward(self, z: Tensor, truncation: float = 1.0, noise: str = "const") -> Tensor:
        """z → image, for training and sampling; editing goes through `styles` and `synthesize`."""
        w = self.mapping(z)
        if truncation != 1.0:
            w = self.truncate(w, truncation)
        return self.synthesize(self.styles(w), noise=noise)


def seed_to_z(seed: int, style_dim: int) -> Tensor:
    """One seed → one latent on any machine: randn(1, style_dim) from a CPU generator seeded with `seed`."""
    return torch.randn(1, style_dim, generator=torch.Generator().manual_seed(seed))
