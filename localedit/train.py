"""Training the compact default model: StyleGAN2 (Karras et al. 2020) on the procedural faces of `faces.py`.

The recipe is stylegan2-ada's small-data configuration (Karras et al. 2020b, `auto` and `cifar`), which a
throwaway experiment on this kind of machine found necessary: equalised learning rate on *every* layer of G and
D, a residual D with minibatch-stddev (group 4), the non-saturating logistic loss, lazy R1 regularisation
(γ = 0.0002·res²/batch every 16 D steps, its loss ×16), Adam(lr 0.0025, β = (0, 0.99), eps 1e-8) with the
lazy-regularisation correction c = k/(k+1) on D, a 2-layer mapping at lr×0.01, style mixing with p = 0.9 (it
keeps each layer's style meaningful on its own, which local editing relies on), and an EMA of G with a half-life
of batch·10/32 thousand images, ramped up over the first 5% of the images seen.

One fake batch serves both players: D learns from it detached, then G's loss runs it through the updated D.
That saves a third of G's cost per step, which on a 2-core CPU is the budget that decides the model's quality.
channels_last activations and, where the hardware runs bf16 natively, bf16 autocast make a step cheaper; on a
CPU without native bf16 the autocast is many times slower, so it is used only where it is native (`native_bf16`).
torch.compile saved nothing measurable, so it is not used.

This module is the trainer: its state, one step, and its checkpoints. What a run is lives in train_config.py,
the run in its folder (resume, branch, grids, stop on a signal) in train_run.py, and the export to a model
folder in train_export.py.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from localedit.discriminator import Discriminator
from localedit.hub import write_atomic
from localedit.part_stats import (
    AreaLoss,
    StatsLoss,
    WithinGroupLoss,
    areas,
    data_areas,
    data_stats,
    part_colors,
    part_dims,
    soft_masks,
)
from localedit.part_swap import SWAP_CHANNELS, swap_loss, swap_part
from localedit.stylegan2 import Generator, seed_to_z
from localedit.train_config import TrainConfig, branched

GRID_SEEDS = range(64)  # the sample grid shows the seeds the app shows, so progress reads in the product's terms


def render_faces(n: int, size: int, cache: Path | None = None) -> tuple[Tensor, Tensor]:
    """Faces 0..n-1 as (uint8 [N, 3, size, size], their part labels uint8 [N, size, size]), cached as `cache`
    and `cache` with `-labels` added to its stem (.npy), so a resumed run skips the rendering."""
    from localedit.faces import render_arrays

    label_cache = cache.with_name(cache.stem + "-labels.npy") if cache is not None else None
    images = labels = None
    if cache is not None and cache.exists() and label_cache.exists():
        images, labels = np.load(cache), np.load(label_cache)
    if images is None or images.shape != (n, size, size, 3) or labels.shape != (n, size, size):
        images, labels = render_arrays(n, size, workers=2 if n >= 2000 else 1)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, images)
            np.save(label_cache, labels)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bf16 natively: CUDA devices that report it, and CPUs with AVX512-BF16 or AMX
    (read from /proc/cpuinfo; elsewhere assumed not). Without it, bf16 autocast on a CPU is emulated and slow."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Trainer:
    """G, D, the EMA of G, both optimisers and the counters; one `train_step()` is one D update and one G update."""

    def __init__(self, config: TrainConfig, faces: Tensor, device: str | torch.device = "cpu",
                 labels: Tensor | None = None):
        if faces.dtype != torch.uint8 or faces.shape[1:] != (3, config.size, config.size):
            raise ValueError(f"faces must be uint8 [N, 3, {config.size}, {config.size}], got "
                             f"{faces.dtype} {list(faces.shape)}")
        if labels is not None and labels.shape != (len(faces), config.size, config.size):
            raise ValueError(f"labels must be [{len(faces)}, {config.size}, {config.size}], got {list(labels.shape)}")
        part_losses = config.color_stats or config.within_group or config.part_swap
        if labels is None and part_losses:
            raise ValueError("color_stats, within_group and part_swap need the faces' labels")
        self.config = config
        self.device = torch.device(device)
        self.faces = faces
        self.labels = labels
        self.judge = self.color_loss = self.group_loss = self.area_loss = None
        if part_losses or config.part_area:
            from localedit.judge import load_judge

            self.judge = load_judge(config.judge).to(self.device).eval().requires_grad_(False)
        if config.part_area:
            self.area_loss = AreaLoss(data_areas(self.judge, faces))
        if part_losses:
            target = data_stats(faces, labels, config.stat_parts).to(self.device)
            if config.color_stats:
                self.color_loss = StatsLoss(target)
            if config.within_group:
                self.group_loss = WithinGroupLoss(target, dims=part_dims("eyes", config.stat_parts)
                                                                 + part_dims("mouth", config.stat_parts))
        torch.manual_seed(config.seed)
        self.g = Generator(config.generator_config()).to(self.device)
        self.d = Discriminator(config.size, config.channels).to(self.device, memory_format=torch.channels_last)
        # A channels_last constant input makes every activation of G channels_last too (ops keep the layout).
        self.g.input.input.data = self.g.input.input.data.contiguous(memory_format=torch.channels_last)
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False)
        betas = (0.0, 0.99)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=config.lr, betas=betas, eps=1e-8)
        c = self._lazy_r1_ratio()
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=config.lr * c, betas=(betas[0] ** c, betas[1] ** c),
                                      eps=1e-8)
        self.step = 0
        self.images_seen = 0
        self.wall_time = 0.0  # seconds over all sessions, so the model card stays truthful across resumes
        self.sessions: list[dict] = []  # one record per `train` invocation: command, hardware, steps, seconds

    def start_from(self, folder: str) -> None:
        """Warm start: G and its EMA take the generator of model folder `folder`, which must match the config."""
        from localedit.hub import load_model

        source = load_model(folder).generator
        expected = self.config.generator_config()
        keys = ("size", "style_dim", "n_mlp", "channels")
        pairs = {k: (getattr(source.config, k), getattr(expected, k)) for k in keys}
        mismatch = {k: v for k, v in pairs.items() if v[0] != v[1]}
        if mismatch:
            raise ValueError(f"{folder} cannot start this run: (its value, the run's) differ in {mismatch}")
        self.g.load_state_dict(source.state_dict())
        self.g_ema.load_state_dict(source.state_dict())

    def start_d_from(self, checkpoint: str | Path) -> None:
        """Warm start of D: it takes the discriminator of training checkpoint `checkpoint`, which must match."""
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        try:
            self.d.load_state_dict(state["d"])
        except (KeyError, RuntimeError) as e:
            raise ValueError(f"{checkpoint} holds no discriminator this run can take: {e}") from None

    @property
    def precision(self) -> str:
        """What the steps run in: "bf16" when the config allows it and the device has it natively, else "fp32"."""
        return "bf16" if self.config.bf16 and native_bf16(self.device) else "fp32"

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _real_batch(self) -> Tensor:
        idx = torch.randint(len(self.faces), (self.config.batch,))
        real = self.faces[idx].to(self.device, torch.float32).div_(127.5).sub_(1.0)
        return real.contiguous(memory_format=torch.channels_last)

    def _fake_batch(self) -> Tensor:
        cfg, g = self.config, self.g
        z = torch.randn(2, cfg.batch, cfg.style_dim, device=self.device)
        w = g.mapping(z.flatten(0, 1)).unflatten(0, (2, cfg.batch))
        with torch.no_grad():
            # latent_avg tracks the mean w (stylegan2's w_avg, β = 0.995), so truncation works at any checkpoint.
            g.latent_avg.lerp_(w[0].mean(0), 0.005)
        # Style mixing: a fraction `mixing` of the samples take the second w from a random layer onward.
        n = g.n_latent
        crossover = torch.randint(1, n, (cfg.batch,), device=self.device)
        crossover = torch.where(torch.rand(cfg.batch, device=self.device) < cfg.mixing, crossover, n)
        second = torch.arange(n, device=self.device)[None, :] >= crossover[:, None]
        ws = torch.where(second[..., None], w[1][:, None], w[0][:, None])
        return g.synthesize(g.styles(ws), noise="random")

    def _grouped_batch(self) -> tuple[Tensor, Tensor]:
        """`groups` × `group_size` samples; a group's samples share w below layer `shared_below` and draw the rest
        afresh. Returns the images and each sample's group index."""
        cfg, g = self.config, self.g
        n = cfg.groups * cfg.group_size
        shared = g.mapping(torch.randn(cfg.groups, cfg.style_dim, device=self.device))
        own = g.mapping(torch.randn(n, cfg.style_dim, device=self.device))
        groups = torch.arange(cfg.groups, device=self.device).repeat_interleave(cfg.group_size)
        below = torch.arange(g.n_latent, device=self.device)[None, :, None] < cfg.shared_below
        ws = torch.where(below, shared[groups][:, None], own[:, None])
        return g.synthesize(g.styles(ws), noise="random"), groups

    def train_step(self) -> dict[str, float]:
        """One D update (with R1 on every r1_every-th step) and one G update (none while D warms up); returns
        the losses."""
        cfg = self.config
        regularize = self.step % cfg.r1_every == 0
        warming = self.step < cfg.d_warmup
        real = self._real_batch().requires_grad_(regularize)
        with self._autocast(), torch.set_grad_enabled(not warming):
            fake = self._fake_batch()
        with self._autocast():
            real_logits = self.d(real).float()
            fake_logits = self.d(fake.detach()).float()
        loss_d = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        stats = {"loss_d": loss_d.item()}
        total = loss_d
        if regularize:
            # R1 shares the real forward pass with the logistic loss instead of paying for its own.
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            r1 = grad.float().square().sum((1, 2, 3)).mean()
            total = total + r1 * (cfg.gamma / 2 * cfg.r1_every)
            stats["r1"] = r1.item()
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.opt_d.step()
        if not warming:
            stats.update(self._g_step(fake))

        self.step += 1
        self.images_seen += cfg.batch
        self._update_ema()
        if not all(math.isfinite(v) for v in stats.values()):
            raise FloatingPointError(f"training diverged at step {self.step}: {stats}")
        return stats

    def _g_step(self, fake: Tensor) -> dict[str, float]:
        """G's update: the GAN loss on `fake`, plus whichever part losses the config weighs in."""
        cfg = self.config
        # G's loss flows through D, but D's parameters must not collect gradients from it.
        self.d.requires_grad_(False)
        with self._autocast():
            gen_logits = self.d(fake).float()
        loss_g = F.softplus(-gen_logits).mean()
        stats = {"loss_g": loss_g.item()}
        # The area loss needs the judge's soft masks of `fake`; their argmax is the labels the colour loss reads.
        probs, labels = soft_masks(self.judge, fake) if cfg.part_area else (None, None)
        if cfg.color_stats:
            colour = self.color_loss(*self._judged_colors(fake, labels))
            stats["color_stats"] = colour.item()
            loss_g = loss_g + cfg.color_stats * colour
        if cfg.within_group:
            with self._autocast():
                image, groups = self._grouped_batch()
            within = self.group_loss(*self._judged_colors(image), groups)
            stats["within_group"] = within.item()
            loss_g = loss_g + cfg.within_group * within
        if cfg.part_area:
            area = self.area_loss(areas(self.judge, probs))
            stats["part_area"] = area.item()
            loss_g = loss_g + cfg.part_area * area
        if cfg.part_swap:
            gan, colour, locality = self._part_swap_losses()
            # swap_colour and swap_locality are the default parts' (first in swap_parts), as in every run; each
            # part also has its own.
            shared = len(SWAP_CHANNELS)
            stats.update(swap_colour=colour[:shared].mean().item(), swap_locality=locality[:shared].mean().item(),
                         **{f"swap_{part}": c.item() for part, c in zip(cfg.swap_parts, colour, strict=True)})
            weights = colour.new_tensor([cfg.swap_weights.get(part, 1.0) for part in cfg.swap_parts])
            # Each part pulls as hard as in a run of the two default parts: one that joins adds its pull and dilutes
            # none. The swapped images must look real too, by default at half the weight of the plain batch.
            pull = (weights * (colour + locality)).sum() / shared
            loss_g = loss_g + cfg.swap_gan * gan + cfg.part_swap * pull
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.d.requires_grad_(True)
        return stats

    def _judged_colors(self, image: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """`part_colors` of G's images [B, 3, H, W], with the judge's masks taken without gradients (or `labels`,
        when the judge has already been run on them)."""
        image = image.float().clamp(-1, 1)
        if labels is None:
            with torch.no_grad():
                labels = self.judge.labels(image)
        return part_colors(image, labels, self.config.stat_parts)

    def _part_swap_losses(self) -> tuple[Tensor, Tensor, Tensor]:
        """`swap_pairs` pairs (T, R) of plain samples, const noise; each part's equal share of them swaps its
        reserved channels from R into T (`part_swap.swap_part`). T is rendered beside the swapped image, with
        gradients, since the loss asks only for the difference between them; R, without. Returns G's GAN loss on
        the swapped images and each part's colour miss and locality, [P] in `swap_parts`' order."""
        cfg, g = self.config, self.g
        n = cfg.swap_pairs
        w = g.mapping(torch.randn(2 * n, cfg.style_dim, device=self.device))
        styles = g.styles(w)
        with torch.no_grad(), self._autocast():  # the references need no gradients: rendered once, for all parts
            refs = g.synthesize({k: v[n:] for k, v in styles.items()}, noise="const").float().clamp(-1, 1)
            labels_r = self.judge.labels(refs)
        gan, colour, locality = [], [], []
        parts = cfg.swap_parts
        for i, part in enumerate(parts):
            rows = slice(i * n // len(parts), (i + 1) * n // len(parts))
            target = {k: v[rows] for k, v in styles.items()}
            reference = {k: v[n:][rows] for k, v in styles.items()}
            swapped = swap_part(target, reference, part, cfg.size, cfg.swap_channels.get(part))
            with self._autocast():
                both = g.synthesize({k: torch.cat([target[k], swapped[k]]) for k in styles}, noise="const")
                if cfg.swap_gan:  # weighed 0, D need not see them at all
                    gan.append(F.softplus(-self.d(both[len(both) // 2:]).float()).mean())
            own, mixed = both.float().clamp(-1, 1).chunk(2)
            with torch.no_grad():
                labels_t = self.judge.labels(own)
            c, loc = swap_loss(mixed, own, refs[rows], labels_t, labels_r[rows], part)
            colour.append(c)
            locality.append(loc)
        gan = torch.stack(gan).mean() if gan else torch.zeros((), device=self.device)
        return gan, torch.stack(colour), torch.stack(locality)

    @torch.no_grad()
    def _update_ema(self) -> None:
        cfg = self.config
        half_life = min(cfg.ema_nimg, self.images_seen * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(half_life, 1e-8))
        for p_ema, p in zip(self.g_ema.parameters(), self.g.parameters(), strict=True):
            p_ema.lerp_(p, 1.0 - beta)
        for b_ema, b in zip(self.g_ema.buffers(), self.g.buffers(), strict=True):
            b_ema.copy_(b)

    @torch.no_grad()
    def sample_grid(self, path: Path, columns: int = 8) -> None:
        """The EMA generator on GRID_SEEDS at ψ = 1 with the stored noise, as one PNG."""
        from localedit.faces import tile

        z = torch.cat([seed_to_z(s, self.config.style_dim) for s in GRID_SEEDS]).to(self.device)
        images = self.g_ema(z, noise="const").clamp(-1, 1).add(1).mul(127.5).round().byte()
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile(images.permute(0, 2, 3, 1).cpu().numpy(), columns)).save(path)

    def state_dict(self) -> dict:
        state = {
            "config": self.config.to_dict(),
            "g": self.g.state_dict(), "d": self.d.state_dict(), "g_ema": self.g_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "step": self.step, "images_seen": self.images_seen, "wall_time": self.wall_time,
            "sessions": self.sessions,
            # The RNG state makes a resumed run continue exactly where the saved one would have gone.
            "rng": torch.get_rng_state(),
        }
        if self.color_loss is not None:
            state["color_stats"] = self.color_loss.state_dict()
        if self.group_loss is not None:
            state["within_group"] = self.group_loss.state_dict()
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically: a kill mid-write leaves the previous one intact."""
        path.parent.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        write_atomic(path, lambda tmp: torch.save(state, tmp))

    def _lazy_r1_ratio(self) -> float:
        """Lazy R1 makes each D step count for k+1 ordinary ones; stylegan2 shrinks D's lr and betas to match."""
        return self.config.r1_every / (self.config.r1_every + 1)

    def _set_lr(self) -> None:
        for group in self.opt_g.param_groups:
            group["lr"] = self.config.lr
        for group in self.opt_d.param_groups:
            group["lr"] = self.config.lr * self._lazy_r1_ratio()

    @classmethod
    def load(cls, path: Path, faces: Tensor | None = None, device: str | torch.device = "cpu",
             cache: Path | None = None, labels: Tensor | None = None, changes: dict | None = None) -> Trainer:
        """Rebuild a trainer from a checkpoint; its faces and labels are rendered (or read from `cache`) unless
        given. `changes` ({setting: value}, from BRANCH_SETTINGS) makes it a branch: the same state under other
        loss settings."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        config = TrainConfig.from_dict(state["config"])
        if changes:
            stats_read = config.stat_parts
            config = branched(config, changes, f"{path} (step {state['step']})")
            if config.stat_parts != stats_read:  # the statistics loss's running moments have another layout
                state = {k: v for k, v in state.items() if k != "color_stats"}
        if faces is None:
            faces, labels = render_faces(config.n_faces, config.size, cache)
        trainer = cls(config, faces, device, labels)
        for name in ("g", "d", "g_ema", "opt_g", "opt_d"):
            getattr(trainer, name).load_state_dict(state[name])
        trainer._set_lr()  # an optimiser's state carries its rate; a branch's may differ
        if trainer.color_loss is not None:
            trainer.color_loss.load_state_dict(state.get("color_stats", {}))
        if trainer.group_loss is not None:
            trainer.group_loss.load_state_dict(state.get("within_group", {}))
        trainer.step, trainer.images_seen = state["step"], state["images_seen"]
        trainer.wall_time, trainer.sessions = state["wall_time"], state["sessions"]
        torch.set_rng_state(state["rng"])
        if trainer.device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], trainer.device)
        return trainer


