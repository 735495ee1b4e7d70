"""A quick `evaluate` on the tiny random model: the files exist and every number is finite and in range.

A random generator draws no faces, so a trained judge would find no parts and every judge-ROI figure would be NaN.
The judge here is a real (randomly initialised) network whose `segment` answers with one procedural face's true
label map for every image: the parts then exist with plausible areas, and every metric has something to measure.
"""

import json
import math

import numpy as np
import pytest
import torch

from localedit.composite_eval import composite_sets, measure_composites, seeds_used
from localedit.edit import Editor
from localedit.evaluate import (
    QUICK,
    area_ranges,
    check_held_out,
    cluster_part_shares,
    evaluate,
    out_at_matched_in,
    structure_validity,
    suggest_parts,
)
from localedit.faces import PARTS, render_arrays
from localedit.judge import Judge


class FixedLayoutJudge(Judge):
    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__()
        _, labels = render_arrays(1, self.config.size, offset=7)
        self.layout = torch.from_numpy(labels[0]).long()

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        return self.layout.expand(images.shape[0], -1, -1).clone()


@pytest.fixture(scope="module")
def metrics(tmp_path_factory, tiny_generator, tiny_catalog):
    out = tmp_path_factory.mktemp("evaluate")
    editor = Editor(tiny_generator, tiny_catalog)
    return out, evaluate(editor, FixedLayoutJudge().eval(), out, QUICK, progress=False)


