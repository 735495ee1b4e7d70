"""Projections measured on held-out procedural faces: `python -m localedit evaluate-projection`.

The inputs are faces.py's renderings of `projection.EVAL_FACES` (never generator samples, never trained on), so
each has exact part labels. The figures:

- fidelity: the PSNR of the encoder's answer and of the refined projection against the input, and the judge's
  mean IoU between the projection's labels and the input's ground truth (with the judge's own mean IoU on the
  inputs as the ceiling it can reach);
- time: the encoder's answer and the default projection, each as a ratio to one synthesis pass, timed in turns
  at batch 1 within one run;
- editability: for every judged part, edits of projected targets against edits of seed targets by the same
  reference seeds, in transfer (colour, shape) and leak as transfer.py defines them. A W+ latent far from W can
  reconstruct well and edit badly, so this is measured, not assumed;
- editability, controlled: the procedural faces are other pictures than the seed targets (their eyes, lips and
  backgrounds differ), so the comparison above mixes what projecting costs with what the pictures are. The
  control holds the pictures fixed: generator samples of `CONTROL_SEEDS` are projected like any upload, and
  edits of their projections are compared with edits of the seeds themselves, pair for pair.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from localedit import viz
from localedit.color import srgb_to_lab
from localedit.edit import Editor, Latent, to_uint8
from localedit.encoder import Encoder
from localedit.evaluate import judged_parts
from localedit.faces import PARTS, render_arrays, to_tensor
from localedit.judge import Judge, _batch_iou
from localedit.projection import (
    DEFAULT,
    EVAL_FACES,
    TUNING_FACES,
    ProjectSettings,
    project,
    reconstruction_psnr,
    refine,
    start_latents,
)
from localedit.transfer import pair_figures, summarize

REFERENCE_SEEDS = range(200_000, 210_000)  # the references of the editability pairs
SEED_TARGETS = range(210_000, 220_000)  # the seed targets they are compared with
CONTROL_SEEDS = range(240_000, 250_000)  # generator samples projected for the controlled comparison


def _miou(judge: Judge, images: torch.Tensor, truth: np.ndarray) -> float:
    """Mean over parts of the IoU (counts pooled over the images) of the judge's labels against the truth."""
    k = len(PARTS)
    pred = judge.labels(images)
    inter, union = _batch_iou(pred, torch.from_numpy(truth).long(), k)
    present = union > 0
    return float((inter[present].double() / union[present].double()).mean())


def _timings(editor: Editor, encoder: Encoder | None, judge: Judge | None, images: np.ndarray,
             settings: ProjectSettings, repeats: int) -> dict[str, float]:
    """Median seconds at batch 1, in turns: a synthesis pass, the encoder's answer, the default projection; and
    the projection's fastest and slowest turn, in passes."""
    g = editor.generator
    styles = editor.sample(0, editor.resolve_truncation()).styles

    def synth() -> None:
        with torch.inference_mode():
            g.synthesize(styles)

    quick = ProjectSettings(steps=0, use_encoder=settings.use_encoder)
    fns = {"synthesis": synth,
           "encoder": lambda i: project(g, images[i], encoder, judge, quick),
           "projection": lambda i: project(g, images[i], encoder, judge, settings)}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn() if name == "synthesis" else fn(i % len(images))
            times[name].append(time.perf_counter() - start)
    t = {name: statistics.median(v) for name, v in times.items()}
    return {"synthesis_s": t["synthesis"], "encoder_s": t["encoder"], "projection_s": t["projection"],
            "encoder_passes": t["encoder"] / t["synthesis"], "projection_passes": t["projection"] / t["synthesis"],
            "projection_passes_range": [min(times["projection"]) / t["synthesis"],
                                        max(times["projection"]) / t["synthesis"]]}


@dataclass(frozen=True)
class Projected:
    """The held-out faces and what became of them, for the figure."""

    images: np.ndarray  # uint8 [N, H, W, 3], the inputs
    start: Tensor  # the encoder's W+ [N, n_latent, style_dim]
    latents: Tensor  # the refined W+


