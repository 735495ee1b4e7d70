"""The transfer measures on hand-made masks and colours, the saturating ε, and the tuning rule."""

import math

import numpy as np
import pytest
import torch

from localedit.edit import Editor
from localedit.evaluate import tuning_seeds
from localedit.faces import PARTS
from localedit.parts import Part
from localedit.query import saturating_epsilon, sequential_query
from localedit.transfer import Transfer, centred, pair_figures, part_mask, summarize
from localedit.tune import Candidate, Trial, choose, pick_examples

MOUTH, SKIN = PARTS.index("mouth"), PARTS.index("skin")


def _scene(colors, boxes, size=16):
    """Images in CIELAB [B, 3, H, W] (skin grey L=50, the mouth box in its colour) and labels [B, H, W]."""
    lab = torch.zeros(len(colors), 3, size, size)
    lab[:, 0] = 50.0
    labels = torch.full((len(colors), size, size), SKIN)
    for i, (color, (y0, y1, x0, x1)) in enumerate(zip(colors, boxes, strict=True)):
        labels[i, y0:y1, x0:x1] = MOUTH
        lab[i, :, y0:y1, x0:x1] = torch.tensor(color, dtype=torch.float32)[:, None, None]
    return lab, labels


def _figures(t, r, e):
    (lab_t, lt), (lab_r, lr), (lab_e, le) = t, r, e
    return pair_figures("mouth", lab_t, lab_r, lab_e, lt, lr, le)


def test_colour_transfer_is_the_share_of_the_gap_closed():
    box = (4, 8, 4, 12)
    t = _scene([(50, 40, 20)], [box])
    r = _scene([(50, -20, 20)], [box])
    for e_color, expected in (((50, 40, 20), 0.0), ((50, -20, 20), 1.0), ((50, 10, 20), 0.5)):
        f = summarize(_figures(t, r, _scene([e_color], [box])))
        assert f.color == pytest.approx(expected, abs=1e-6)
        assert f.color_pairs == 1 and f.differing_pairs == 1
        assert f.visible == (1.0 if e_color != (50, 40, 20) else 0.0)
    # No part moved and the rest stayed: no leak. Changing pixels outside the part only adds leak.
    e_lab, e_labels = _scene([(50, -20, 20)], [box])
    assert summarize(_figures(t, r, (e_lab, e_labels))).leak == 0.0
    e_lab = e_lab.clone()
    e_lab[:, 0, 12:] += 10.0
    leaky = summarize(_figures(t, r, (e_lab, e_labels)))
    # inside: ΔE² = 60² over 32 pixels; outside: 10² over the 4 rows × 16 columns of the 224 outside pixels
    assert leaky.leak == pytest.approx((100 * 64 / 224) / 3600, rel=1e-5)


def test_shape_transfer_and_small_gaps():
    same = (50, 30, 10)
    t = _scene([same], [(4, 8, 2, 8)])
    r = _scene([same], [(4, 8, 8, 14)])  # disjoint boxes: IoU(T, R) = 0
    f = summarize(_figures(t, r, r))
    assert f.shape == 1.0 and math.isnan(f.color) and f.color_pairs == 0  # no colour gap to measure
    assert f.differing_pairs == 1 and f.visible == 1.0  # the mouth left its place and appeared in another
    assert summarize(_figures(t, r, t)).shape == 0.0


def test_centred_shape_transfer_counts_the_outline_not_where_it_lies():
    same = (50, 30, 10)
    t = _scene([same], [(4, 6, 2, 6)])  # a 2×4 mouth at the left
    r = _scene([same], [(8, 12, 9, 15)])  # a 4×6 mouth, lower and to the right
    e = _scene([same], [(3, 7, 1, 7)])  # the reference's 4×6 outline, where the target's mouth was
    f = summarize(_figures(t, r, e))
    assert f.shape < 0.1  # it barely overlaps the reference's mouth where that lies ...
    assert f.shape_centred == 1.0  # ... but it is the reference's outline
    assert summarize(_figures(t, r, t)).shape_centred == 0.0
    # Moving the target's own outline changes neither.
    moved = summarize(_figures(t, r, _scene([same], [(5, 7, 3, 7)])))
    assert moved.shape_centred == 0.0
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = True
    assert centred(masks)[0, 4, 4] and centred(masks).sum() == 1  # the empty mask stays empty


