"""The discriminator of `train`: StyleGAN2's residual D, with equalised learning rate on every layer.

Only training needs it; a model folder holds the generator alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from localedit.stylegan2 import EqualLinear, fused_leaky_relu


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate: weights stored at N(0, 1), scaled by 1/√fan_in at run time."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, activate: bool = True,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight * self.scale, padding=self.padding)
        if self.activate:
            return fused_leaky_relu(x, self.bias)
        return x if self.bias is None else x + self.bias[None, :, None, None]


class DiscriminatorBlock(nn.Module):
    """StyleGAN2's residual D block. A 2×2 average pool before the second conv stands in for blur + stride 2:
    the same low-pass role, and that conv runs at a quarter of the pixels."""

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channel, in_channel, 3)
        self.conv1 = EqualConv2d(in_channel, out_channel, 3)
        self.skip = EqualConv2d(in_channel, out_channel, 1, activate=False, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(F.avg_pool2d(self.conv0(x), 2))
        # 1/√2 keeps the sum of two unit-variance paths at unit variance.
        return (y + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


def minibatch_stddev(x: Tensor, group: int = 4) -> Tensor:
    """Append one feature map: the mean std of the features across each group of samples (Karras et al. 2018).

    It lets D see a batch's lack of variety, the signature of mode collapse. x [B, C, H, W] → [B, C+1, H, W].
    """
    b, c, h, w = x.shape
    g = min(group, b)
    # Sample n joins group n mod (B/g), as in stylegan2-ada; repeat(g) undoes that layout.
    y = x.reshape(g, -1, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean((1, 2, 3))
    return torch.cat([x, y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)], 1)


class Discriminator(nn.Module):
    """A residual StyleGAN2 D whose channel table mirrors G's: [B, 3, size, size] → logits [B]."""

    def __init__(self, size: int, channels: Sequence[int]):
        super().__init__()
        resolutions = [2**i for i in range(2, int(math.log2(size)) + 1)]
        ch = dict(zip(resolutions, channels, strict=True))
        self.from_rgb = EqualConv2d(3, ch[size], 1)
        self.blocks = nn.Sequential(*(DiscriminatorBlock(ch[r], ch[r // 2]) for r in reversed(resolutions[1:])))
        self.final_conv = EqualConv2d(ch[4] + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activation=True), EqualLinear(ch[4], 1))

    def forward(self, image: Tensor) -> Tensor:
        x = self.blocks(self.from_rgb(image))
        x = self.final_conv(minibatch_stddev(x))
        return self.final_linear(x.flatten(1)).squeeze(1)
