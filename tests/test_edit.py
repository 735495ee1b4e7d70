"""The editor's identities, caching, determinism and input validation, on the tiny random generator."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from localedit.edit import Editor, Latent, to_uint8
from localedit.query import interpolate
from localedit.stylegan2 import seed_to_z


@pytest.fixture()
def editor(tiny_generator, tiny_catalog):
    return Editor(tiny_generator, tiny_catalog)


def _image(g, seed, psi):
    with torch.no_grad():
        return to_uint8(g.synthesize(g.styles(g.truncate(g.mapping(seed_to_z(seed, g.style_dim)), psi))))


def test_result_shapes_and_target_reference(editor, tiny_generator):
    r = editor.edit(3, 7, "eyes")
    assert r.target.shape == r.reference.shape == r.edited.shape == (32, 32, 3)
    assert r.target.dtype == np.uint8
    assert r.diff.shape == r.roi.shape == (32, 32) and r.roi.dtype == bool
    assert set(r.changed) == {layer for layer in tiny_generator.style_layers if not layer.startswith("to_rgb")}
    assert np.array_equal(r.target, _image(tiny_generator, 3, 0.7))
    assert np.array_equal(r.reference, _image(tiny_generator, 7, 0.7))
    assert r.params.truncation == 0.7 and r.params.epsilon == 30.0 and r.params.threshold == 0.1


def test_q_zero_gives_the_target(editor):
    r = editor.edit(3, 7, "eyes", epsilon=0)
    assert sum(r.changed.values()) == 0
    assert np.array_equal(r.edited, r.target)
    assert r.diff.max() == 0 and r.in_mse == 0 and r.out_mse == 0
    g = editor.edit(3, 7, "eyes", method="global", lam=0)
    assert np.array_equal(g.edited, g.target)


def test_q_one_everywhere_gives_the_reference(tiny_generator, tiny_catalog):
    r = Editor(tiny_generator, tiny_catalog, include_torgb=True).edit(3, 7, "mouth", method="global", lam=1)
    assert np.array_equal(r.edited, r.reference)
    assert all(n == tiny_generator.styles(torch.zeros(1, 32))[layer].shape[1] for layer, n in r.changed.items())


def test_same_inputs_same_bytes_cold_and_warm(tiny_generator, tiny_catalog):
    first = Editor(tiny_generator, tiny_catalog).edit(5, 9, "mouth", epsilon=12)
    warm = Editor(tiny_generator, tiny_catalog)
    warm.edit(9, 5, "eyes")  # other work first: the cache must not change the bytes
    again = warm.edit(5, 9, "mouth", epsilon=12)
    assert first.edited.tobytes() == again.edited.tobytes()
    assert first.diff.tobytes() == again.diff.tobytes()


def test_sequential_edit_changes_something_with_a_budget(editor):
    r = editor.edit(3, 7, "mouth", epsilon=1e3, threshold=0.0)
    assert sum(r.changed.values()) > 0
    assert not np.array_equal(r.edited, r.target)
    assert r.in_mse > 0 or r.out_mse > 0


def test_edit_equals_manual_interpolation(editor, tiny_generator):
    params = editor.resolve(2, 4, "eyes", epsilon=500, threshold=0.05)
    q = editor.query(params)
    t, ref = editor.sample(2, 0.7), editor.sample(4, 0.7)
    with torch.no_grad():
        manual = to_uint8(tiny_generator.synthesize(interpolate(t.styles, ref.styles, q)))
    assert np.array_equal(editor.run(params).edited, manual)


def test_epsilon_scales_the_part_profile(tiny_generator, tiny_catalog):
    from dataclasses import replace

    part = replace(tiny_catalog.parts["eyes"], epsilon_per_layer=(("convs.0", 60.0),))
    catalog = replace(tiny_catalog, parts={**tiny_catalog.parts, "eyes": part})
    editor = Editor(tiny_generator, catalog)
    default = editor.layer_epsilons(editor.resolve(1, 2, "eyes"))
    assert default["convs.0"] == 60.0 and default["convs.1"] == 30.0
    doubled = editor.layer_epsilons(editor.resolve(1, 2, "eyes", epsilon=60))
    assert doubled["convs.0"] == 120.0 and doubled["convs.1"] == 60.0


def test_torgb_flag(tiny_generator, tiny_catalog):
    r = Editor(tiny_generator, tiny_catalog).edit(1, 2, "eyes", method="global", lam=1)
    assert all(not layer.startswith("to_rgb") for layer in r.changed)  # the default leaves toRGB alone
    r = Editor(tiny_generator, tiny_catalog, include_torgb=True).edit(1, 2, "eyes", method="global", lam=1)
    assert any(layer.startswith("to_rgb") for layer in r.changed)


def test_roi_is_the_parts_clusters(editor):
    r = editor.edit(3, 7, "mouth")
    clusters = editor.sample(3, 0.7).clusters.numpy()
    assert np.array_equal(r.roi, np.isin(clusters, [1, 2]))
    r.roi[:] = ~r.roi  # the sample keeps its region; a caller's copy can't change it
    assert np.array_equal(editor.edit(3, 7, "mouth").roi, np.isin(clusters, [1, 2]))
    relabelled = Editor(editor.generator, editor.catalog.with_parts({"mouth": [0]}))
    relabelled._cache = editor._cache  # the same samples, the part's clusters changed: not a stale region
    assert np.array_equal(relabelled.roi(editor.sample(3, 0.7), "mouth").numpy(), clusters == 0)


def test_cache_is_bounded(tiny_generator, tiny_catalog):
    editor = Editor(tiny_generator, tiny_catalog, cache_size=3)
    for seed in range(6):
        editor.sample(seed, 0.7)
    assert len(editor._cache) == 3


@pytest.mark.parametrize("kwargs,message", [
    (dict(target_seed=-1), "target seed must be a whole number"),
    (dict(target_seed=2**64), "target seed must be a whole number"),
    (dict(reference_seed=1.5), "reference seed must be a whole number"),
    (dict(reference_seed="abc"), "reference seed must be a whole number"),
    (dict(target_seed=True), "target seed"),
    (dict(part="tail"), "unknown part 'tail'; this model's parts are"),
    (dict(epsilon=math.nan), "epsilon must be a number"),
    (dict(epsilon=-1), "epsilon must be a number"),
    (dict(epsilon=math.inf), "epsilon must be a number"),
    (dict(threshold=1.5), "threshold must be"),
    (dict(method="magic"), "method must be one of"),
    (dict(method="global", lam=2), "lambda must be"),
    (dict(truncation=-0.1), "truncation must be"),
])
def test_bad_input_says_what_is_allowed(editor, kwargs, message):
    args = dict(target_seed=1, reference_seed=2, part="eyes") | kwargs
    with pytest.raises(ValueError, match=message):
        editor.edit(**args)


def test_a_changed_query_does_not_change_later_edits(tiny_generator, tiny_catalog):
    editor = Editor(tiny_generator, tiny_catalog)
    params = editor.resolve(1, 2, "eyes", method="global", lam=0.5)
    before = editor.run(params).edited
    for q in editor.query(params).values():
        q.fill_(0.0)  # a caller scribbling on what it was handed
    assert np.array_equal(editor.run(params).edited, before)


def test_per_layer_overrides_survive_a_zero_base_epsilon(tiny_generator, tiny_catalog):
    part = replace(tiny_catalog.parts["eyes"], epsilon=0.0, epsilon_per_layer=(("convs.0", 60.0),))
    editor = Editor(tiny_generator, replace(tiny_catalog, parts={**tiny_catalog.parts, "eyes": part}))
    budgets = editor.layer_epsilons(editor.resolve(1, 2, "eyes"))
    assert budgets["convs.0"] == 0.0 and budgets["convs.1"] == 0.0  # at the default ε of 0 nothing moves ...
    budgets = editor.layer_epsilons(editor.resolve(1, 2, "eyes", epsilon=10))
    assert budgets["convs.0"] == 600.0 and budgets["convs.1"] == 10.0  # ... and the override scales with ε


def test_one_threshold_bound_for_parts_and_edits(tiny_catalog):
    from localedit.parts import MAX_THRESHOLD, Part

    assert Part("eyes", (0,), threshold=MAX_THRESHOLD).threshold == MAX_THRESHOLD
    with pytest.raises(ValueError, match="threshold must be a number from 0 to 0.99"):
        Part("eyes", (0,), threshold=0.995)  # refused when stored, not at every edit that reads it


def test_a_latent_source_edits_like_its_seed(tiny_generator, tiny_catalog):
    g = tiny_generator
    editor = Editor(g, tiny_catalog)
    with torch.inference_mode():
        w = g.truncate(g.mapping(seed_to_z(3, g.style_dim)), 0.7)
    latent = Latent.of(w.expand(g.n_latent, -1))  # seed 3's w in every W+ slot
    assert latent == Latent.of(latent.w.clone()) and len({latent, Latent.of(latent.w.clone())}) == 1
    by_seed = editor.edit(3, 7, "mouth", truncation=0.7)
    by_latent = editor.edit(latent, 7, "mouth", truncation=0.7)
    assert np.array_equal(by_latent.edited, by_seed.edited) and np.array_equal(by_latent.target, by_seed.target)
    as_reference = editor.edit(7, latent, "mouth", truncation=0.7)
    assert np.array_equal(as_reference.reference, by_seed.target)
    with pytest.raises(ValueError, match="this model's W\\+ is"):
        editor.edit(Latent.of(torch.zeros(2, 3)), 7, "mouth")
    with pytest.raises(ValueError, match="finite W\\+ tensor"):
        Latent.of(torch.full((g.n_latent, g.style_dim), float("nan")))


def test_a_relabelled_editor_shares_the_samples_and_edits_by_its_own_parts(tiny_generator, tiny_catalog):
    editor = Editor(tiny_generator, tiny_catalog)
    sample = editor.sample(3, 0.7)
    renamed = tiny_catalog.with_parts({"hair": [2, 3]}, epsilon={"hair": 5.0})
    other = editor.relabelled(renamed)
    assert other.sample(3, 0.7) is sample and other.parts == ("eyes", "mouth", "hair")
    fresh = Editor(tiny_generator, renamed).edit(3, 5, "hair")
    assert np.array_equal(other.edit(3, 5, "hair").edited, fresh.edited)
    moved = replace(renamed, centroids=renamed.centroids.flip(0))
    with pytest.raises(ValueError, match="same clustering layer and centroids"):
        editor.relabelled(moved)
