"""Pictures of a model: a sample grid, the catalog contact sheet, edit and composite strips, the paper's Fig. 3 grid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from localedit import viz
from localedit.composite import CompositeResult
from localedit.edit import Editor, EditResult, to_uint8
from localedit.stylegan2 import Generator

if TYPE_CHECKING:
    from localedit.projection import Projection


def _scale_for(image: np.ndarray, target: int = 192) -> int:
    return max(1, target // image.shape[0])


def sample_grid(generator: Generator, seeds: Sequence[int], truncation: float, columns: int = 8) -> Image.Image:
    """Seeded samples in a grid, upscaled, with constant noise: what a user of the model will see."""
    cells = []
    with torch.inference_mode():
        for seed in seeds:
            image = to_uint8(generator.synthesize(generator.seed_styles([seed], truncation)))
            cells.append(viz.upscale(image, _scale_for(image, 128)))
    return viz.grid([cells[i:i + columns] for i in range(0, len(cells), columns)])


def contact_views(editor: Editor, seeds: Sequence[int], truncation: float) -> tuple[Image.Image, list[np.ndarray]]:
    """The contact sheet's two halves: the overview (the samples, their cluster maps overlaid, and a numbered
    legend) and one unlabelled tile per cluster showing only its pixels on the first four samples (the app
    shows them as a gallery to click; `cluster_caption` names each)."""
    catalog = editor.catalog
    colours = viz.palette(catalog.k)
    images, maps = [], []
    for seed in seeds:
        sample = editor.sample(seed, truncation)
        small = to_uint8(sample.image)
        images.append(viz.upscale(small, _scale_for(small, 128)))
        maps.append(viz.upscale(sample.clusters.numpy(), images[-1].shape[0] // sample.clusters.shape[0]))
    overlays = [viz.cluster_overlay(image, clusters, colours) for image, clusters in zip(images, maps, strict=True)]
    rows = [images[i:i + 4] + overlays[i:i + 4] for i in range(0, len(images), 4)]
    overview = viz.grid(rows)
    overview = viz.beside(overview, viz.legend(colours, _cluster_names(catalog), height=overview.height))
    tiles = []
    for k in range(catalog.k):
        # Half size: four samples in a 2 × 2 tile as wide as one sample above.
        shown = [viz.spotlight(im, m == k)[::2, ::2] for im, m in zip(images[:4], maps[:4], strict=False)]
        tiles.append(np.asarray(viz.grid([shown[i:i + 2] for i in range(0, len(shown), 2)], pad=1)))
    return overview, tiles


def _cluster_names(catalog) -> dict[int, str]:
    return {c: name for name, part in catalog.parts.items() for c in part.clusters}


def cluster_caption(catalog, k: int) -> str:
    """Cluster k's label on a contact sheet: its number, and the part it is named for, if any."""
    name = _cluster_names(catalog).get(k)
    return f"{k}" + (f"  {name}" if name else "")


def contact_sheet(editor: Editor, seeds: Sequence[int], truncation: float, columns: int = 8) -> Image.Image:
    """What a person needs to name the clusters: the samples with their cluster maps overlaid and a numbered
    legend, then one tile per cluster showing only its pixels on the first four samples (`contact_views`)."""
    overview, tiles = contact_views(editor, seeds, truncation)
    labelled = [np.asarray(viz.labelled_row([tile], [cluster_caption(editor.catalog, k)]))
                for k, tile in enumerate(tiles)]
    tile_rows = [labelled[i:i + columns] for i in range(0, len(labelled), columns)]
    return viz.above(overview, viz.grid(tile_rows, pad=4))


def edit_strip(editor: Editor, result: EditResult) -> Image.Image:
    """target | reference | edited | diff (with the part's ROI outlined), upscaled."""
    scale = _scale_for(result.target)
    color = editor.catalog.parts[result.params.part].color
    images = [viz.upscale(result.target, scale), viz.upscale(result.reference, scale),
              viz.upscale(result.edited, scale), viz.diff_image(result.diff, [(result.roi, color)], scale)]
    p = result.params
    captions = [f"target {p.target}", f"reference {p.reference}", f"edited: {p.part}",
                f"diff  in {result.in_mse:.1f} / out {result.out_mse:.1f}"]
    return viz.labelled_row(images, captions)


def composite_strip(editor: Editor, result: CompositeResult) -> Image.Image:
    """target | each row's reference | the composite | diff (each part's region outlined in its colour)."""
    scale = _scale_for(result.target)
    p = result.params
    colors = {part: editor.catalog.parts[part].color for part in p.parts}
    images = [viz.upscale(result.target, scale)]
    images += [viz.upscale(reference, scale) for reference in result.references]
    images += [viz.upscale(result.edited, scale),
               viz.diff_image(result.diff, [(result.rois[part], colors[part]) for part in p.parts], scale)]
    captions = [f"target {p.target}"] + [f"{row.part}: {row.reference}" for row in p.rows]
    captions += ["composite", f"diff  outside {result.out_mse:.1f}"]
    return viz.labelled_row(images, captions)


def edit_grid(editor: Editor, targets: Sequence[int], references: Sequence[int], parts: Sequence[str],
              **knobs: float | str | None) -> Image.Image:
    """The paper's Fig. 3: references across the top; for each part, the targets down the side and their edits.

    Row 0 is blank + references; then, per part, one row per target: the target, then its edit by each reference.
    Each row is captioned on the left (the references' seeds, or the part and the target's seed).
    """
    blank = None
    rows: list[list[np.ndarray]] = []
    labels = ["references\n" + " ".join(map(str, references))]
    for part in parts:
        for t in targets:
            labels.append(f"{part}\ntarget {t}")
            results = [editor.edit(t, r, part, **knobs) for r in references]
            scale = _scale_for(results[0].target, 96)
            if blank is None:
                blank = np.full_like(viz.upscale(results[0].target, scale), 255)
                rows.append([blank] + [viz.upscale(res.reference, scale) for res in results])
            rows.append([viz.upscale(results[0].target, scale)] + [viz.upscale(res.edited, scale) for res in results])
    return viz.with_row_labels(viz.grid(rows), labels, rows[0][0].shape[0])


def projection_figure(projection: Projection, height: int = 192) -> Image.Image:
    """The picture as fitted to the model | its projection | the lowest loss so far at each of the refinement's
    evaluations."""
    scale = _scale_for(projection.target, height)
    images = [viz.upscale(projection.target, scale), viz.upscale(projection.image, scale)]
    side = images[0].shape[0]
    # The line search's rejected trials spike the raw trace; the answer is the best point so far.
    best = np.minimum.accumulate(projection.losses) if projection.losses else []
    plot = np.asarray(viz.line_plot(list(best), side, side, "best loss so far"))
    return viz.labelled_row([*images, plot], ["the picture (cropped)", f"projection  {projection.psnr:.1f} dB",
                                              f"{len(projection.losses)} refinement evaluations"])
