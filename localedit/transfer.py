"""Does the part end up looking like the reference's? The transfer measures, on the judge's part masks.

The locality measures (evaluate.py, paper §4.3) compare queries with each other; none of them asks whether an
edit delivers what it promises, the reference's look in the part. These do, for a batch of (target T,
reference R, edited E) triples with the judge's labels on each image:

- colour transfer = 1 − ‖μ_E − μ_R‖ / ‖μ_T − μ_R‖, μ the mean CIELAB over that image's own mask of the part
  (for the eyes, the iris: the mask's non-white pixels). 1 is the reference's colour, 0 the target's; the
  median is taken over pairs whose gap ‖μ_T − μ_R‖ is at least `MIN_GAP` ΔE, where the measure is meaningful;
- shape transfer = (IoU(E, R) − IoU(T, R)) / (1 − IoU(T, R)) on the masks: how far the part's outline moved
  from the target's towards the reference's;
- centred shape transfer: the same with each mask first moved so that its centroid sits at one point (`centred`),
  the outline apart from where it lies. A local edit keeps the part where the target's face has it, so where two
  faces place the part apart (the nose sits where the pose puts it), IoU(E, R) stays low even for an edit that
  gives the target exactly the reference's part; the centred figure measures the outline alone;
- visibility: among pairs whose parts differ (a colour gap ≥ `MIN_GAP` or a mask IoU(T, R) ≤ `MAX_SAME_IOU`),
  the share whose mean ΔE² between E and T inside the union of T's and E's masks is at least `VISIBLE`;
- leak: the mean ΔE² outside that union divided by the mean inside it (means over every pixel of every pair,
  so pairs whose edit barely changes anything cannot blow the ratio up).

Pure functions on tensors; the judge and the editor are the caller's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from localedit.faces import PARTS

MIN_GAP = 8.0  # ΔE*76 between the target's and the reference's part colour
MIN_PIXELS = 4  # a mask of fewer pixels gives too noisy a mean colour to count
MAX_SAME_IOU = 0.7
VISIBLE = 25.0  # mean ΔE² inside the part: a change of 5 ΔE, plainly visible side by side
# The sclera and the catchlight are white in every face; the iris is what differs between eyes.
_WHITE_L, _WHITE_CHROMA = 75.0, 15.0


@dataclass(frozen=True)
class Transfer:
    """One part's transfer figures over a set of pairs (NaN where no pair qualified)."""

    color: float
    shape: float
    visible: float
    leak: float
    pairs: int
    color_pairs: int  # pairs with a colour gap ≥ MIN_GAP
    differing_pairs: int  # pairs whose parts differ, the denominator of `visible`
    shape_centred: float = math.nan  # NaN in figures measured before it was

    HEADER = f"{'colour':>7} {'shape':>6} {'centred':>7} {'visible':>8} {'leak':>7}"

    def as_dict(self) -> dict:
        return asdict(self)

    def row(self) -> str:
        """The five figures in the columns of HEADER, for the command line's tables."""
        return f"{self.color:7.2f} {self.shape:6.2f} {self.shape_centred:7.2f} {self.visible:8.0%} {self.leak:7.3f}"


def part_mask(labels: Tensor, lab: Tensor, part: str) -> Tensor:
    """The pixels whose look `part` is judged by: labels [B, H, W], lab [B, 3, H, W] → bool [B, H, W].

    For the eyes that is the iris (the eye mask without its white pixels), elsewhere the judge's whole mask.
    """
    mask = labels == PARTS.index(part)
    if part == "eyes":
        chroma = lab[:, 1:].square().sum(dim=1).sqrt()
        mask &= ~((lab[:, 0] > _WHITE_L) & (chroma < _WHITE_CHROMA))
    return mask


def mean_color(lab: Tensor, mask: Tensor) -> Tensor:
    """Mean CIELAB over each image's mask: [B, 3, H, W], [B, H, W] → [B, 3] (NaN where a mask is empty)."""
    weight = mask[:, None].to(lab.dtype)
    return (lab * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))


