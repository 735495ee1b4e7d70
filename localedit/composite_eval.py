"""Composites measured on held-out seeds (part of `evaluate`).

Each set is a target and 2–4 rows, each a different judged part from its own reference. For every part, its
transfer (transfer.py: colour, shape, visibility) is set against the same part's single edit of the same target
by the same reference, so a part that a composite weakens shows as a gap. It is measured two ways:

- "composite": from the target to the composite, as for a single edit. This also counts what the other rows do
  inside the part's mask: a skin row darkens the lids and lips that the eyes' and mouth's masks include, and
  since colour transfer is measured on pairs whose part colours differ, such a change often lands near the
  reference's colour by chance;
- "own": from the composite without this row to the composite, the row's own effect in its context. This is the
  figure to hold against the single edit (a row that loses channels to another part shows here).

The leak is the composite's mean ΔE² outside the union of all its parts (the target's and the composite's judge
masks) ÷ the mean inside it, a ratio of means over every set, like transfer.py's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from localedit.color import srgb_to_lab
from localedit.composite import composite
from localedit.edit import Editor
from localedit.faces import PARTS, to_tensor
from localedit.judge import Judge
from localedit.transfer import leak_ratio, pair_figures, summarize

ROWS = (2, 3, 4)  # rows per set, in turn


def composite_sets(parts: list[str], n_sets: int, first_seed: int, rng_seed: int = 0
                   ) -> list[tuple[int, list[tuple[str, int]]]]:
    """`n_sets` composites on consecutive seeds from `first_seed`: (target, [(part, reference), ...]), the parts
    drawn at random (seeded) without repeats, 2, 3 or 4 rows in turn (at most as many as there are parts)."""
    rng = np.random.default_rng(rng_seed)
    sets, seed = [], first_seed
    for i in range(n_sets):
        k = min(ROWS[i % len(ROWS)], len(parts))
        chosen = [parts[j] for j in rng.choice(len(parts), size=k, replace=False)]
        sets.append((seed, [(part, seed + 1 + j) for j, part in enumerate(chosen)]))
        seed += 1 + k
    return sets


def seeds_used(sets: list[tuple[int, list[tuple[str, int]]]]) -> range:
    """The seed range the sets draw from (they are consecutive)."""
    last = max(r for _, rows in sets for _, r in rows)
    return range(sets[0][0], last + 1)


def _judged(judge: Judge, images: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """uint8 images → (CIELAB [B, 3, H, W], judge labels [B, H, W])."""
    x = to_tensor(np.stack(images))
    return srgb_to_lab(x), judge.labels(x)


def measure_composites(editor: Editor, judge: Judge, sets: list[tuple[int, list[tuple[str, int]]]],
                       truncation: float | None = None, progress: bool = True) -> dict:
    """{"parts": {part: {"composite": Transfer dict, "own": Transfer dict, "single": Transfer dict}},
    "leak": float, "sets": n, "rows": total rows}."""
    per_part: dict[str, dict[str, list[np.ndarray]]] = {}
    outside = inside = n_out = n_in = 0.0
    with torch.inference_mode():
        for target, rows in tqdm(sets, desc="composites", disable=not progress, leave=False):
            result = composite(editor, target, rows, truncation)
            singles = [editor.edit(target, r, part, truncation=truncation).edited for part, r in rows]
            # Without its row the composite is the other rows' (the target itself when there are none).
            without = [composite(editor, target, others, truncation).edited if others else result.target
                       for others in ([row for row in rows if row[0] != part] for part, _ in rows)]
            lab, labels = _judged(judge, [result.target, result.edited, *result.references, *singles, *without])
            k = len(rows)
            lab_t, lab_e, labels_t, labels_e = lab[:1], lab[1:2], labels[:1], labels[1:2]
            for j, (part, _) in enumerate(rows):
                r = 2 + j
                # (kind, the image it starts from, the edited image), as indices into lab and labels
                for kind, b, e in (("composite", 0, 1), ("own", 2 + 2 * k + j, 1), ("single", 0, 2 + k + j)):
                    figures = pair_figures(part, lab[b:b + 1], lab[r:r + 1], lab[e:e + 1], labels[b:b + 1],
                                           labels[r:r + 1], labels[e:e + 1])
                    per_part.setdefault(part, {}).setdefault(kind, []).append(figures)
            union = torch.zeros_like(labels_t, dtype=torch.bool)
            for part, _ in rows:
                index = PARTS.index(part)
                union |= (labels_t == index) | (labels_e == index)
            err = (lab_e - lab_t).square().sum(dim=1)
            inside += float((err * union).sum())
            outside += float((err * ~union).sum())
            n_in += float(union.sum())
            n_out += float((~union).sum())
    parts = {part: {kind: summarize({key: np.concatenate([f[key] for f in figures]) for key in figures[0]})
                    .as_dict() for kind, figures in kinds.items()} for part, kinds in per_part.items()}
    leak = leak_ratio(inside, outside, n_in, n_out)
    return {"sets": len(sets), "rows": sum(len(rows) for _, rows in sets), "parts": parts, "leak": float(leak)}

