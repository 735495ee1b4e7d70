"""The part-colour statistics loss: the moments of the data, and what the loss asks of a batch."""

import pytest
import torch

from localedit.faces import PARTS, render_arrays
from localedit.part_stats import ColorStats, StatsLoss, data_stats, part_colors


def _faces(n: int):
    images, labels = render_arrays(n, 32)
    return torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels).long()


def test_part_colors_are_the_mask_means():
    images = torch.zeros(2, 3, 4, 4)
    labels = torch.full((2, 4, 4), PARTS.index("skin"))
    labels[0, :2, :2] = PARTS.index("mouth")
    labels[:, 2:, 2:] = PARTS.index("eyes")
    labels[1, 0, 0] = PARTS.index("mouth")  # too few pixels to count
    images[0, :, :2, :2] = 1.0  # a white mouth
    colors, valid = part_colors(images, labels, ("skin", "mouth"))
    assert valid.tolist() == [True, False]  # the second image's mouth is one pixel
    assert colors.shape == (2, 6)
    assert torch.allclose(colors[0, 3:], torch.tensor([100.0, 0.0, 0.0]), atol=0.1)  # white in CIELAB
    images.requires_grad_(True)
    colors, valid = part_colors(images * 1.0, labels)
    colors[valid].sum().backward()
    assert torch.isfinite(images.grad).all()


def test_the_data_scores_near_zero_and_a_collapsed_batch_does_not():
    faces, labels = _faces(64)
    target = data_stats(faces, labels)
    assert target.corr.shape == (9, 9) and torch.allclose(target.corr.diagonal(), torch.ones(9), atol=1e-5)
    real = faces.float() / 127.5 - 1
    loss = StatsLoss(target, momentum=0.0)
    on_data = loss(*part_colors(real, labels)).item()
    # Every face given the first face's colours: no spread at all.
    same = real.clone()
    for part in ("skin", "eyes", "mouth"):
        colour = real[0][:, labels[0] == PARTS.index(part)].mean(1)
        for i in range(len(same)):
            same[i][:, labels[i] == PARTS.index(part)] = colour[:, None]
    collapsed = StatsLoss(target, momentum=0.0)(*part_colors(same, labels)).item()
    assert on_data < 0.5 < 3 < collapsed


def test_eyebrows_washed_into_the_skin_score_far_from_the_data():
    faces, labels = _faces(64)
    parts = ("skin", "eyes", "mouth", "eyebrows")
    target = data_stats(faces, labels, parts)
    assert target.mean.shape == (12,)
    real = faces.float() / 127.5 - 1
    on_data = StatsLoss(target, momentum=0.0)(*part_colors(real, labels, parts)).item()
    washed = real.clone()  # each face's brows take the colour of its own skin
    for i in range(len(washed)):
        skin = real[i][:, labels[i] == PARTS.index("skin")].mean(1)
        washed[i][:, labels[i] == PARTS.index("eyebrows")] = skin[:, None]
    faded = StatsLoss(target, momentum=0.0)(*part_colors(washed, labels, parts)).item()
    assert on_data < 0.5 < 2 < faded
    # The default parts do not read the brows at all.
    default = data_stats(faces, labels)
    assert StatsLoss(default, momentum=0.0)(*part_colors(washed, labels)).item() == pytest.approx(
        StatsLoss(default, momentum=0.0)(*part_colors(real, labels)).item())


def test_running_moments_and_their_state():
    target = ColorStats(torch.zeros(2), torch.ones(2), torch.eye(2))
    loss = StatsLoss(target, momentum=0.5)
    batch = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    valid = torch.ones(2, dtype=torch.bool)
    first = loss(batch, valid)  # mean 0, second moment diag(1, 0): 1 off on the second variance
    assert first.item() == torch.tensor(1.0).item()
    state = loss.state_dict()
    again = StatsLoss(target, momentum=0.5)
    again.load_state_dict(state)
    assert again(batch * 2, valid).item() == loss(batch * 2, valid).item()
    assert StatsLoss(target)(batch[:1], valid[:1]).item() == 0.0  # one row is no spread to measure