def iou(a: Tensor, b: Tensor) -> Tensor:
    """Per-image IoU of bool masks [B, H, W] → [B] (1 where both are empty)."""
    inter = (a & b).sum(dim=(1, 2)).double()
    union = (a | b).sum(dim=(1, 2)).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def centred(masks: Tensor) -> Tensor:
    """Bool masks [B, H, W] → [B, 2H, 2W], each moved so that its centroid (rounded to a pixel) lies at (H, W).
    The canvas is twice the size, so no mask is clipped; an empty mask stays empty."""
    b, h, w = masks.shape
    out = torch.zeros(b, 2 * h, 2 * w, dtype=torch.bool, device=masks.device)
    k, y, x = masks.nonzero(as_tuple=True)
    count = masks.sum(dim=(1, 2)).clamp_min(1).double()
    cy = torch.zeros(b, dtype=torch.double, device=masks.device).index_add_(0, k, y.double()) / count
    cx = torch.zeros(b, dtype=torch.double, device=masks.device).index_add_(0, k, x.double()) / count
    # Half up, not half to even: two masks of one outline must land on the same pixels wherever they lie.
    out[k, y - (cy + 0.5).floor().long()[k] + h, x - (cx + 0.5).floor().long()[k] + w] = True
    return out


def pair_figures(part: str, lab_t: Tensor, lab_r: Tensor, lab_e: Tensor, labels_t: Tensor, labels_r: Tensor,
                 labels_e: Tensor) -> dict[str, np.ndarray]:
    """Per-pair figures for a batch of B triples: CIELAB [B, 3, H, W] and judge labels [B, H, W] of T, R, E.

    Returns arrays [B]: gap, color (NaN where a mask is empty or the gap is 0), iou_tr, iou_er and the same of the
    `centred` masks, ciou_tr and ciou_er, inside and outside (ΔE² between E and T summed inside and outside the
    union of T's and E's masks) and n_inside, n_outside (their pixel counts); and [B, 3]: wanted (μ_R − μ_T)
    and made (μ_E − μ_T), for `axis_slopes`.
    """
    m_t, m_r, m_e = (part_mask(lb, lab, part) for lb, lab in ((labels_t, lab_t), (labels_r, lab_r),
                                                                (labels_e, lab_e)))
    mu_t, mu_r, mu_e = mean_color(lab_t, m_t), mean_color(lab_r, m_r), mean_color(lab_e, m_e)
    gap = (mu_t - mu_r).norm(dim=1)
    color = 1 - (mu_e - mu_r).norm(dim=1) / gap
    whole = [labels == PARTS.index(part) for labels in (labels_t, labels_r, labels_e)]
    union = whole[0] | whole[2]
    err = (lab_e - lab_t).square().sum(dim=1)
    inside = (err * union).sum(dim=(1, 2))
    outside = (err * ~union).sum(dim=(1, 2))
    n_in = union.sum(dim=(1, 2))
    moved = [centred(mask) for mask in whole]
    out = {"gap": gap, "color": color, "iou_tr": iou(whole[0], whole[1]), "iou_er": iou(whole[2], whole[1]),
           "ciou_tr": iou(moved[0], moved[1]), "ciou_er": iou(moved[2], moved[1]),
           "inside": inside, "outside": outside, "n_inside": n_in, "n_outside": union[0].numel() - n_in,
           "wanted": mu_r - mu_t, "made": mu_e - mu_t}
    return {k: v.double().numpy() for k, v in out.items()}


def colored(figures: dict[str, np.ndarray]) -> np.ndarray:
    """Per pair: whether the target's and the reference's part colours differ by ≥ MIN_GAP (colour measurable)."""
    gap = figures["gap"]
    return np.isfinite(gap) & (gap >= MIN_GAP) & np.isfinite(figures["color"])


def differing(figures: dict[str, np.ndarray]) -> np.ndarray:
    """Per pair: whether the parts differ, in colour or in outline (IoU(T, R) ≤ MAX_SAME_IOU)."""
    return colored(figures) | (figures["iou_tr"] <= MAX_SAME_IOU)


def leak_ratio(inside: float, outside: float, n_inside: float, n_outside: float) -> float:
    """The leak: mean ΔE² outside ÷ mean inside, from sums and pixel counts over every pair (a ratio of means,
    so a pair that barely changed cannot blow it up); NaN when nothing changed inside."""
    return (outside / max(n_outside, 1)) / (inside / n_inside) if inside > 0 and n_inside else math.nan


