"""The controlled editability comparison on the tiny model: it edits projections of the very seeds it compares
with, by the same references, so with a perfect projection the two sides agree figure for figure, and with
another projection the projected side is what that projection answers."""

import math

import pytest
import torch

from localedit import projection_eval
from localedit.edit import Editor
from localedit.projection import ProjectSettings
from localedit.stylegan2 import seed_to_z
from tests.test_evaluate import FixedLayoutJudge


def test_the_control_compares_projections_of_the_seeds_with_the_seeds_themselves(tiny_generator, tiny_catalog,
                                                                                 monkeypatch):
    editor = Editor(tiny_generator, tiny_catalog)
    g, psi, n = tiny_generator, editor.resolve_truncation(), 3
    seeds = projection_eval.CONTROL_SEEDS[:n]
    with torch.no_grad():
        true_w = g.truncate(g.mapping(torch.cat([seed_to_z(s, g.style_dim) for s in seeds])), psi)
    seen = []

    def perfect(generator, targets, start, settings, judge=None, progress=None):
        with torch.no_grad():  # it is handed the seeds' own pictures (as uint8 pixels: within half a level)
            rendered = generator.synthesize(generator.seed_styles(seeds, psi)).clamp(-1, 1)
            seen.append(float((targets - rendered).abs().max()))
        return true_w[:, None].expand(-1, generator.n_latent, -1).clone(), []

    monkeypatch.setattr(projection_eval, "refine", perfect)
    control = projection_eval.editability_control(editor, None, FixedLayoutJudge().eval(), n,
                                                  ProjectSettings(steps=1, perceptual=0.0), progress=False)
    assert len(seen) == 1 and seen[0] <= 1 / 127.5 + 1e-6
    assert control["seeds"] == n and control["first_seed"] == seeds.start and control["projection_psnr_median"] > 40
    assert set(control["parts"]) == set(projection_eval.judged_parts(editor)) and control["parts"]
    for kinds in control["parts"].values():
        _same(kinds["projected"], kinds["seed"])


def test_the_control_edits_what_the_projection_answers(tiny_generator, tiny_catalog, monkeypatch):
    """With a projection that answers other seeds' latents, the projected side is those seeds' edits, and the
    seed side is still the control seeds' own."""
    editor = Editor(tiny_generator, tiny_catalog)
    g, psi, n, judge = tiny_generator, editor.resolve_truncation(), 3, FixedLayoutJudge().eval()
    others = range(5, 5 + n)
    with torch.no_grad():
        other_w = g.truncate(g.mapping(torch.cat([seed_to_z(s, g.style_dim) for s in others])), psi)
    monkeypatch.setattr(projection_eval, "refine", lambda generator, *args, **kwargs:
                        (other_w[:, None].expand(-1, generator.n_latent, -1).clone(), []))
    control = projection_eval.editability_control(editor, None, judge, n, ProjectSettings(steps=1, perceptual=0.0),
                                                  progress=False)
    direct = projection_eval._compare_edits(editor, judge, {"others": list(others),
                                                            "control": list(projection_eval.CONTROL_SEEDS[:n])},
                                            progress=False)
    differs = False
    for part, kinds in control["parts"].items():
        _same(kinds["projected"], direct[part]["others"])
        _same(kinds["seed"], direct[part]["control"])
        differs |= kinds["projected"]["leak"] != kinds["seed"]["leak"]
    assert differs


def _same(a: dict, b: dict) -> None:
    for key in ("color", "shape", "leak"):
        assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key], abs=1e-4), key


def test_the_seed_ranges_of_the_comparisons_are_apart():
    ranges = [projection_eval.REFERENCE_SEEDS, projection_eval.SEED_TARGETS, projection_eval.CONTROL_SEEDS]
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            assert a.stop <= b.start or b.stop <= a.start