def test_within_group_loss_asks_for_variety_inside_each_group():
    from localedit.part_stats import WithinGroupLoss

    target = ColorStats(torch.zeros(3), torch.ones(3), torch.eye(3))
    groups = torch.arange(4).repeat_interleave(8)
    valid = torch.ones(32, dtype=torch.bool)
    torch.manual_seed(0)
    varied = torch.randn(32, 3)  # every sample its own colour
    per_group = torch.randn(4, 3)[groups] * 3  # as varied across groups, but one colour within each
    loss = WithinGroupLoss(target, dims=[0, 1, 2], momentum=0.0)
    assert loss(varied, valid, groups).item() < 1.0 < 1.7 < loss(per_group, valid, groups).item()
    assert WithinGroupLoss(target, [0, 1, 2])(varied, valid, torch.arange(32)).item() == 0.0  # groups of one


def test_grouped_batch_shares_the_coarse_styles():
    from dataclasses import replace

    from localedit.train import Trainer
    from localedit.train_config import TrainConfig

    config = TrainConfig(size=16, channels=(32, 16, 16), style_dim=32, batch=4, n_faces=8, groups=2, group_size=3,
                         shared_below=2)
    trainer = Trainer(config, torch.zeros(8, 3, 16, 16, dtype=torch.uint8))
    seen = {}
    trainer.g.synthesize = lambda styles, noise: seen.update(styles) or torch.zeros(6, 3, 16, 16)
    _, groups = trainer._grouped_batch()
    assert groups.tolist() == [0, 0, 0, 1, 1, 1]
    conv1, late = seen["conv1"], seen["convs.3"]  # w index 0 is shared; index 4 is each sample's own
    assert torch.equal(conv1[0], conv1[2]) and not torch.equal(conv1[0], conv1[3])
    assert not torch.equal(late[0], late[1])
    with pytest.raises(ValueError, match="shared_below"):
        replace(config, within_group=1.0, shared_below=0)


def test_colours_keep_their_gradient_after_an_inference_mode_call():
    from localedit.color import _matrices, srgb_to_lab

    _matrices.cache_clear()
    with torch.inference_mode():
        srgb_to_lab(torch.zeros(1, 3, 2, 2))  # evaluate's first call fills the cache
    images = torch.zeros(1, 3, 2, 2, requires_grad=True)
    srgb_to_lab(images).sum().backward()
    assert images.grad is not None


def test_the_area_loss_holds_each_part_to_its_size_and_its_gradient_reaches_the_pixels():
    from localedit.judge import load_judge
    from localedit.part_stats import AREA_PARTS, AreaLoss, data_areas, soft_areas

    judge = load_judge().eval().requires_grad_(False)
    faces, labels = _faces(48)
    target = data_areas(judge, faces[:32])
    assert target.mean.shape == (len(AREA_PARTS),) and (target.std > 0).all()
    loss = AreaLoss(target)
    held = faces[32:].float().div(127.5).sub(1.0)
    near = loss(soft_areas(judge, held)).item()  # other faces of the same kind
    shrunk = held.clone()  # the lips painted over with the skin's colour next to them
    mouth = labels[32:] == PARTS.index("mouth")
    skin = labels[32:] == PARTS.index("skin")
    for i in range(len(shrunk)):
        tone = shrunk[i][:, skin[i]].mean(dim=1)
        shrunk[i][:, mouth[i]] = tone[:, None]
    far = loss(soft_areas(judge, shrunk)).item()
    assert far > near + 1.0
    pixels = shrunk.clone().requires_grad_(True)
    loss(soft_areas(judge, pixels)).backward()
    assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0


def test_one_pass_of_the_judge_gives_both_the_soft_masks_and_the_labels():
    import torch.nn.functional as F

    from localedit.judge import load_judge
    from localedit.part_stats import areas, soft_areas, soft_masks

    judge = load_judge().eval().requires_grad_(False)
    faces, _ = _faces(8)
    images = faces.float().div(127.5).sub(1.0)
    probs, labels = soft_masks(judge, images)
    assert torch.equal(labels, judge.labels(images)) and probs.requires_grad is False
    assert torch.allclose(probs.sum(dim=1), torch.ones(1))
    assert torch.equal(areas(judge, probs), soft_areas(judge, images))
    small = F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True)  # another model's size
    probs, labels = soft_masks(judge, small.requires_grad_(True))
    assert labels.shape == (8, 32, 32) and torch.equal(labels, judge.labels(small))
    assert probs.requires_grad and not labels.requires_grad