def axis_slopes(figures: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """Per CIELAB axis, the least-squares slope of the move the edits made (μ_E − μ_T) on the move wanted
    (μ_R − μ_T), over the pairs whose colour is measurable (`colored`). 1: that axis moves all the way to the
    reference's; 0: no move that follows the wanted one; NaN: no pair wants a move along it."""
    ok = colored(figures)
    wanted, made = figures["wanted"][ok], figures["made"][ok]
    power = np.square(wanted).sum(axis=0)
    slopes = np.where(power > 0, (wanted * made).sum(axis=0) / np.maximum(power, 1e-12), np.nan)
    return tuple(float(x) for x in slopes)


def _outline_moved(iou_tr: np.ndarray, iou_er: np.ndarray) -> float:
    """The median over pairs of (IoU(E, R) − IoU(T, R)) / (1 − IoU(T, R)), like the colour's; pairs whose masks
    already agree (IoU(T, R) = 1) have nothing to move and are left out. NaN when no pair is left."""
    movable = iou_tr < 1
    if not movable.any():
        return math.nan
    return float(np.median((iou_er[movable] - iou_tr[movable]) / (1 - iou_tr[movable])))


def summarize(figures: dict[str, np.ndarray]) -> Transfer:
    """Per-pair figures (from `pair_figures`) → the part's `Transfer`."""
    gap, color, has_color = figures["gap"], figures["color"], colored(figures)
    n_in = figures["n_inside"]
    mean_in = np.where(n_in > 0, figures["inside"] / np.maximum(n_in, 1), 0.0)
    differ = differing(figures)
    leak = leak_ratio(figures["inside"].sum(), figures["outside"].sum(), n_in.sum(), figures["n_outside"].sum())
    return Transfer(
        color=float(np.median(color[has_color])) if has_color.any() else math.nan,
        shape=_outline_moved(figures["iou_tr"], figures["iou_er"]),
        visible=float(np.mean(mean_in[differ] >= VISIBLE)) if differ.any() else math.nan,
        leak=float(leak),
        pairs=int(gap.size),
        color_pairs=int(has_color.sum()),
        differing_pairs=int(differ.sum()),
        shape_centred=_outline_moved(figures["ciou_tr"], figures["ciou_er"]),
    )


def variety(parts: list[str], lab: Tensor, labels: Tensor) -> dict[str, float]:
    """Per part, the share of neighbouring image pairs (i, i+1) whose part colours differ by at least MIN_GAP:
    how often a colour transfer has something to move. Compared between the procedural faces and the generated
    ones, it says whether the generator renders the data's variety at all."""
    out = {}
    for part in parts:
        mu = mean_color(lab, part_mask(labels, lab, part))
        gap = (mu[1:] - mu[:-1]).norm(dim=1)
        valid = torch.isfinite(gap)
        out[part] = float((gap[valid] >= MIN_GAP).float().mean()) if valid.any() else math.nan
    return out


def contrast(parts: list[str], lab: Tensor, labels: Tensor, min_pixels: int = MIN_PIXELS) -> dict[str, float]:
    """Per part, the median over images of the CIELAB distance between the part's mean colour and the skin's,
    over the images where the part covers at least `min_pixels` pixels: how distinctly the features are drawn.
    Compared between the procedural faces and the generated ones, it catches a generator that washes features
    such as the eyebrows into the skin, which a feature-space Fréchet distance hardly sees."""
    skin = mean_color(lab, part_mask(labels, lab, "skin"))
    out = {}
    for part in parts:
        mask = part_mask(labels, lab, part)
        d = (mean_color(lab, mask) - skin).norm(dim=1)
        valid = torch.isfinite(d) & (mask.sum(dim=(1, 2)) >= min_pixels)
        out[part] = float(d[valid].median()) if valid.any() else math.nan
    return out


def skin_dependence(parts: list[str], lab: Tensor, labels: Tensor) -> dict[str, float]:
    """Per part other than the skin, the R² of a linear fit of its mean colour on the skin's, over the images
    where both are visible: how much of a part's colour merely follows the skin. In the procedural faces the iris
    and lip colours are drawn independently of the skin; a generator that ties them to it cannot let a local edit
    move them alone."""
    skin = mean_color(lab, part_mask(labels, lab, "skin")).double()
    out = {}
    for part in parts:
        if part == "skin":
            continue
        mu = mean_color(lab, part_mask(labels, lab, part)).double()
        ok = torch.isfinite(mu).all(1) & torch.isfinite(skin).all(1)
        if ok.sum() < 8:
            out[part] = math.nan
            continue
        x = torch.cat([skin[ok], torch.ones(int(ok.sum()), 1, dtype=torch.float64)], dim=1)
        y = mu[ok]
        residual = y - x @ torch.linalg.lstsq(x, y).solution
        out[part] = float(1 - residual.var(0).sum() / y.var(0).sum().clamp_min(1e-12))
    return out