def test_the_iris_leaves_out_white_pixels():
    lab = torch.zeros(1, 3, 4, 4)
    lab[0, 0] = 90.0  # white everywhere ...
    lab[0, :, 1, 1] = torch.tensor([40.0, 10.0, 30.0])  # ... but one iris pixel
    labels = torch.full((1, 4, 4), PARTS.index("eyes"))
    assert part_mask(labels, lab, "eyes").sum() == 1
    assert part_mask(labels.fill_(MOUTH), lab, "mouth").sum() == 16


def test_saturating_epsilon_is_where_the_query_stops_changing():
    torch.manual_seed(0)
    m = {"a": torch.rand(40) * 0.5, "b": torch.rand(24) * 0.3, "c": torch.zeros(8)}
    scales = {"a": 1.0, "b": 0.5, "c": 1.0}
    for threshold in (0.0, 0.1, 0.2):
        end = saturating_epsilon(m, scales, threshold)
        budgets = {layer: s * end * (1 + 1e-6) for layer, s in scales.items()}
        q_end = sequential_query(m, budgets, threshold)
        q_inf = sequential_query(m, dict.fromkeys(m, math.inf), threshold)
        assert all(torch.equal(q_end[k], q_inf[k]) for k in m), threshold
        below = sequential_query(m, {layer: s * end * 0.999 for layer, s in scales.items()}, threshold)
        assert any(not torch.equal(below[k], q_inf[k]) for k in m), threshold
    assert saturating_epsilon(m, scales, 0.6) == 0.0  # nothing above the threshold


def test_editor_epsilon_range_ends_where_edits_stop_changing(tiny_generator, tiny_catalog):
    editor = Editor(tiny_generator, tiny_catalog)
    for part in editor.parts:
        end = editor.epsilon_max(part)
        q = editor.compute_query(editor.resolve(1, 2, part, epsilon=end))
        q_far = editor.compute_query(editor.resolve(1, 2, part, epsilon=1e4))
        assert all(torch.equal(q[k], q_far[k]) for k in q), part
        q_less = editor.compute_query(editor.resolve(1, 2, part, epsilon=max(end - 0.02, 0)))
        assert any(not torch.equal(q_less[k], q_far[k]) for k in q), part
        top = editor.threshold_max(part)
        assert sum(int(v.sum()) for v in editor.compute_query(editor.resolve(1, 2, part, threshold=top)).values()) == 0


def _trial(color, shape, visible, leak):
    return Trial(Candidate(False, 0.1, (1.0, 1.0, 1.0), 1.0), Part("mouth", (0,)),
                 Transfer(color, shape, visible, leak, 10, 10, 10))


def test_choose_bounds_the_leak_then_wants_visible_then_transfer():
    leaky = _trial(0.9, 0.5, 1.0, 0.3)
    faint = _trial(0.8, 0.5, 0.5, 0.05)
    good = _trial(0.5, 0.1, 0.9, 0.08)
    better = _trial(0.6, 0.1, 0.9, 0.09)
    assert choose([leaky, faint, good, better]) is better
    assert choose([leaky, faint]) is faint  # nothing visible enough under the bound: the best local one
    leakier = _trial(0.95, 0.5, 1.0, 0.4)
    assert choose([leakier, leaky]) is leaky  # nothing under the bound: the least leaky
    assert choose([_trial(0.0, 0.0, 0.0, math.nan)]) is None  # nothing changed at all
    nose = _trial(math.nan, 0.4, 0.9, 0.05)  # no colour gap: judged by its shape alone
    assert choose([nose, good]) is good and np.isclose(nose.score, 0.4)


def test_variety_counts_neighbouring_pairs_whose_colours_differ():
    from localedit.transfer import variety

    box = (4, 8, 4, 12)
    lab, labels = _scene([(50, 40, 20), (50, 40, 25), (50, -20, 20), (50, -20, 20)], [box] * 4)
    # pairs (0, 1): 5 ΔE apart, (1, 2): 60 apart, (2, 3): the same colour
    assert variety(["mouth"], lab, labels) == {"mouth": pytest.approx(1 / 3)}


