"""Queries (Eqs. 2, 4, 5) and the conditioned interpolation (Eq. 3): shapes, edge cases and identities."""

import math

import pytest
import torch

from localedit.query import (
    global_query,
    interpolate,
    lerp_styles,
    pack_styles,
    sequential_query,
    simultaneous_query,
    unpack_styles,
)


@pytest.fixture
def rows():
    """A part's rows for two layers of different widths."""
    return {
        "convs.0": torch.tensor([0.05, 0.6, 0.3, 0.9, 0.12, 0.0]),
        "to_rgbs.0": torch.tensor([0.2, 0.08, 0.5]),
    }


def test_shapes_and_range(rows):
    for q in (global_query(rows, 0.3), simultaneous_query(rows, 4.0), sequential_query(rows, 2.0)):
        assert list(q) == list(rows)
        for layer, row in rows.items():
            assert q[layer].shape == row.shape and q[layer].dtype == row.dtype
            assert (q[layer] >= 0).all() and (q[layer] <= 1).all()


def test_global_is_constant(rows):
    q = global_query(rows, 0.25)
    assert all(torch.equal(v, torch.full_like(v, 0.25)) for v in q.values())


def test_simultaneous_scales_and_clips(rows):
    q = simultaneous_query(rows, 2.0)
    assert torch.allclose(q["convs.0"], torch.tensor([0.1, 1.0, 0.6, 1.0, 0.24, 0.0]))
    assert torch.allclose(q["to_rgbs.0"], torch.tensor([0.4, 0.16, 1.0]))
    assert all(torch.equal(v, torch.zeros_like(v)) for v in simultaneous_query(rows, 0.0).values())


def test_sequential_takes_channels_in_order_of_relevance(rows):
    row = rows["convs.0"]  # sorted: 0.9 (cost 0.1), 0.6 (0.5), 0.3 (1.2), 0.12 (2.08), 0.05, 0.0
    expected_by_epsilon = {
        0.05: [],
        0.11: [3],
        0.5: [3],  # the cumulative cost must stay strictly below ε
        0.51: [3, 1],
        1.21: [3, 1, 2],
        2.09: [3, 1, 2, 4],
    }
    for epsilon, chosen in expected_by_epsilon.items():
        q = sequential_query({"convs.0": row}, epsilon, threshold=0.1)["convs.0"]
        expected = torch.zeros_like(row)
        expected[chosen] = 1
        assert torch.equal(q, expected), (epsilon, q)


def test_sequential_edge_cases(rows):
    assert all(torch.equal(v, torch.zeros_like(v)) for v in sequential_query(rows, 0.0).values())
    # A huge (even infinite) budget is still bounded by the threshold: q = 1 exactly where M > threshold.
    for epsilon in (1e6, math.inf):
        q = sequential_query(rows, epsilon, threshold=0.1)
        assert all(torch.equal(q[k], (rows[k] > 0.1).to(rows[k].dtype)) for k in rows)
    # No channel above the threshold: nothing changes, whatever the budget.
    assert all(torch.equal(v, torch.zeros_like(v)) for v in sequential_query(rows, 1e6, threshold=0.95).values())
    # A row a hair above 1 (rounding in Σ_k M) costs nothing but ε = 0 still changes nothing.
    assert torch.equal(sequential_query({"a": torch.tensor([1.0 + 1e-6, 0.5])}, 0.0)["a"], torch.zeros(2))


def test_sequential_per_layer_epsilon(rows):
    q = sequential_query(rows, {"convs.0": 0.51, "to_rgbs.9": 5.0})  # unknown layers are ignored
    assert torch.equal(q["convs.0"], torch.tensor([0.0, 1, 0, 1, 0, 0]))
    assert torch.equal(q["to_rgbs.0"], torch.zeros(3))  # missing layers take default_epsilon = 0
    q = sequential_query(rows, {"convs.0": 0.0}, default_epsilon=0.6)
    assert torch.equal(q["convs.0"], torch.zeros(6))
    assert torch.equal(q["to_rgbs.0"], torch.tensor([0.0, 0, 1]))


