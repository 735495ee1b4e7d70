"""CIELAB squared-error maps and In/Out MSE, the locality measures of the paper (§4.3, Appendix B).

Appendix B computes the "diff" between an edit and its target in CIELAB, where Euclidean distance tracks
perceived colour difference (ΔE*76). The conversion is the standard one: sRGB with its piecewise transfer
curve → linear RGB → CIE XYZ (sRGB primaries, D65 white) → L*a*b* with the 6/29 knee.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

# Linear sRGB → XYZ, rows X, Y, Z (IEC 61966-2-1 primaries, D65 white).
_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
_DELTA = 6.0 / 29.0


def _check_images(images: Tensor, name: str) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must have shape [B, 3, H, W], got {list(images.shape)}")


def srgb_to_lab(images: Tensor) -> Tensor:
    """Generator images [B, 3, H, W] in [-1, 1] → CIELAB [B, 3, H, W] (L in [0, 100], D65 white).

    Values outside [-1, 1] are clipped first: the measure is about the image a user sees, which is clipped.
    Every edit converts its image, so the steps are few: two matrix products and the two curves.
    """
    _check_images(images, "images")
    dtype = images.dtype if images.is_floating_point() else torch.float32
    rgb = images.to(dtype).add(1).div_(2).clamp_(0, 1)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, rgb.add(0.055).div_(1.055).pow_(2.4))
    to_xyz, to_lab, offset = _matrices(dtype, images.device)
    t = torch.matmul(to_xyz, linear.flatten(2))  # [B, 3, H·W], XYZ relative to the white point
    # Cube root above the knee, the linear segment below it (avoids the infinite slope at 0).
    f = torch.where(t > _DELTA**3, t.clamp_min(_DELTA**3).pow_(1 / 3), t / (3 * _DELTA**2) + 4 / 29)
    return (torch.matmul(to_lab, f) + offset).view(images.shape)


@functools.lru_cache(maxsize=8)
def _matrices(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(linear RGB → XYZ ÷ white, f(X, Y, Z) → L*a*b*, the L* offset as a column)."""
    rgb_to_xyz = torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)
    # The white point is the matrix applied to RGB = (1, 1, 1); dividing each row by it puts white at t = 1.
    to_xyz = rgb_to_xyz / rgb_to_xyz.sum(dim=1, keepdim=True)
    # L* = 116 f(Y) − 16, a* = 500 (f(X) − f(Y)), b* = 200 (f(Y) − f(Z)).
    to_lab = torch.tensor([[0.0, 116, 0], [500, -500, 0], [0, 200, -200]], dtype=torch.float64)
    offset = torch.tensor([[-16.0], [0], [0]], dtype=torch.float64)
    # Cached for every later call, so never inference tensors: a first call under inference_mode (evaluate) must
    # not stop a later one under autograd (training's colour losses) from saving them for backward.
    with torch.inference_mode(False):
        return tuple(m.to(dtype=dtype, device=device).clone() for m in (to_xyz, to_lab, offset))


def squared_error_map(a: Tensor, b: Tensor) -> Tensor:
    """Two generator images [B, 3, H, W] in [-1, 1] → per-pixel squared CIELAB distance (ΔE*76)² [B, H, W]."""
    _check_images(a, "a")
    _check_images(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    return (srgb_to_lab(a) - srgb_to_lab(b)).square().sum(dim=1)


def in_out_mse(err_map: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean of an error map inside and outside a region: err_map [B, H, W], mask [B, H, W] bool.

    Returns (in_mse [B], out_mse [B]). A side with no pixels (an empty or full mask) reports 0, so the numbers
    stay finite and can be averaged over a batch; callers that need to tell "no pixels" apart check the mask.
    """
    if err_map.ndim != 3:
        raise ValueError(f"err_map must have shape [B, H, W], got {list(err_map.shape)}")
    if mask.shape != err_map.shape:
        raise ValueError(f"mask must have the error map's shape {list(err_map.shape)}, got {list(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    inside = mask.flatten(1).to(err_map.dtype)
    err = err_map.flatten(1)
    n_in = inside.sum(dim=1)
    n_out = err.shape[1] - n_in
    sum_in = (err * inside).sum(dim=1)  # 0 exactly when the mask is empty, so in_mse is 0 then
    sum_out = err.sum(dim=1) - sum_in
    in_mse = sum_in / n_in.clamp_min(1)
    out_mse = torch.where(n_out > 0, sum_out / n_out.clamp_min(1), 0.0)
    return in_mse, out_mse