def project_all(generator, encoder: Encoder | None, judge: Judge, targets: Tensor, settings: ProjectSettings,
                progress: bool = True) -> tuple[Tensor, Tensor]:
    """Project a batch of pictures [N, 3, H, W] (each its own problem) under a progress bar → the encoder's W+
    and the refined W+."""
    g = generator.eval().requires_grad_(False)
    start = start_latents(g, targets, encoder if settings.use_encoder else None)
    bar = tqdm(total=settings.steps, desc="projecting", disable=not progress, leave=False)

    def advance(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    latents, _ = refine(g, targets, start, settings, judge, advance)
    bar.close()
    return start, latents


def w_spread(latents: Tensor) -> float:
    """How far W+ latents [N, n_latent, style_dim] are from W: the mean squared distance of each one's w from
    their mean (0 for a point of W)."""
    return float((latents - latents.mean(dim=1, keepdim=True)).square().mean())


def fidelity(generator, encoder: Encoder | None, judge: Judge, faces: range, settings: ProjectSettings,
             progress: bool = True) -> tuple[dict, Projected]:
    """Project procedural faces → PSNRs of the encoder's answer and of the projection, the judge's mean IoU
    against the truth, how far the projections are from W, and the projections."""
    g = generator.eval().requires_grad_(False)
    images, truth = render_arrays(len(faces), g.config.size, offset=faces.start)
    targets = to_tensor(images)
    start, latents = project_all(g, encoder, judge, targets, settings, progress)
    with torch.inference_mode():
        rendered = g.synthesize(g.styles(latents))
    encoder_psnr = reconstruction_psnr(g, start, targets).tolist()
    projection_psnr = reconstruction_psnr(g, latents, targets).tolist()
    return {
        "faces": len(faces), "first_face": faces.start, "settings": settings.__dict__,
        "encoder_psnr_median": float(np.median(encoder_psnr)),
        "projection_psnr_median": float(np.median(projection_psnr)),
        "projection_miou": _miou(judge, rendered, truth),
        "input_miou": _miou(judge, targets, truth),
        "projection_w_spread": w_spread(latents),
        "encoder_psnr": encoder_psnr, "projection_psnr": projection_psnr,
    }, Projected(images, start, latents)


def measure_projection(editor: Editor, encoder: Encoder | None, judge: Judge, n: int = 32,
                       settings: ProjectSettings = DEFAULT, timing_repeats: int = 10,
                       progress: bool = True) -> tuple[dict, Projected]:
    """The figures of the module docstring on the first n of EVAL_FACES, as a JSON-ready dict, and the
    projections themselves."""
    judge = judge.eval().requires_grad_(False)
    result, projected = fidelity(editor.generator, encoder, judge, EVAL_FACES[:n], settings, progress)
    result["time"] = _timings(editor, encoder, judge, projected.images, settings, timing_repeats)
    result["editability"] = editability(editor, judge, [Latent.of(w) for w in projected.latents], progress)
    result["editability_control"] = editability_control(editor, encoder, judge, n, settings, progress)
    return result, projected


def tune(editor: Editor, encoder: Encoder | None, judge: Judge, grid: list[ProjectSettings], n: int = 16,
         progress: bool = True) -> list[dict]:
    """Each candidate's fidelity on the first n of TUNING_FACES (never EVAL_FACES), and its cost in synthesis
    passes timed at batch 1 on two of them."""
    judge = judge.eval().requires_grad_(False)
    rows = []
    for settings in grid:
        result, projected = fidelity(editor.generator, encoder, judge, TUNING_FACES[:n], settings, progress)
        result["time"] = _timings(editor, encoder, judge, projected.images[:2], settings, 2)
        rows.append(result)
    return rows


def editability(editor: Editor, judge: Judge, latents: list[Latent], progress: bool = True) -> dict:
    """Per judged part: transfer and leak of edits of the projected targets, and of seed targets, by the same
    references (REFERENCE_SEEDS)."""
    return _compare_edits(editor, judge, {"projected": latents, "seed": list(SEED_TARGETS[:len(latents)])},
                          progress)


def editability_control(editor: Editor, encoder: Encoder | None, judge: Judge, n: int, settings: ProjectSettings,
                        progress: bool = True) -> dict:
    """Per judged part: edits of the projections of n generator samples (CONTROL_SEEDS, rendered at the model's
    ψ) against edits of those samples themselves, by the same references; and the projections' median PSNR and
    distance from W."""
    psi = editor.resolve_truncation()
    seeds = list(CONTROL_SEEDS[:n])
    targets = to_tensor(np.stack([editor.sample(seed, psi).pixels for seed in seeds]))
    _, latents = project_all(editor.generator, encoder, judge, targets, settings, progress)
    parts = _compare_edits(editor, judge, {"projected": [Latent.of(w) for w in latents], "seed": seeds}, progress)
    return {"seeds": n, "first_seed": CONTROL_SEEDS.start,
            "projection_psnr_median": float(reconstruction_psnr(editor.generator, latents, targets).median()),
            "projection_w_spread": w_spread(latents), "parts": parts}


def _compare_edits(editor: Editor, judge: Judge, kinds: dict[str, list], progress: bool) -> dict:
    """Per judged part and kind of target: the transfer figures of editing the kind's i-th target by
    REFERENCE_SEEDS[i] at the part's own settings."""
    psi = editor.resolve_truncation()
    out = {}
    for part in tqdm(judged_parts(editor), desc="editability", disable=not progress, leave=False):
        out[part] = {}
        for kind, targets in kinds.items():
            results = [editor.edit(t, REFERENCE_SEEDS[i], part, truncation=psi) for i, t in enumerate(targets)]
            x = to_tensor(np.stack([im for r in results for im in (r.target, r.reference, r.edited)]))
            lab, labels = srgb_to_lab(x), judge.labels(x)
            figures = pair_figures(part, lab[0::3], lab[1::3], lab[2::3], labels[0::3], labels[1::3], labels[2::3])
            out[part][kind] = summarize(figures).as_dict()
    return out


def projection_sheet(editor: Editor, projected: Projected, rows: int = 4,
                     parts: tuple[str, ...] = ("hair", "eyes", "mouth", "skin")) -> Image.Image:
    """Per face: the input | the encoder's answer | the projection | edits of the projection, one per part, each by
    its editability reference seed."""
    g = editor.generator
    parts = tuple(p for p in parts if p in editor.parts) or tuple(editor.parts[:2])
    cells, labels = [], []
    for i in range(min(rows, len(projected.images))):
        with torch.inference_mode():
            start = to_uint8(g.synthesize(g.styles(projected.start[i:i + 1])))
        latent = Latent.of(projected.latents[i])
        edits = [editor.edit(latent, REFERENCE_SEEDS[i], part).edited for part in parts]
        cells.append([viz.upscale(x, 2) for x in (projected.images[i], start, editor.sample(latent, 0).pixels,
                                                   *edits)])
        labels.append(f"face {EVAL_FACES.start + i}")
    sheet = viz.grid(cells)
    captions = ["input", "encoder", "projection", *(f"{p} of seed {REFERENCE_SEEDS.start}+i" for p in parts)]
    header = viz.labelled_row([np.full((1, cells[0][0].shape[1], 3), 255, np.uint8)] * len(captions), captions)
    return viz.above(header, sheet, pad=0)
