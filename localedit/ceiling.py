"""What a perfect edit of a part scores: the procedural renderer's own part swap, measured as an edit is.

The renderer draws each aspect of a face from a random stream of its own (`faces.STREAMS`), so face T drawn with
face R's nose stream is T with R's nose, and every other pixel T's. No edit can do better, so its transfer
figures (`transfer.summarize`, on the exact labels rather than the judge's) are the most a gate on that part can
ask: a gate that this edit fails measures something other than the part's look.

Only the nose's look comes whole from its own stream: its outline, while its colour is a shade of the skin's,
which stays the target's. Every other part takes its colour from the shared colour stream, which also holds the
skin's and the background's, so their swaps would move only their outlines; this module refuses them rather than
report half a look as the whole.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from localedit.color import srgb_to_lab
from localedit.faces import render_face, to_tensor
from localedit.judge import HELDOUT_OFFSET
from localedit.transfer import Transfer, pair_figures, summarize

PART_STREAMS = {"nose": "nose"}  # parts whose whole look one stream draws
CEILING_FACES = HELDOUT_OFFSET  # pairs (T, R) are faces (k, k + 1) from here on: held out from the judge


def ceiling(part: str, pairs: int, size: int = 64, start: int = CEILING_FACES,
            progress: Callable[[int], None] | None = None) -> Transfer:
    """The transfer figures of `pairs` perfect edits of `part`: target face start + 2i given the part of
    face start + 2i + 1."""
    if part not in PART_STREAMS:
        raise ValueError(f"only {', '.join(PART_STREAMS)} draws its whole look from a stream of its own; "
                         f"{part!r} takes its colour from the shared colour stream")
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    triples = []
    for i in range(pairs):
        t, r = start + 2 * i, start + 2 * i + 1
        triples.append((render_face(t, size), render_face(r, size), render_face(t, size, swap={PART_STREAMS[part]: r})))
        if progress:
            progress(i + 1)
    lab, labels = [], []
    for k in range(3):
        images = np.stack([triple[k][0] for triple in triples])
        lab.append(srgb_to_lab(to_tensor(images)))
        labels.append(torch.from_numpy(np.stack([triple[k][1] for triple in triples])).long())
    return summarize(pair_figures(part, *lab, *labels))
