"""A quick look at a training checkpoint: does the part-swap training give the eyes and the lips (and the nose or
the skin, in a run that reserves them channels) channels of their own, and what does it cost the samples?

`evaluate` answers for an exported, catalogued and tuned model, which takes an hour. While a run trains, each kept
checkpoint needs a cheaper answer, on tuning seeds only:

- the swap: for pairs (T, R) of samples, the reserved channels (`part_swap`) of R's styles put into T's; how far
  the iris's and the lips' colour moves towards R's, and the leak, as `transfer` measures edits (the nose's and
  the skin's move, share of visible pairs and leak in columns of their own). This is what the part-swap loss
  trains, read on the EMA generator;
- where those colours are decided: how far they move when every style past the 8 px block (w index 3 on, as the
  within-group loss's groups share below it) comes from R. Channels that only move with the coarse layers, where an
  eye is a fraction of a pixel, cannot be local; the swap can only be learnt once this is high;
- the realism: the Fréchet distance in the judge's features between samples and held-out procedural faces
  (`evaluate`'s `fd_generated`, on fewer images); the eyebrows' contrast against the skin (`transfer.contrast`),
  which the distance hardly sees; each part's mean area in pixels, which catches a part shrinking away;
- the variety: the share of neighbouring samples whose iris and lip colours differ (`transfer.variety`): a swap
  can only move a colour that varies;
- the swap's directions: per CIELAB axis, how much of the wanted move the swap makes (`transfer.axis_slopes`). A
  part whose channels move its colour along one axis only cannot close the whole gap, however well that one
  direction is learnt.

A model folder is probed the same way, with the channels its catalog ranks highest for each part standing in for
reserved ones, so a candidate can be set beside the model it started from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from localedit.color import srgb_to_lab
from localedit.edit import to_uint8
from localedit.evaluate import _batches, _features, procedural_reference, tuning_seeds
from localedit.faces import PARTS
from localedit.judge import Judge, frechet_distance
from localedit.part_swap import SWAP_CHANNELS, swap_part, swap_parts
from localedit.stylegan2 import Generator
from localedit.transfer import Transfer, axis_slopes, colored, contrast, pair_figures, summarize, variety

TRUNCATION = 0.7  # as `evaluate`'s samples
AREA_PARTS = ("eyes", "eyebrows", "nose", "mouth")  # the small parts, which a loss can shrink away
FINE_FROM = 4  # style_layers[4:]: w index 3 on (to_rgbs.0, convs.2, ...), past the 4 and 8 px blocks


@dataclass(frozen=True)
class Probe:
    swap: dict[str, Transfer]  # per swapped part (`part_swap.swap_parts`)
    fine: dict[str, float]  # eyes, mouth: colour transfer with every style past 8 px swapped
    fd: float
    brows: float  # the eyebrows' contrast against the skin, ΔE
    area: dict[str, float]  # mean pixels per part of AREA_PARTS
    variety: dict[str, float]  # eyes, mouth
    axes: dict[str, tuple[float, float, float]]  # per swapped part: the swap's `transfer.axis_slopes`
    # Per swapped part, uint8 [H, W, 3] images in threes (target, reference, swapped) for the first
    # `examples` pairs whose part colours differ (`probe(examples=...)`), for `viz.triples_sheet`.
    examples: dict[str, list[np.ndarray]] = field(default_factory=dict)

    EXTRA = ("nose", "skin")  # the parts only some runs swap, each in a column of its own
    HEADER = (f"{'iris moved':>10} {'lips moved':>10} "
              + " ".join(f"{p + ' moved/vis/leak':>19}" for p in EXTRA) + f" {'leak':>6} {'past 8px':>9} "
              f"{'FD':>6} {'brows':>6} "
              + " ".join(f"{p[:6] + ' px':>9}" for p in AREA_PARTS) + f" {'variety':>11}"
              + f" {'iris L/a/b':>17} {'lips L/a/b':>17}")

    def row(self) -> str:
        leak = max(self.swap[p].leak for p in ("eyes", "mouth"))
        variety = f"{self.variety['eyes']:.2f}/{self.variety['mouth']:.2f}"
        fine = f"{self.fine['eyes']:.2f}/{self.fine['mouth']:.2f}"
        # The parts only some runs swap: the colour moved, the share of pairs where that shows, the leak.
        cells = (f"{t.color:.2f}/{t.visible:.0%}/{t.leak:.3f}" if t is not None else "—"
                 for t in (self.swap.get(p) for p in self.EXTRA))
        extra = " ".join(f"{cell:>19}" for cell in cells)
        return (f"{self.swap['eyes'].color:10.2f} {self.swap['mouth'].color:10.2f} {extra} {leak:6.3f} {fine:>9} "
                f"{self.fd:6.2f} {self.brows:6.1f} " + " ".join(f"{self.area[p]:9.1f}" for p in AREA_PARTS)
                + f" {variety:>11} " + " ".join(f"{'/'.join(f'{x:.2f}' for x in self.axes[p]):>17}"
                                                  for p in ("eyes", "mouth")))


def checkpoint_generator(path: str | Path) -> tuple[Generator, dict]:
    """A training checkpoint's EMA generator, as `train --export` would write it, in eval mode, and its reserved
    channels ({} for the defaults)."""
    from localedit.train_config import TrainConfig
    from localedit.train_export import ema_generator

    state = torch.load(path, map_location="cpu", weights_only=True)
    return ema_generator(state).eval(), TrainConfig.from_dict(state["config"]).swap_channels


def _render(g: Generator, judge: Judge, styles: dict[str, Tensor], batch: int) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    n = next(iter(styles.values())).shape[0]
    for sl in _batches(n, batch):
        image = g.synthesize({k: v[sl] for k, v in styles.items()}).clamp(-1, 1)
        images.append(image)
        labels.append(judge.labels(image))
    return torch.cat(images), torch.cat(labels)


@torch.no_grad()
def probe(g: Generator, judge: Judge, channels: dict, pairs: int = 48, samples: int = 256,
          procedural: tuple[Tensor, np.ndarray] | None = None, batch: int = 32, examples: int = 0) -> Probe:
    """Probe `g` on tuning seeds: `pairs` (T, R) pairs for the swap of `channels` ({part: {layer: [c]}} with the
    eyes and the mouth among its parts, empty for part_swap's defaults), and `samples` samples (the pairs' targets
    first) against `procedural` faces (from `evaluate.procedural_reference`, as many as the samples; rendered here
    when None). With `examples`, the Probe keeps that many swapped pairs per part as pictures."""
    seeds = tuning_seeds(max(2 * pairs, samples + 1))
    styles = g.seed_styles(seeds, TRUNCATION)
    images, labels = _render(g, judge, styles, batch)
    lab = srgb_to_lab(images)
    t, r = slice(0, 2 * pairs, 2), slice(1, 2 * pairs, 2)
    targets = {k: v[t] for k, v in styles.items()}
    # The targets again, batched as their swaps are: what the swap changed must not include batching's rounding.
    image_t, labels_t = _render(g, judge, targets, batch)
    lab_t = srgb_to_lab(image_t)
    references = {k: v[r] for k, v in styles.items()}

    def moved(part: str, mixed: dict[str, Tensor]) -> tuple[Transfer, tuple[float, float, float], list[np.ndarray]]:
        image_e, labels_e = _render(g, judge, mixed, batch)
        figures = pair_figures(part, lab_t, lab[r], srgb_to_lab(image_e), labels_t, labels[r], labels_e)
        shown = [to_uint8(x[i:i + 1]) for i in np.flatnonzero(colored(figures))[:examples]
                 for x in (image_t, images[r], image_e)]
        return summarize(figures), axis_slopes(figures), shown

    fine_layers = g.style_layers[FINE_FROM:]
    swap, fine, axes, shown = {}, {}, {}, {}
    for part in swap_parts(channels):
        swap[part], axes[part], shown[part] = moved(
            part, swap_part(targets, references, part, g.config.size, channels.get(part)))
        if part in SWAP_CHANNELS:  # the nose, which the row does not show this for, costs no extra renders
            fine[part] = moved(part, {k: references[k] if k in fine_layers else v for k, v in targets.items()})[0].color
    sample = slice(0, samples)
    faces = procedural[0] if procedural is not None else procedural_reference(samples)[0]
    fd = frechet_distance(_features(judge, faces, batch), _features(judge, images[sample], batch))
    area = {p: float((labels[sample] == PARTS.index(p)).sum(dim=(1, 2)).float().mean()) for p in AREA_PARTS}
    brows = contrast(["eyebrows"], lab[sample], labels[sample])["eyebrows"]
    return Probe(swap=swap, fine=fine, fd=float(fd), brows=brows, area=area,
                 variety=variety(["eyes", "mouth"], lab[sample], labels[sample]), axes=axes,
                 examples=shown if examples else {})