def test_writes_every_file(metrics):
    out, m = metrics
    for name in ("metrics.json", "locality_judge_roi.png", "locality_cluster_roi.png", "heatmaps.png",
                 "transfer.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "metrics.json").read_text())["samples"] == QUICK.samples == m["samples"]


def test_numbers_are_finite_and_in_range(metrics):
    _, m = metrics
    assert m["structure_validity"] == 1.0  # the same plausible face layout for every sample
    assert set(m["cluster_iou"]) == {"eyes", "mouth"}
    for part, iou in m["cluster_iou"].items():
        assert 0.0 <= iou <= 1.0, part
    for roi in ("judge_roi", "cluster_roi"):
        for key, ratio in m["locality"][roi]["mean"].items():
            assert math.isfinite(ratio) and ratio >= 0.0, (roi, key, ratio)
    r = m["realism"]
    assert all(math.isfinite(v) and v >= 0 for v in r.values()), r
    for part, methods in m["curves"].items():
        assert set(methods) == {"sequential", "simultaneous", "global"}, part
    assert set(m["transfer"]) == {"eyes", "mouth"}
    for part, t in m["transfer"].items():
        assert t["pairs"] == QUICK.pairs and 0 <= t["leak"], (part, t)
        # One fixed layout for every image: the masks agree, so no pair differs in shape, and colour
        # figures exist only where the (random) generator's colours differ.
        assert math.isnan(t["shape"]) and t["differing_pairs"] <= t["color_pairs"], (part, t)
    for source in ("procedural", "generated"):
        assert set(m["color_variety"][source]) == {"eyes", "mouth"}
        assert all(0 <= v <= 1 for v in m["color_variety"][source].values()), source
        assert set(m["skin_dependence"][source]) == {"eyes", "mouth"}
        assert all(math.isnan(v) or -1e-9 <= v <= 1 for v in m["skin_dependence"][source].values()), source
    for source in ("procedural", "generated"):
        assert "eyebrows" in m["contrast"][source] and "skin" not in m["contrast"][source]
        assert all(math.isnan(v) or v >= 0 for v in m["contrast"][source].values()), source
    assert m["contrast"]["procedural"]["eyebrows"] > 0  # every procedural face has brows
    c = m["composite"]  # two judged parts: every set has both
    assert c["sets"] == QUICK.composites and c["rows"] == 2 * QUICK.composites
    assert math.isfinite(c["leak"]) and c["leak"] >= 0
    assert set(c["parts"]) == {"eyes", "mouth"}
    assert all(set(t) == {"composite", "own", "single"} and t["own"]["pairs"] == QUICK.composites
               for t in c["parts"].values())


def test_composite_sets_draw_distinct_parts_on_consecutive_seeds():
    parts = ["eyes", "mouth", "nose", "hair", "skin"]
    sets = composite_sets(parts, 7, 1000)
    assert [len(rows) for _, rows in sets] == [2, 3, 4, 2, 3, 4, 2]
    seeds = [s for target, rows in sets for s in (target, *(r for _, r in rows))]
    assert seeds == list(range(1000, 1000 + len(seeds))) and seeds_used(sets) == range(1000, 1000 + len(seeds))
    assert all(len({p for p, _ in rows}) == len(rows) and {p for p, _ in rows} <= set(parts) for _, rows in sets)
    assert composite_sets(parts, 7, 1000) == sets  # seeded
    assert [len(rows) for _, rows in composite_sets(["eyes", "mouth"], 3, 0)] == [2, 2, 2]


def test_a_one_row_composite_measures_as_its_single_edit(tiny_generator, tiny_catalog):
    editor = Editor(tiny_generator, tiny_catalog)
    sets = [(10 + 2 * i, [("eyes" if i % 2 else "mouth", 11 + 2 * i)]) for i in range(4)]
    m = measure_composites(editor, FixedLayoutJudge().eval(), sets, progress=False)
    for part, t in m["parts"].items():
        assert t["composite"] == t["own"] == t["single"] and t["composite"]["pairs"] == 2, part


def test_structure_validity_rejects_missing_parts():
    _, labels = render_arrays(40, 64, offset=0)
    ranges = area_ranges(labels)
    assert {"skin", "eyes", "mouth"} <= set(ranges)
    truth = torch.from_numpy(labels).long()
    assert structure_validity(truth, ranges) >= 0.95
    no_eyes = truth.clone()
    no_eyes[no_eyes == PARTS.index("eyes")] = PARTS.index("skin")
    assert structure_validity(no_eyes, ranges) == 0.0


def test_evaluation_refuses_tuning_and_catalog_seeds(tiny_generator, tiny_catalog, tmp_path):
    check_held_out(range(100_000, 104_000), range(0, 200))  # the full budget (with its composites) is clear of both
    with pytest.raises(ValueError, match="overlap the tuning and labelling seeds"):
        check_held_out(range(100_000, 300_001), range(0, 200))
    with pytest.raises(ValueError, match="overlap the catalog seeds"):
        check_held_out(range(150, 400), range(0, 200))
    huge = QUICK.__class__(samples=250_000, pairs=2, composites=2)
    with pytest.raises(ValueError, match="overlap"):
        evaluate(Editor(tiny_generator, tiny_catalog), FixedLayoutJudge().eval(), tmp_path / "x", huge,
                 progress=False)
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_out_at_matched_in_ratio():
    # Curve b has twice a's Out-MSE at every In-MSE: the ratio a ÷ b is 0.5 wherever they overlap.
    x = np.linspace(1.0, 10.0, 7)
    a = {"in": x.tolist(), "out": (0.1 * x).tolist()}
    b = {"in": x[::-1].tolist(), "out": (0.2 * x[::-1]).tolist()}
    assert out_at_matched_in(a, b) == pytest.approx(0.5, rel=1e-6)
    assert math.isnan(out_at_matched_in(a, {"in": [20.0, 30.0], "out": [1.0, 2.0]}))  # no overlap


def test_cluster_part_shares_counts_pixels():
    _, labels = render_arrays(4, 64, offset=3)
    truth = torch.from_numpy(labels).long()
    # Cluster 0 is exactly the eyes; cluster 1 is the mouth plus half as many background pixels; 2 is the rest.
    eyes, mouth = truth == PARTS.index("eyes"), truth == PARTS.index("mouth")
    clusters = torch.full_like(truth, 2)
    clusters[eyes] = 0
    clusters[mouth] = 1
    background = (truth == PARTS.index("background")).nonzero()[: int(mouth.sum()) // 2]
    clusters[tuple(background.T)] = 1
    shares = cluster_part_shares(truth, clusters, k=4)
    assert shares.shape == (4, len(PARTS))
    assert shares[0, PARTS.index("eyes")] == 1.0
    assert shares[1, PARTS.index("mouth")] == pytest.approx(2 / 3, abs=0.01)
    assert shares[3].sum() == 0.0  # an empty cluster
    np.testing.assert_allclose(shares[:3].sum(axis=1), 1.0)


def test_suggest_parts_takes_the_majority_part():
    shares = np.zeros((4, len(PARTS)))
    shares[0, PARTS.index("eyes")] = 0.9
    shares[1, PARTS.index("mouth")] = 0.6
    shares[2, PARTS.index("hair")], shares[2, PARTS.index("skin")] = 0.45, 0.4  # no majority: left unnamed
    shares[3, PARTS.index("eyes")] = 0.7
    assert suggest_parts(shares) == {"eyes": [0, 3], "mouth": [1]}
    assert suggest_parts(shares, min_share=0.4) == {"eyes": [0, 3], "mouth": [1], "hair": [2]}


def test_a_feature_without_a_majority_takes_the_cluster_where_its_share_is_largest():
    shares = np.zeros((4, len(PARTS)))
    shares[:, PARTS.index("skin")] = [0.9, 0.6, 0.55, 0.7]
    shares[1, PARTS.index("eyes")], shares[2, PARTS.index("eyes")] = 0.3, 0.35  # the skin around the eyes
    shares[3, PARTS.index("mouth")] = 0.3
    assert suggest_parts(shares) == {"skin": [0, 1], "eyes": [2], "mouth": [3]}  # no nose drawn: none named
    assert suggest_parts(shares, features=()) == {"skin": [0, 1, 2, 3]}


def test_tune_tries_every_candidate_on_tuning_seeds(tiny_generator, tiny_catalog):
    from localedit.catalog import Catalog
    from localedit.tune import candidates, choose, tune, with_choices

    grid = candidates(thresholds=[0.05, 0.2], shares=[0.5, 1.0])
    trials = tune(tiny_generator, tiny_catalog, FixedLayoutJudge().eval(), pairs=2, batch=4, grid=grid,
                  progress=False)
    assert set(trials) == {"eyes", "mouth"}
    for part, rows in trials.items():
        assert [t.candidate for t in rows] == grid
        for t in rows:
            c, p = t.candidate, t.part
            assert (p.torgb, p.threshold, tuple(w for _, w in p.epsilon_profile)) == (c.torgb, c.threshold, c.profile)
            end = tiny_catalog.epsilon_max(p)
            assert p.epsilon == (end if c.share == 1 else round(c.share * end, 2)), (part, c)
            assert t.transfer.pairs == 2
    chosen = {part: choose(rows) for part, rows in trials.items()}
    tuned = with_choices(tiny_catalog, {k: v for k, v in chosen.items() if v is not None})
    again = Catalog.from_state(*tuned.to_state())
    assert again.parts == tuned.parts and again.parts["eyes"].clusters == tiny_catalog.parts["eyes"].clusters
    with pytest.raises(ValueError, match="can only tune parts the judge knows"):
        tune(tiny_generator, tiny_catalog, FixedLayoutJudge().eval(), parts=["tail"], pairs=2, progress=False)
