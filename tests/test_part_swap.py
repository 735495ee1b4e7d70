"""The part-swap loss: which channels it swaps, what it counts as outside the part, and what it asks of an image."""

from dataclasses import replace

import pytest
import torch

from localedit.color import srgb_to_lab
from localedit.faces import PARTS
from localedit.part_swap import LOCALITY_SCALE, SWAP_CHANNELS, outside, swap_layers, swap_loss, swap_part
from localedit.transfer import MIN_GAP
from tests.test_train import LabelsJudge

LAYERS_64 = ("conv1", "to_rgb1", "convs.0", "convs.1", "to_rgbs.0", "convs.2", "convs.3", "to_rgbs.1", "convs.4",
             "convs.5", "to_rgbs.2", "convs.6", "convs.7", "to_rgbs.3")


def test_the_swap_layers_are_those_fed_at_half_the_width_or_more():
    assert swap_layers(LAYERS_64, 64) == ["convs.5", "to_rgbs.2", "convs.6", "convs.7", "to_rgbs.3"]
    assert swap_layers(LAYERS_64[:9], 32) == ["convs.3", "to_rgbs.1", "convs.4"]
    assert swap_layers(LAYERS_64, 64, "eyes") == swap_layers(LAYERS_64, 64)
    # The skin's colour is set in the coarse layers: its channels may lie from the 8 px inputs on.
    assert swap_layers(LAYERS_64, 64, "skin") == ["convs.1", "to_rgbs.0", "convs.2", "convs.3", "to_rgbs.1", "convs.4",
                                                  *swap_layers(LAYERS_64, 64)]


def test_swap_part_takes_only_the_reserved_channels_of_the_swap_layers():
    target = {layer: torch.zeros(2, 8) for layer in LAYERS_64}
    reference = {layer: torch.ones(2, 8) for layer in LAYERS_64}
    mixed = swap_part(target, reference, "mouth", 64)
    for layer in LAYERS_64:
        moved = mixed[layer][0].nonzero().flatten().tolist()
        assert moved == (list(SWAP_CHANNELS["mouth"]) if layer in swap_layers(LAYERS_64, 64) else []), layer
    assert target["convs.7"].sum() == 0  # the inputs are left alone


def test_outside_is_the_part_grown_by_a_pixel():
    labels = torch.zeros(1, 6, 6, dtype=torch.long)
    labels[0, 2, 3] = PARTS.index("mouth")
    away = outside(labels, "mouth")
    assert (~away).sum() == 9 and not away[0, 1:4, 2:5].any()
    assert outside(labels, "eyes").all()


def test_the_skins_region_takes_in_the_nose_and_ears_that_follow_its_colour():
    labels = torch.full((1, 8, 8), PARTS.index("background"))
    labels[0, 2:6, 2:6] = PARTS.index("skin")
    labels[0, 3, 3] = PARTS.index("nose")
    labels[0, 3, 0] = PARTS.index("ears")
    labels[0, 7, 7] = PARTS.index("hair")
    away = outside(labels, "skin", grow=0)
    assert not away[0, 2:6, 2:6].any() and not away[0, 3, 0]  # skin, nose and ears are the skin's to change
    assert away[0, 7, 7] and away[0, 0, 7] and int(away.sum()) == 64 - 17
    assert int((~outside(labels, "nose", grow=0)).sum()) == 1  # the nose's region is the nose alone