def test_interpolate_identities():
    torch.manual_seed(0)
    target = {"conv1": torch.randn(2, 6), "to_rgb1": torch.randn(2, 3)}
    reference = {"conv1": torch.randn(2, 6), "to_rgb1": torch.randn(2, 3)}
    zeros = {k: torch.zeros(v.shape[1]) for k, v in target.items()}
    ones = {k: torch.ones(v.shape[1]) for k, v in target.items()}
    assert all(torch.equal(interpolate(target, reference, zeros)[k], target[k]) for k in target)
    assert all(torch.equal(interpolate(target, reference, ones)[k], reference[k]) for k in target)
    # Layers missing from q stay at the target; q mixes channel by channel.
    q = {"conv1": torch.tensor([1.0, 0, 0.5, 0, 0, 1])}
    mixed = interpolate(target, reference, q)
    assert mixed["to_rgb1"] is target["to_rgb1"]
    assert torch.equal(mixed["conv1"][:, [0, 5]], reference["conv1"][:, [0, 5]])
    assert torch.equal(mixed["conv1"][:, [1, 3, 4]], target["conv1"][:, [1, 3, 4]])
    assert torch.allclose(mixed["conv1"][:, 2], (target["conv1"][:, 2] + reference["conv1"][:, 2]) / 2)
    # A single reference [1, C] broadcasts over a batch of targets.
    one_ref = {k: v[:1] for k, v in reference.items()}
    assert torch.equal(interpolate(target, one_ref, ones)["conv1"], reference["conv1"][:1].expand(2, -1))


@pytest.mark.parametrize("bad", [math.nan, -0.1, math.inf])
def test_lambda_validation(rows, bad):
    with pytest.raises(ValueError, match="lam"):
        simultaneous_query(rows, bad)
    with pytest.raises(ValueError, match="lam"):
        global_query(rows, bad)


def test_validation(rows):
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        global_query(rows, 1.5)
    for bad in (math.nan, -1.0):
        with pytest.raises(ValueError, match="epsilon"):
            sequential_query(rows, bad)
        with pytest.raises(ValueError, match="epsilon"):
            sequential_query(rows, {"convs.0": bad})
    for bad in (math.nan, -0.1, 1.0):
        with pytest.raises(ValueError, match="threshold"):
            sequential_query(rows, 1.0, threshold=bad)
    with pytest.raises(ValueError, match=r"shape \[C\]"):
        sequential_query({"convs.0": torch.zeros(2, 3)}, 1.0)
    s = {"conv1": torch.zeros(1, 4)}
    with pytest.raises(ValueError, match="differ in layers"):
        interpolate(s, {"conv2": torch.zeros(1, 4)}, {})
    with pytest.raises(ValueError, match="not in the styles"):
        interpolate(s, s, {"conv2": torch.zeros(4)})
    with pytest.raises(ValueError, match="channel counts"):
        interpolate(s, s, {"conv1": torch.zeros(3)})


def test_packed_styles_round_trip_and_packed_eq3_equals_layer_by_layer():
    torch.manual_seed(0)
    dims = {"conv1": 4, "to_rgb1": 2, "convs.0": 3}
    target = {layer: torch.randn(2, c) for layer, c in dims.items()}
    reference = {layer: torch.randn(1, c) for layer, c in dims.items()}
    packed = pack_styles(target, dims)
    assert packed.shape == (2, 9)
    assert all(torch.equal(a, target[layer]) for layer, a in unpack_styles(packed, dims).items())
    assert list(unpack_styles(packed, dims)) == list(dims)  # the layout's order
    q = {"convs.0": torch.tensor([1.0, 0.0, 0.5]), "conv1": torch.tensor([0.0, 0.25, 1.0, 0.0])}
    q_packed = pack_styles(q, dims)  # to_rgb1 is left out: it packs as zeros, so it stays the target's
    assert q_packed.tolist() == [0.0, 0.25, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.5]
    out = unpack_styles(lerp_styles(packed, pack_styles(reference, dims), q_packed), dims)
    expected = interpolate(target, reference, q)
    assert all(torch.equal(out[layer], expected[layer]) for layer in dims)  # bit for bit
    with pytest.raises(ValueError, match="not in the layout"):
        pack_styles({"convs.9": torch.zeros(3)}, dims)
    with pytest.raises(ValueError, match="has 5 channels, the layout 4"):
        pack_styles({"conv1": torch.zeros(5)}, dims)
    with pytest.raises(ValueError, match="packed styles have 8 channels, the layout 9"):
        unpack_styles(torch.zeros(1, 8), dims)