def test_contrast_is_the_median_distance_of_a_part_colour_from_the_skin():
    from localedit.transfer import contrast

    box, speck = (4, 8, 4, 12), (4, 5, 4, 7)  # 32 pixels, and 3: too few to count
    # against the grey skin (50, 0, 0): 30, 40 and 50 ΔE apart; the speck's 100 is left out
    lab, labels = _scene([(50, 30, 0), (50, 0, 40), (50, 30, 40), (50, 100, 0)], [box, box, box, speck])
    assert contrast(["mouth"], lab, labels) == {"mouth": pytest.approx(40.0)}
    assert math.isnan(contrast(["eyes"], lab, labels)["eyes"])  # no image has any eyes


def test_skin_dependence_is_the_share_of_a_part_colour_that_follows_the_skin():
    from localedit.transfer import skin_dependence

    rng = np.random.default_rng(0)
    n = 200
    skin = rng.uniform(30, 80, n)
    labels = torch.full((n, 4, 4), PARTS.index("skin"))
    labels[:, :2, :2] = PARTS.index("mouth")
    lab = torch.zeros(n, 3, 4, 4, dtype=torch.float64)
    lab[:, 0] = torch.from_numpy(skin)[:, None, None]
    lab[:, 1] = 10.0
    tied = lab.clone()
    tied[:, 0, :2, :2] = torch.from_numpy(0.5 * skin + 5)[:, None, None]  # the lips exactly follow the skin
    free = lab.clone()
    free[:, 0, :2, :2] = torch.from_numpy(rng.uniform(30, 80, n))[:, None, None]
    assert skin_dependence(["skin", "mouth"], tied, labels) == {"mouth": pytest.approx(1.0)}
    assert skin_dependence(["mouth"], free, labels)["mouth"] < 0.2
    assert math.isnan(skin_dependence(["mouth"], free[:5], labels[:5])["mouth"])  # too few faces to fit


def test_examples_are_the_most_visible_local_pair_of_tuning_seeds(tiny_generator, tiny_catalog):
    editor = Editor(tiny_generator, tiny_catalog)
    examples = pick_examples(editor, n_seeds=4, progress=False)
    assert set(examples) == {"eyes", "mouth"}
    seeds = tuning_seeds(4)
    for part, (t, r) in examples.items():
        scores = {(a, b): e.in_mse / (1 + e.out_mse) for a in seeds for b in seeds if a != b
                  for e in [editor.edit(a, b, part)]}
        assert len(scores) == 12 and scores[t, r] == max(scores.values())
    assert pick_examples(editor, ["mouth"], n_seeds=4, progress=False) == {"mouth": examples["mouth"]}


def test_axis_slopes_say_which_colour_axes_an_edit_moves():
    from localedit.transfer import axis_slopes

    labels = torch.full((3, 4, 4), PARTS.index("mouth"))
    lab_t = torch.tensor([[50.0, 10, 10], [40, 20, 0], [60, 0, 20]])[:, :, None, None].expand(3, 3, 4, 4)
    lab_r = lab_t + torch.tensor([[20.0, 30, 0], [-30, 10, 0], [10, -20, 0]])[:, :, None, None]
    lab_e = lab_t.clone()
    lab_e[:, 1] = lab_r[:, 1]  # only a* takes the reference's
    lab_e[:, 0] = lab_t[:, 0] + 0.5 * (lab_r[:, 0] - lab_t[:, 0])  # L* half way
    slopes = axis_slopes(pair_figures("mouth", lab_t, lab_r, lab_e, labels, labels, labels))
    assert slopes[:2] == pytest.approx((0.5, 1.0)) and math.isnan(slopes[2])  # no pair wants b* to move
    near = lab_t + 1.0  # no pair differs by MIN_GAP: nothing to read
    assert all(math.isnan(x) for x in axis_slopes(pair_figures("mouth", lab_t, near, near, labels, labels, labels)))
