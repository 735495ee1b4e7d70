"""CIELAB conversion against published reference values, and the In/Out MSE of a hand-made mask."""

import pytest
import torch

from localedit.color import in_out_mse, squared_error_map, srgb_to_lab


def _pixel(r: float, g: float, b: float) -> torch.Tensor:
    """One sRGB pixel given in [0, 1], as a generator image [1, 3, 1, 1] in [-1, 1]."""
    return torch.tensor([r, g, b], dtype=torch.float64).mul(2).sub(1).view(1, 3, 1, 1)


@pytest.mark.parametrize(
    ("rgb", "lab", "atol"),
    [
        ((1, 1, 1), (100.0, 0.0, 0.0), 1e-3),
        ((0, 0, 0), (0.0, 0.0, 0.0), 1e-3),
        # Published sRGB (D65) reference values, to the two decimals they are quoted with.
        ((1, 0, 0), (53.24, 80.09, 67.20), 0.01),
        ((0, 1, 0), (87.73, -86.18, 83.18), 0.01),
        ((0, 0, 1), (32.30, 79.19, -107.86), 0.01),
        # Mid grey: the sRGB curve's power segment and a neutral colour.
        ((0.5, 0.5, 0.5), (53.39, 0.0, 0.0), 0.01),
        # A dark grey is on the linear segments of the sRGB curve and of f(t): L = (29/3)³ · 0.02/12.92.
        ((0.02, 0.02, 0.02), (1.40, 0.0, 0.0), 0.01),
    ],
)
def test_reference_values(rgb, lab, atol):
    got = srgb_to_lab(_pixel(*rgb))[0, :, 0, 0]
    assert torch.allclose(got, torch.tensor(lab, dtype=got.dtype), atol=atol), got


def test_float32_white_and_clipping():
    white = srgb_to_lab(torch.ones(2, 3, 4, 5))
    assert white.shape == (2, 3, 4, 5) and white.dtype == torch.float32
    assert torch.allclose(white, torch.tensor([100.0, 0, 0]).view(1, 3, 1, 1).expand_as(white), atol=1e-3)
    # Out-of-range generator values are clipped like the displayed image.
    assert torch.equal(srgb_to_lab(torch.full((1, 3, 1, 1), 1.7)), srgb_to_lab(torch.ones(1, 3, 1, 1)))


def test_squared_error_map():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 8, 6) * 2 - 1
    b = a.clone()
    b[1, :, 2, 3] = torch.tensor([1.0, -1.0, -1.0])
    err = squared_error_map(a, b)
    assert err.shape == (2, 8, 6)
    assert err[0].abs().max() == 0
    changed = torch.zeros(8, 6, dtype=torch.bool)
    changed[2, 3] = True
    assert err[1][~changed].abs().max() == 0
    expected = (srgb_to_lab(a[1:2, :, 2:3, 3:4]) - srgb_to_lab(b[1:2, :, 2:3, 3:4])).square().sum()
    assert torch.isclose(err[1, 2, 3], expected)
    # Black against white is ΔE = 100 exactly.
    assert torch.isclose(squared_error_map(-torch.ones(1, 3, 1, 1), torch.ones(1, 3, 1, 1)),
                         torch.tensor(1e4), rtol=1e-5).all()


def test_in_out_mse_hand_made_mask():
    err = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 5.0], [5.0, 7.0]]])
    mask = torch.tensor([[[True, False], [False, False]], [[False, False], [False, False]]])
    in_mse, out_mse = in_out_mse(err, mask)
    assert torch.allclose(in_mse, torch.tensor([1.0, 0.0]))  # an empty inside reports 0
    assert torch.allclose(out_mse, torch.tensor([3.0, 5.5]))
    in_full, out_full = in_out_mse(err, torch.ones_like(mask))
    assert torch.allclose(in_full, torch.tensor([2.5, 5.5])) and torch.equal(out_full, torch.zeros(2))


def test_validation():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        srgb_to_lab(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="same shape"):
        squared_error_map(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="bool"):
        in_out_mse(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        in_out_mse(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3, dtype=torch.bool))
