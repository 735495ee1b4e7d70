"""Part-colour statistics matching: a training loss that makes G render its data's small, independent factors.

A GAN trained on little compute drops what its discriminator is slow to notice. On the procedural faces the
iris and lip colours are drawn independently of the skin; the faces64 generator renders them with a fraction of
their spread, and what spread they have follows the skin tone. No local edit can move a look the generator does
not render apart from the rest. This loss compares the first two moments of the parts' mean colours (CIELAB, over
each part's mask) in a generated batch with those of the training faces: the means, the spreads, and the
correlations between parts, so it asks both for the variety and for the independence.

The training faces' masks are their true labels; a generated batch's are the judge's (`judge.py`), taken without
gradients, so the loss moves the colours inside the masks and not the masks. The mask rule is the one the
transfer figures use (`transfer.part_mask`: the iris is the eye mask without its white pixels).

Nothing in those losses holds a part's size, and a G trained under them can shrink a part away (the lips, in runs
from the faces64 model). `AreaLoss` holds each part's share of the image to the training faces' in mean and
spread, read through the judge's soft masks (its softmax), so its gradient reaches G through the judge.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from localedit.color import srgb_to_lab
from localedit.faces import PARTS, to_signed
from localedit.transfer import MIN_PIXELS, part_mask

STAT_PARTS = ("skin", "eyes", "mouth")
AREA_PARTS = tuple(p for p in PARTS if p != "background")


def part_dims(part: str, parts: tuple[str, ...] = STAT_PARTS) -> list[int]:
    """The columns of `part_colors`' layout for `parts` (and of ColorStats) that hold `part`'s mean L, a and b."""
    i = parts.index(part)
    return [3 * i, 3 * i + 1, 3 * i + 2]


def part_colors(images: Tensor, labels: Tensor, parts: tuple[str, ...] = STAT_PARTS) -> tuple[Tensor, Tensor]:
    """images [B, 3, H, W] in [-1, 1] and labels [B, H, W] → each part's mean CIELAB side by side [B, 3·P], and
    whether every part's mask has at least MIN_PIXELS pixels [B]. An empty mask's mean is 0, never NaN, so no NaN
    reaches a gradient."""
    lab = srgb_to_lab(images.float())
    colors, valid = [], torch.ones(len(images), dtype=torch.bool, device=images.device)
    for part in parts:
        color, enough = masked_mean(lab, part_mask(labels, lab, part))
        colors.append(color)
        valid &= enough
    return torch.cat(colors, dim=1), valid


def masked_mean(lab: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean CIELAB over each image's mask: lab [B, 3, H, W], mask [B, H, W] → [B, 3] (0 where the mask is empty),
    and whether the mask has at least MIN_PIXELS pixels [B]."""
    weight = mask[:, None].to(lab.dtype)
    count = weight.sum(dim=(2, 3))
    return (lab * weight).sum(dim=(2, 3)) / count.clamp_min(1.0), count[:, 0] >= MIN_PIXELS


@dataclass(frozen=True)
class ColorStats:
    """The training faces' part-colour moments: mean [D], standard deviation [D] and correlation [D, D]."""

    mean: Tensor
    std: Tensor
    corr: Tensor

    @classmethod
    def of(cls, colors: Tensor, valid: Tensor) -> ColorStats:
        colors = colors[valid].double()
        if len(colors) < 2:
            raise ValueError("need at least two faces with every part visible")
        mean, std = colors.mean(0), colors.std(0).clamp_min(1e-3)
        return cls(mean.float(), std.float(), torch.corrcoef(colors.T).float())

    def to(self, device: torch.device) -> ColorStats:
        return ColorStats(self.mean.to(device), self.std.to(device), self.corr.to(device))


def data_stats(faces: Tensor, labels: Tensor, parts: tuple[str, ...] = STAT_PARTS, chunk: int = 1000) -> ColorStats:
    """ColorStats of `parts` in uint8 faces [N, 3, H, W] with their true labels [N, H, W]."""
    rows = [part_colors(to_signed(faces[i:i + chunk]), labels[i:i + chunk].long(), parts)
            for i in range(0, len(faces), chunk)]
    return ColorStats.of(torch.cat([c for c, _ in rows]), torch.cat([v for _, v in rows]))


def _norm(squares: Tensor) -> Tensor:
    """The root of a sum of squares: a loss whose gradient keeps one size however far off the batch is, so that a
    batch the judge reads badly cannot jolt G."""
    return (squares + 1e-8).sqrt()


