"""The part-colour statistics loss: the moments of the data, and what the loss asks of a batch."""

import torch

from localedit.faces import PARTS, render_arrays
from localedit.part_stats import ColorStats, StatsLoss, data_stats, part_colors


def _faces(n: int):
    images, labels = render_arrays(n, 32)
    return torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels).long()


def test_part_colors_are_the_mask_means():
    images = torch.zeros(2, 3, 4, 4)
    labels = torch.full((2, 4, 4), PARTS.index("skin"))
    labels[0, 0, 0] = PARTS.index("mouth")
    labels[:, 1, 1] = PARTS.index("eyes")
    images[0, :, 0, 0] = 1.0  # a white mouth pixel
    colors, valid = part_colors(images, labels, ("skin", "mouth"))
    assert valid.tolist() == [True, False]  # the second image has no mouth
    assert colors.shape == (2, 6)
    assert torch.allclose(colors[0, 3:], torch.tensor([100.0, 0.0, 0.0]), atol=0.1)  # white in CIELAB
    assert torch.equal(colors[1, 3:], torch.zeros(3))  # an empty mask gives 0, never NaN
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
