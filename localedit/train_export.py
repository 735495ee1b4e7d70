"""A training checkpoint's EMA generator as a model folder, with the model card that says how it was made."""

from __future__ import annotations

from pathlib import Path

import torch

from localedit.stylegan2 import Generator
from localedit.train_config import TrainConfig

_PRECISION = {True: "bf16 autocast where the hardware has it (the table says per session)", False: "fp32"}


def _origin(cfg: TrainConfig) -> str:
    if not cfg.init:
        return "from scratch"
    d = f"D from `{cfg.init_d}`" if cfg.init_d else "D from scratch"
    return f"from the generator of `{cfg.init}` (a warm start; {d})"


def _extras(cfg: TrainConfig) -> str:
    lines = []
    if cfg.branched_from:
        lines.append(f"Branched from `{cfg.branched_from}`: that checkpoint's G, D, EMA and optimisers went on "
                     f"under this run's loss settings.")
    if cfg.init:
        lines.append(f"Warm start from `{cfg.init}`; only D learned for the first {cfg.d_warmup} steps.")
    if cfg.color_stats:
        lines.append(f"Part-colour statistics loss (`localedit/part_stats.py`) at weight {cfg.color_stats} beside G's "
                     f"GAN loss: the mean colours of {', '.join(cfg.stat_parts)} in each generated batch (the "
                     f"eyes' is the iris's; masks by the judge `{cfg.judge}`) are matched to the training faces' in "
                     f"mean, spread and correlation.")
    if cfg.within_group:
        lines.append(f"Within-group loss (`part_stats.WithinGroupLoss`) at weight {cfg.within_group}: in "
                     f"{cfg.groups} groups of {cfg.group_size} samples sharing w below layer {cfg.shared_below}, "
                     f"the irises' and lips' colours must vary as much as in the training faces.")
    if cfg.part_swap:
        reserved = (f"the channels the init model's catalog ranks highest for each part ({cfg.swap_channels})"
                    if cfg.swap_channels else "channels 0–2 (eyes) and 3–5 (mouth) of the last layers")
        lines.append(f"Part-swap loss (`localedit/part_swap.py`) at weight {cfg.part_swap}, {cfg.swap_pairs} pairs "
                     f"per step: with a few reserved fine-layer channels ({reserved}) swapped from one sample into "
                     f"another, the colour of the part they serve ({', '.join(cfg.swap_parts)}) must become the "
                     f"donor's and nothing outside the part may "
                     f"change (the loss sees only what the swap changed, so no shared change of every face lowers "
                     f"it), so that these parts get channels of their own for Eq. 1 to find.")
        if cfg.swap_weights:
            weights = ", ".join(f"{part} × {w:g}" for part, w in cfg.swap_weights.items())
            lines.append(f"Within the part-swap loss, each part's term weighed ({weights}; the others × 1).")
    if cfg.part_area:
        lines.append(f"Part-area loss (`part_stats.AreaLoss`) at weight {cfg.part_area}: each part's share of a "
                     f"generated image, by the judge's soft masks, keeps the training faces' mean and spread.")
    return "".join(f"\n- {line}" for line in lines)


def model_card(state: dict, name: str, description: str, export_command: str) -> str:
    """The README.md of an exported model: what it is, how it was made, on what, and for how long."""
    cfg = TrainConfig.from_dict(state["config"])
    sessions = "\n".join(
        f"| `{s['command'] or '(library call)'}` | {s['start_step']}–{s['end_step']} | {s['wall_s'] / 3600:.2f} h "
        f"| {s['hardware']} |" for s in state["sessions"])
    return f"""# {name}

{description}

A compact StyleGAN2 generator (rosinality's layout) trained {_origin(cfg)} by `python -m localedit train` on
{cfg.n_faces:,} procedural cartoon faces from `localedit.faces` (faces 0–{cfg.n_faces - 1}, {cfg.size}×{cfg.size}).
No external data or pretrained weights went into it; it is released under this repository's licence.

## Training
- Generator channels {list(cfg.channels)} at resolutions 4…{cfg.size}, style_dim {cfg.style_dim}, {cfg.n_mlp}-layer
  mapping (lr×0.01); the discriminator mirrors the channel table (residual, minibatch-stddev group 4).
- stylegan2-ada small-data recipe: non-saturating logistic loss, lazy R1 γ = {cfg.gamma:.4g} every
  {cfg.r1_every} steps, Adam lr {cfg.lr} β = (0, 0.99), batch {cfg.batch}, style mixing p = {cfg.mixing},
  G EMA half-life {cfg.ema_nimg / 1000:.3g} kimg, {_PRECISION[cfg.bf16]}. No augmentation.{_extras(cfg)}
- **{state["step"]:,} steps, {state["images_seen"]:,} images seen, {state["wall_time"] / 3600:.2f} h wall time**
  in all.
- The weights are the EMA generator; `latent_avg` is the mean w over 4,096 seeded z.

| command | steps | wall time | hardware |
|---|---|---|---|
{sessions}

Exported with `{export_command or '(library call)'}`.
"""


def ema_generator(state: dict, name: str = "", description: str = "", n_avg: int = 4096) -> Generator:
    """A checkpoint's (loaded `state`) EMA generator, whose latent_avg is the mean w over `n_avg` seeded z: the
    training-time running mean lags the final weights."""
    config = TrainConfig.from_dict(state["config"]).generator_config(name=name, description=description)
    g = Generator(config)
    g.load_state_dict(state["g_ema"])
    with torch.no_grad():
        z = torch.randn(n_avg, config.style_dim, generator=torch.Generator().manual_seed(0))
        g.latent_avg.copy_(g.mapping(z).mean(0))
    return g


def export(checkpoint: Path, folder: Path, name: str, description: str, export_command: str = "",
           n_avg: int = 4096) -> None:
    """Write a checkpoint's EMA generator (`ema_generator`) as a model folder (config.json,
    generator.safetensors, README.md)."""
    from localedit.hub import save_generator

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    g = ema_generator(state, name, description, n_avg)
    save_generator(folder, g.config, g.state_dict(), model_card(state, name, description, export_command))