class StatsLoss:
    """How far generated part colours are from `target`, in the target's own units: the root of the summed squared
    differences of the means (in standard deviations) and of the covariance of the standardised colours from the
    target's correlation.

    A batch of 32 estimates nine colours' covariance poorly, so the moments are running averages (weight
    `momentum` on the past, which is detached); each call's gradient flows through its own batch's share.
    """

    def __init__(self, target: ColorStats, momentum: float = 0.9):
        self.target, self.momentum = target, momentum
        self.mean: Tensor | None = None  # running first and raw second moments of the standardised colours
        self.second: Tensor | None = None

    def __call__(self, colors: Tensor, valid: Tensor) -> Tensor:
        z = (colors[valid] - self.target.mean) / self.target.std
        if len(z) < 2:
            return colors.new_zeros(())
        mean, second = z.mean(0), z.T @ z / len(z)
        if self.mean is not None:
            mean = self.momentum * self.mean + (1 - self.momentum) * mean
            second = self.momentum * self.second + (1 - self.momentum) * second
        self.mean, self.second = mean.detach(), second.detach()
        cov = second - mean[:, None] * mean[None, :]
        return _norm(mean.square().sum() + (cov - self.target.corr).square().sum())

    def state_dict(self) -> dict:
        return {} if self.mean is None else {"mean": self.mean.cpu(), "second": self.second.cpu()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            device = self.target.mean.device
            self.mean, self.second = state["mean"].to(device), state["second"].to(device)


class WithinGroupLoss:
    """Asks that chosen part colours vary *within* groups of samples that share their coarse styles, as much as
    they vary across the training faces.

    A generator can render the iris and lip colours with the data's spread and still decide them in its coarse
    layers, whose channels cover the whole face at 4–8 px, so that no local edit can take them alone. Here a batch
    is drawn in groups whose samples share w for the first layers and draw the rest afresh (style mixing does
    this already, so D has seen such samples); the covariance of the standardised colours around each group's own
    mean must match the training faces' correlation. In the procedural faces the iris and lip colours are drawn
    independently of everything else, so that is what their spread must be whatever the coarse layers hold.
    Running averages as in StatsLoss.
    """

    def __init__(self, target: ColorStats, dims: list[int], momentum: float = 0.9):
        self.dims = dims
        self.mean, self.std = target.mean[dims], target.std[dims]
        self.corr = target.corr[dims][:, dims]
        self.momentum = momentum
        self.cov: Tensor | None = None  # the running pooled within-group covariance

    def __call__(self, colors: Tensor, valid: Tensor, groups: Tensor) -> Tensor:
        z = (colors[:, self.dims] - self.mean) / self.std
        scatter, dof = z.new_zeros(len(self.dims), len(self.dims)), 0
        for g in groups.unique():
            rows = z[valid & (groups == g)]
            if len(rows) >= 2:
                centred = rows - rows.mean(0)
                scatter = scatter + centred.T @ centred
                dof += len(rows) - 1
        if dof == 0:
            return colors.new_zeros(())
        cov = scatter / dof
        if self.cov is not None:
            cov = self.momentum * self.cov + (1 - self.momentum) * cov
        self.cov = cov.detach()
        return _norm((cov - self.corr).square().sum())

    def state_dict(self) -> dict:
        return {} if self.cov is None else {"cov": self.cov.cpu()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.cov = state["cov"].to(self.mean.device)


def soft_masks(judge, images: Tensor) -> tuple[Tensor, Tensor]:
    """One pass of the judge over images [B, 3, H, W] in [-1, 1]: its soft masks (softmax) [B, parts, h, w] at
    its own resolution, with gradients into the images (the judge's own parameters may be frozen), and the labels
    `judge.labels` gives, long [B, H, W], without. A loss that needs both pays for one forward pass."""
    logits = judge(judge.resized(images.float().clamp(-1, 1))).float()
    return logits.softmax(dim=1), judge.labels_at(logits.detach().argmax(dim=1), images.shape[-2:])


def areas(judge, probs: Tensor, parts: tuple[str, ...] = AREA_PARTS) -> Tensor:
    """Each part's share of each image from the judge's soft masks [B, parts, h, w] (`soft_masks`) → [B, P]."""
    return probs[:, [judge.config.parts.index(p) for p in parts]].mean(dim=(2, 3))


def soft_areas(judge, images: Tensor, parts: tuple[str, ...] = AREA_PARTS) -> Tensor:
    """Each part's share of each image by the judge's soft masks: images [B, 3, H, W] in [-1, 1] → [B, P], with
    gradients into the images."""
    return areas(judge, soft_masks(judge, images)[0], parts)


@dataclass(frozen=True)
class AreaStats:
    """The training faces' part areas (shares of the image, by the judge): mean [P] and standard deviation [P]."""

    mean: Tensor
    std: Tensor

    @classmethod
    def of(cls, areas: Tensor) -> AreaStats:
        if len(areas) < 2:
            raise ValueError("need at least two faces")
        areas = areas.double()
        return cls(areas.mean(0).float(), areas.std(0).clamp_min(1e-4).float())


@torch.no_grad()
def data_areas(judge, faces: Tensor, parts: tuple[str, ...] = AREA_PARTS, n: int = 2000,
               chunk: int = 250) -> AreaStats:
    """AreaStats of the first n uint8 faces [N, 3, H, W], read by the same judge as the generated ones, so that
    its soft masks' blur at part edges is on both sides of the comparison. Chunks go to the judge's device one at
    a time, so the faces may stay where they are."""
    device = next(judge.parameters()).device
    faces = faces[:n]
    return AreaStats.of(torch.cat([soft_areas(judge, to_signed(faces[i:i + chunk].to(device)), parts)
                                   for i in range(0, len(faces), chunk)]))


class AreaLoss:
    """How far a batch's part areas [B, P] are from `target`: the root of the summed squares of the mean's
    difference (in the target's standard deviations) and of the spread's ratio minus one."""

    def __init__(self, target: AreaStats):
        self.target = target

    def __call__(self, areas: Tensor) -> Tensor:
        mean, std = areas.mean(0), areas.std(0)
        return _norm(((mean - self.target.mean) / self.target.std).square().sum()
                     + (std / self.target.std - 1).square().sum())