def _face(iris: tuple[float, float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """A skin-coloured 16 px image with a 3×3 iris of colour `iris` (RGB in [-1, 1]) and its labels."""
    image = torch.tensor([0.6, 0.2, -0.1])[:, None, None].repeat(1, 16, 16)
    labels = torch.full((16, 16), PARTS.index("skin"))
    image[:, 4:7, 4:7] = torch.tensor(iris)[:, None, None]
    labels[4:7, 4:7] = PARTS.index("eyes")
    return image[None], labels[None]


def test_swap_loss_wants_the_references_colour_inside_and_no_change_outside():
    target, labels_t = _face((-0.6, -0.2, 0.5))
    reference, labels_r = _face((0.1, -0.5, -0.6))
    reference, labels_r = reference.roll(5, dims=3), labels_r.roll(5, dims=2)  # the reference's eye is elsewhere
    perfect = target.clone()
    perfect[:, :, 4:7, 4:7] = reference[:, :, 4:7, 9:12]
    colour, locality = swap_loss(perfect, target, reference, labels_t, labels_r, "eyes")
    assert colour.item() < 1e-3 and locality.item() < 5e-3  # the roots keep a 1e-8 floor

    unchanged = target.clone().requires_grad_(True)
    colour, locality = swap_loss(unchanged, target, reference, labels_t, labels_r, "eyes")
    assert colour.item() == pytest.approx(1.0) and locality.item() < 5e-3  # no transfer at all
    (grad,) = torch.autograd.grad(colour, unchanged)
    assert grad[:, :, 4:7, 4:7].abs().sum() > 0 and grad[:, :, 8:, 8:].abs().sum() == 0

    # A change G makes to the target and the swapped image alike gains nothing: the loss sees their difference.
    mixed, own = target.clone().requires_grad_(True), target.clone().requires_grad_(True)
    colour, locality = swap_loss(mixed, own, reference, labels_t, labels_r, "eyes")
    grad_m, grad_t = torch.autograd.grad(colour + locality, (mixed, own))
    assert grad_m.abs().sum() > 0 and torch.allclose(grad_m, -grad_t, atol=1e-6)

    # A pair whose colours are close still counts, in units of MIN_GAP, so drifting together escapes nothing.
    near = target.clone()
    near[:, :, 4:7, 4:7] += 0.02
    colour, _ = swap_loss(target, target, near, labels_t, labels_t, "eyes")
    gap = (srgb_to_lab(near) - srgb_to_lab(target))[0, :, 5, 5].norm()
    assert 0 < gap < MIN_GAP and colour.item() == pytest.approx(gap.item() / MIN_GAP, rel=1e-3)

    shifted = perfect.clone()
    shifted[:, :, 10:, :] += 0.1  # a change well away from the eye
    _, locality = swap_loss(shifted, target, reference, labels_t, labels_r, "eyes")
    share = (6 * 16) / outside(labels_t, "eyes").sum()
    assert locality.item() == pytest.approx(LOCALITY_SCALE * (0.01 * share.item()) ** 0.5, rel=1e-3)


def test_a_training_step_with_the_part_swap_loss(tmp_path):
    from localedit.train import Trainer, render_faces
    from localedit.train_config import TrainConfig

    config = TrainConfig(size=32, channels=(32, 16, 16, 8), style_dim=32, batch=4, n_faces=8, r1_every=2,
                         part_swap=1.0, swap_pairs=4)
    faces, labels = render_faces(8, 32)
    trainer = Trainer(config, faces, labels=labels)

    trainer.judge = LabelsJudge(labels)
    before = {k: v.clone() for k, v in trainer.g.state_dict().items()}
    stats = trainer.train_step()
    assert stats["swap_colour"] > 0 and stats["swap_locality"] >= 0
    assert any(not torch.equal(before[k], v) for k, v in trainer.g.state_dict().items())
    with pytest.raises(ValueError, match="swap_pairs"):
        replace(config, swap_pairs=3)
    chosen = replace(config, swap_channels={"eyes": {"convs.5": (1, 2)}, "mouth": {"convs.5": [3]}})
    assert TrainConfig.from_dict(chosen.to_dict()) == chosen  # so a run with chosen channels can resume
    trainer = Trainer(chosen, faces, labels=labels)
    trainer.judge = LabelsJudge(labels)
    assert trainer.train_step()["swap_colour"] > 0
    with pytest.raises(ValueError, match="part_swap"):
        Trainer(config, faces)


def test_each_part_weighs_its_own_swap_loss_and_a_branch_may_reweigh_them(tmp_path):
    from localedit.train import Trainer, render_faces
    from localedit.train_config import TrainConfig

    config = TrainConfig(size=32, channels=(32, 16, 16, 8), style_dim=32, batch=4, n_faces=8, r1_every=2,
                         part_swap=1.0, swap_pairs=4)
    faces, labels = render_faces(8, 32)

    def stepped(cfg):
        torch.manual_seed(0)
        trainer = Trainer(cfg, faces, labels=labels)
        trainer.judge = LabelsJudge(labels)
        stats = trainer.train_step()
        return trainer, stats

    plain, stats = stepped(config)
    assert stats["swap_colour"] == pytest.approx((stats["swap_eyes"] + stats["swap_mouth"]) / 2)
    # Weighing both parts by 2 is the whole swap loss at twice the weight; the mouth alone by 0 is another G.
    doubled, _ = stepped(replace(config, swap_weights={"eyes": 2, "mouth": 2}))
    twice, _ = stepped(replace(config, part_swap=2.0))
    eyes_only, _ = stepped(replace(config, swap_weights={"mouth": 0}))
    for k, v in doubled.g.state_dict().items():
        assert torch.allclose(v, twice.g.state_dict()[k], atol=1e-6), k
    assert any(not torch.allclose(v, eyes_only.g.state_dict()[k]) for k, v in plain.g.state_dict().items())
    for bad in ({"nose": 2.0}, {"mouth": -1.0}, {"mouth": float("nan")}):
        with pytest.raises(ValueError, match="swap_weights"):
            replace(config, swap_weights=bad)
    assert replace(config, swap_weights={"eyes": 1, "mouth": 3}).swap_weights == {"mouth": 3.0}  # 1 is the default
    with pytest.raises(ValueError, match="same channel"):
        replace(config, swap_channels={"eyes": {"convs.5": [1, 2]}, "mouth": {"convs.5": [2]}})
    plain.save(tmp_path / "latest.pt")
    heavier = Trainer.load(tmp_path / "latest.pt", faces, labels=labels, changes={"swap_weights": {"mouth": 3}})
    assert heavier.config.swap_weights == {"mouth": 3.0} and heavier.step == plain.step
    assert TrainConfig.from_dict(heavier.config.to_dict()) == heavier.config
    # The swapped images' GAN term has a weight of its own, which a branch may change (0: only the pull).
    pull_only, _ = stepped(replace(config, swap_gan=0.0))
    assert any(not torch.allclose(v, pull_only.g.state_dict()[k]) for k, v in plain.g.state_dict().items())
    branch = Trainer.load(tmp_path / "latest.pt", faces, labels=labels, changes={"swap_gan": 0.0})
    assert branch.config.swap_gan == 0.0 and plain.config.swap_gan == 0.5
    with pytest.raises(ValueError, match="swap_gan"):
        replace(config, swap_gan=-1.0)


def test_reserved_channels_from_a_catalog_are_each_parts_best_and_never_shared():
    from localedit.part_swap import reserve_channels

    rows = {"eyes": {"a": torch.tensor([0.9, 0.1, 0.8, 0.7, 0.0]), "b": torch.tensor([0.0, 0.2, 0.1, 0.3, 0.4])},
            "mouth": {"a": torch.tensor([0.5, 0.6, 0.9, 0.0, 0.1]), "b": torch.tensor([0.4, 0.3, 0.2, 0.1, 0.0])}}
    chosen = reserve_channels(rows, ["a", "b"], per_part=2)
    assert chosen == {"eyes": {"a": [0, 2], "b": [4, 3]}, "mouth": {"a": [1, 4], "b": [0, 1]}}
    target = {"a": torch.zeros(1, 5), "b": torch.zeros(1, 5), "c": torch.zeros(1, 5)}
    reference = {k: torch.ones(1, 5) for k in target}
    mixed = swap_part(target, reference, "mouth", 64, chosen["mouth"])
    assert mixed["a"][0].tolist() == [0, 1, 0, 0, 1] and mixed["b"][0].tolist() == [1, 1, 0, 0, 0]
    assert mixed["c"] is target["c"]
    assert reserve_channels(rows, ["a"], per_part=1) == {"eyes": {"a": [0]}, "mouth": {"a": [2]}}
    with pytest.raises(ValueError, match="at least 1"):
        reserve_channels(rows, ["a"], per_part=0)
    # A second channel for the mouth alone keeps every channel chosen with one per part.
    more = reserve_channels(rows, ["a", "b"], per_part={"eyes": 1, "mouth": 2})
    assert more == {"eyes": {"a": [0], "b": [4]}, "mouth": {"a": [2, 1], "b": [0, 1]}}
    with pytest.raises(ValueError, match="at least 1"):
        reserve_channels(rows, ["a"], per_part={"mouth": 2})
    # The nose, served after them, leaves the eyes' and the mouth's channels as they were.
    nose = reserve_channels({**rows, "nose": rows["eyes"]}, ["a", "b"], per_part={"eyes": 1, "mouth": 2, "nose": 1})
    assert {p: nose[p] for p in ("eyes", "mouth")} == more and nose["nose"] == {"a": [3], "b": [3]}


def test_a_branch_extends_its_reserved_channels_and_keeps_them_whatever_the_catalog_ranks():
    from localedit.part_swap import extend_reserved

    trained = {"eyes": {"a": [4], "b": [0]}, "mouth": {"a": [1, 3], "b": [2, 1]}}
    rows = {"eyes": {"a": torch.tensor([0.9, 0.1, 0.8, 0.7, 0.0]), "b": torch.tensor([0.0, 0.2, 0.1, 0.3, 0.4])},
            "skin": {"a": torch.tensor([0.5, 0.6, 0.9, 0.0, 0.1]), "b": torch.tensor([0.4, 0.3, 0.2, 0.1, 0.0])}}
    counts = {"eyes": 1, "mouth": 2, "skin": 2}
    # The catalog ranks channel 0 first for the eyes at "a", but the eyes keep the 4 they trained; the skin takes
    # its best channels that nobody holds.
    assert extend_reserved(trained, rows, ["a", "b"], counts) == {
        "eyes": {"a": [4], "b": [0]}, "mouth": {"a": [1, 3], "b": [2, 1]}, "skin": {"a": [2, 0], "b": [3, 4]}}
    # A raised count adds to what a part had, in order of its rows.
    assert extend_reserved(trained, rows, ["a", "b"], {"eyes": 2, "mouth": 2})["eyes"] == {"a": [4, 0], "b": [0, 4]}
    assert extend_reserved(trained, rows, ["a", "b"], {"eyes": 1, "mouth": 2}) == trained
    with pytest.raises(ValueError, match="no catalog rows"):
        extend_reserved(trained, rows, ["a", "b"], {"eyes": 1, "mouth": 3})
    # Each part in its own layers: the skin also at "c", where nobody else holds channels, and the others not.
    rows["skin"]["c"] = torch.tensor([0.0, 0.1, 0.0, 0.0, 0.7])
    own = {"eyes": ["a", "b"], "mouth": ["a", "b"], "skin": ["c", "a", "b"]}
    assert extend_reserved(trained, rows, own, counts) == {
        "eyes": {"a": [4], "b": [0]}, "mouth": {"a": [1, 3], "b": [2, 1]}, "skin": {"c": [4, 1], "a": [2, 0],
                                                                                  "b": [3, 4]}}


def test_swap_per_part_names_one_count_or_one_per_part():
    from localedit.cli_measure import _per_part
    from localedit.part_swap import PER_PART

    assert _per_part([]) is None and _per_part(["2"]) == 2
    assert _per_part(["1", "mouth=2"]) == {"eyes": 1, "mouth": 2}
    assert _per_part(["mouth=2"]) == {"eyes": PER_PART, "mouth": 2}
    # A branch's part that is not named keeps the count its checkpoint had.
    assert _per_part(["mouth=2"], had={"eyes": 1, "mouth": 1}) == {"eyes": 1, "mouth": 2}
    # The nose, which no default reserves, joins when named, after the parts that were there.
    assert _per_part(["nose=2"]) == {"eyes": PER_PART, "mouth": PER_PART, "nose": 2}
    assert _per_part(["nose=3"], had={"eyes": 1, "mouth": 2}) == {"eyes": 1, "mouth": 2, "nose": 3}
    with pytest.raises(ValueError, match="names a part"):
        _per_part(["hair=1"])
    with pytest.raises(ValueError, match="one count for every part"):
        _per_part(["1", "2"])


def test_a_branch_may_add_reserved_channels_but_keeps_those_it_trained(tmp_path):
    from localedit.train import Trainer, render_faces
    from localedit.train_config import TrainConfig

    chosen = {"eyes": {"convs.5": [1]}, "mouth": {"convs.5": [3]}}
    config = TrainConfig(size=32, channels=(32, 16, 16, 8), style_dim=32, batch=4, n_faces=8, r1_every=2,
                         part_swap=1.0, swap_pairs=4, swap_channels=chosen)
    faces, labels = render_faces(8, 32)
    trainer = Trainer(config, faces, labels=labels)
    trainer.save(tmp_path / "latest.pt")
    more = {"eyes": {"convs.5": [1]}, "mouth": {"convs.5": [3, 4]}}
    branch = Trainer.load(tmp_path / "latest.pt", faces, labels=labels, changes={"swap_channels": more})
    assert branch.config.swap_channels == more
    for other in ({"eyes": {"convs.5": [2]}, "mouth": {"convs.5": [3, 4]}},
                  {"eyes": {"convs.5": [1]}, "mouth": {"convs.5": [4, 5]}}):
        with pytest.raises(ValueError, match="keeps the checkpoint's"):
            Trainer.load(tmp_path / "latest.pt", faces, labels=labels, changes={"swap_channels": other})
    # A part may join (the nose), its pairs then shared three ways; the log names each part's miss.
    nose = {**more, "nose": {"convs.5": [5]}}
    with pytest.raises(ValueError, match="multiple of the 3 swapped parts"):
        Trainer.load(tmp_path / "latest.pt", faces, labels=labels, changes={"swap_channels": nose})
    branch = Trainer.load(tmp_path / "latest.pt", faces, labels=labels,
                          changes={"swap_channels": nose, "swap_pairs": 3, "swap_weights": {"nose": 2}})
    assert branch.config.swap_parts == ("eyes", "mouth", "nose")
    assert {"swap_eyes", "swap_mouth", "swap_nose"} <= set(branch.train_step())
    for other in ({**chosen, "hair": {"convs.5": [6]}}, {"nose": {"convs.5": [6]}}):
        with pytest.raises(ValueError, match="eyes and the mouth"):
            replace(config, swap_channels=other)
    Trainer(replace(config, swap_channels={}), faces, labels=labels).save(tmp_path / "default.pt")
    with pytest.raises(ValueError, match="default reserved channels"):
        Trainer.load(tmp_path / "default.pt", faces, labels=labels, changes={"swap_channels": more})


def test_swap_from_init_needs_a_labelled_init_model(tmp_path):
    from localedit.cli_measure import _reserved_channels

    with pytest.raises(ValueError, match="needs --init"):
        _reserved_channels(None, 64)


def test_swap_per_part_needs_swap_from_init_and_writes_nothing(tmp_path):
    from localedit.__main__ import main

    with pytest.raises(SystemExit, match="--swap-per-part needs --swap-from-init"):
        main(["train", "--run-dir", str(tmp_path / "run"), "--swap-per-part", "1"])
    assert not (tmp_path / "run").exists()


def test_a_branch_adds_channels_only_to_a_run_that_reserved_them_from_its_init_model(tmp_path):
    from localedit.__main__ import main
    from localedit.train_config import TrainConfig
    from localedit.train_run import train

    train(tmp_path / "run", TrainConfig(size=16, channels=(32, 16, 16), style_dim=32, batch=4, n_faces=8), steps=1,
          progress=False)
    with pytest.raises(SystemExit, match="did not reserve its channels"):
        main(["train", "--run-dir", str(tmp_path / "branch"), "--branch-from", str(tmp_path / "run" / "latest.pt"),
              "--swap-from-init", "--swap-per-part", "mouth=2"])
    assert not (tmp_path / "branch").exists()


def test_a_branch_adds_the_skin_from_its_init_catalog_and_keeps_the_channels_it_trained():
    from localedit.cli_measure import _added_channels

    layers = ["convs.5", "to_rgbs.2", "convs.6", "convs.7", "to_rgbs.3"]
    trained = {"eyes": dict.fromkeys(layers, [30]), "mouth": {layer: [0, 31] for layer in layers}}
    chosen = _added_channels("assets/faces64", 64, trained, {"eyes": 1, "mouth": 2, "skin": 3})
    coarser = ["convs.1", "to_rgbs.0", "convs.2", "convs.3", "to_rgbs.1", "convs.4"]  # the skin's from 8 px on
    assert {p: chosen[p] for p in ("eyes", "mouth")} == trained and set(chosen["skin"]) == {*coarser, *layers}
    for layer in coarser + layers:
        held = [c for part in chosen.values() for c in part.get(layer, ())]
        assert len(chosen["skin"][layer]) == 3 and len(set(held)) == len(held) == (6 if layer in layers else 3)
    with pytest.raises(ValueError, match="names no \\['ears'\\]"):
        _added_channels("assets/faces64", 64, trained, {"eyes": 1, "mouth": 2, "ears": 1})
