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
"""

from __future__ import annotations

import copy
import math
import shutil
import signal
import threading
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from localedit.bench import hardware
from localedit.discriminator import Discriminator
from localedit.faces import PARTS
from localedit.hub import write_atomic
from localedit.part_stats import (
    STAT_PARTS,
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
from localedit.part_swap import SWAP_CHANNELS, swap_loss, swap_part, swap_parts
from localedit.stylegan2 import Generator, GeneratorConfig, from_known_keys, seed_to_z

GRID_SEEDS = range(64)  # the sample grid shows the seeds the app shows, so progress reads in the product's terms


@dataclass(frozen=True)
class TrainConfig:
    """What defines a training run; stored in every checkpoint, so a resumed run cannot drift from it."""

    size: int = 64
    channels: tuple[int, ...] = (128, 128, 64, 48, 32)  # G at 4, 8, ..., size; D mirrors it
    style_dim: int = 256
    n_mlp: int = 2
    batch: int = 32
    lr: float = 0.0025
    r1_gamma: float | None = None  # None: 0.0002·size²/batch (stylegan2-ada's heuristic)
    r1_every: int = 16
    mixing: float = 0.9
    ema_kimg: float | None = None  # None: batch·10/32
    ema_rampup: float = 0.05
    n_faces: int = 30_000  # distinct faces, rendered once; sampled with replacement
    # Autocast convs and matmuls to bf16 where the hardware runs it natively (fp32 elsewhere); weights, optimiser
    # state and losses stay fp32.
    bf16: bool = True
    seed: int = 0
    # The part-colour statistics loss (`part_stats.py`): its weight beside G's GAN loss (0: off), and the judge
    # whose labels give a generated face's part masks.
    color_stats: float = 0.0
    judge: str = "assets/judge"
    # The parts whose mean colours the statistics losses read (`part_stats.part_colors`); the within-group loss
    # needs the eyes and the mouth among them.
    stat_parts: tuple[str, ...] = STAT_PARTS
    # The within-group loss (`part_stats.WithinGroupLoss`): its weight (0: off), the groups of samples that share
    # w below layer `shared_below` (the coarse layers), and the samples per group.
    within_group: float = 0.0
    shared_below: int = 3
    groups: int = 4
    group_size: int = 8
    # A warm start: G (and its EMA) start from this model folder's generator, D from scratch; for the first
    # `d_warmup` steps only D learns, so G is not pushed around by a D that knows nothing yet.
    init: str = ""
    d_warmup: int = 0
    # D of a warm start from this training checkpoint (latest.pt or a kept step) instead of from scratch: a D that
    # already knows the faces keeps G's realism from drifting while a new loss pulls on it. Its Adam moments start
    # fresh.
    init_d: str = ""
    # The part-swap loss (`part_swap.py`): its weight (0: off) and the pairs of samples per G step, shared equally
    # among the parts that swap (`swap_parts`: the eyes and the mouth unless swap_channels reserves others too).
    part_swap: float = 0.0
    swap_pairs: int = 16
    # Its reserved channels, {part: {layer: [c, ...]}} (`part_swap.reserve_channels`); empty: part_swap's defaults.
    swap_channels: dict = field(default_factory=dict)
    # Each part's weight within the part-swap loss, {part: w} (a part not named weighs 1): a part whose swap lags
    # the other's can be pulled harder without pulling the other harder too.
    swap_weights: dict = field(default_factory=dict)
    # The weight of G's GAN loss on the part-swap loss's swapped images (the plain batch's is 1): they must look real.
    swap_gan: float = 0.5
    # The part-area loss (`part_stats.AreaLoss`): its weight (0: off). Each part's share of a generated image, by
    # the judge's soft masks, must keep the training faces' mean and spread, so no part loss can shrink a part away.
    part_area: float = 0.0
    # A branch (`train(branch=...)`): the checkpoint, and its step, whose whole state this run continued from with
    # other loss weights; empty for a run that began here.
    branched_from: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "stat_parts", tuple(str(p) for p in self.stat_parts))
        object.__setattr__(self, "swap_channels", {part: {layer: [int(c) for c in cs] for layer, cs in layers.items()}
                                                   for part, layers in self.swap_channels.items()})
        # A weight of 1 is the default, so {"eyes": 1, "mouth": 4} and {"mouth": 4} are the same run.
        object.__setattr__(self, "swap_weights", {str(p): float(w) for p, w in self.swap_weights.items()
                                                  if float(w) != 1.0})
        self.generator_config()  # validates size and the channel table
        group = min(4, self.batch)
        if self.batch % group:
            raise ValueError(f"batch must be a multiple of the minibatch-stddev group 4, got {self.batch}")
        if not 0.0 <= self.mixing <= 1.0:
            raise ValueError(f"mixing is a probability in [0, 1], got {self.mixing}")
        if self.n_faces < self.batch:
            raise ValueError(f"n_faces ({self.n_faces}) must be at least one batch ({self.batch})")
        if min(self.color_stats, self.within_group, self.part_swap, self.part_area, self.d_warmup, self.swap_gan) < 0:
            raise ValueError("color_stats, within_group, part_swap, swap_gan, part_area and d_warmup must be ≥ 0")
        n_parts = len(self.swap_parts)  # also checks swap_channels' parts
        if self.part_swap and (self.swap_pairs < n_parts or self.swap_pairs % n_parts):
            raise ValueError(f"swap_pairs (--swap-pairs) must be a multiple of the {n_parts} swapped parts, got "
                             f"{self.swap_pairs}")
        for layer in {layer for layers in self.swap_channels.values() for layer in layers}:
            held = [c for layers in self.swap_channels.values() for c in layers.get(layer, ())]
            if len(held) != len(set(held)):
                raise ValueError(f"swap_channels gives two parts the same channel at {layer}: {self.swap_channels}")
        unknown = sorted(set(self.swap_weights) - set(self.swap_parts))
        if unknown or any(not (math.isfinite(w) and w >= 0) for w in self.swap_weights.values()):
            raise ValueError(f"swap_weights gives parts of {list(self.swap_parts)} finite weights ≥ 0; got "
                             f"{self.swap_weights}")
        unknown = [p for p in self.stat_parts if p not in PARTS]
        if unknown or len(set(self.stat_parts)) != len(self.stat_parts) or "skin" not in self.stat_parts:
            raise ValueError(f"stat_parts must be distinct parts of {PARTS}, the skin among them; got "
                             f"{list(self.stat_parts)}")
        if self.within_group and not {"eyes", "mouth"} <= set(self.stat_parts):
            raise ValueError("the within-group loss reads the eyes' and the mouth's colours: keep them in stat_parts")
        if self.init_d and not self.init:
            raise ValueError("init_d carries D into a warm start, so it needs init (G's model folder)")
        if self.within_group and not (1 <= self.shared_below < 2 * len(self.channels) and self.groups >= 1
                                      and self.group_size >= 2):
            raise ValueError("shared_below must be a layer index ≥ 1, with ≥ 1 group of ≥ 2 samples")

    @property
    def swap_parts(self) -> tuple[str, ...]:
        """The parts the part-swap loss swaps (`part_swap.swap_parts`)."""
        return swap_parts(self.swap_channels)

    @property
    def gamma(self) -> float:
        return self.r1_gamma if self.r1_gamma is not None else 0.0002 * self.size**2 / self.batch

    @property
    def ema_nimg(self) -> float:
        return 1000.0 * (self.ema_kimg if self.ema_kimg is not None else self.batch * 10 / 32)

    def generator_config(self, name: str = "", description: str = "") -> GeneratorConfig:
        return GeneratorConfig(size=self.size, style_dim=self.style_dim, n_mlp=self.n_mlp, channels=self.channels,
                               lr_mlp=0.01, name=name, description=description)

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return from_known_keys(cls, d, "training config")


# The settings a branch may change: the losses' weights and what they read, and the learning rate. G, D, their
# optimisers' moments and the data stay the checkpoint's, which is the point of branching rather than a warm start
# (`init`), whose fresh optimisers and EMA jolt a trained G.
BRANCH_SETTINGS = ("color_stats", "within_group", "part_swap", "swap_pairs", "swap_weights", "swap_channels",
                   "swap_gan", "stat_parts", "part_area", "lr")


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
            other = sorted(set(changes) - set(BRANCH_SETTINGS))
            if other:
                raise ValueError(f"a branch changes only {', '.join(BRANCH_SETTINGS)}; not {', '.join(other)} "
                                 "(start a new run with --init for those)")
            branched = f"{path} (step {state['step']})"
            stats_read, reserved = config.stat_parts, config.swap_channels
            config = replace(config, **changes, branched_from=branched)
            if config.swap_channels != reserved:
                _check_added_channels(reserved, config.swap_channels)
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


def _graceful_stop() -> tuple[dict, dict]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps, so a stop never cuts a step in half."""
    flag: dict = {"signal": None}
    previous: dict = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, _frame: flag.update(signal=signum))
    return flag, previous


def _check_added_channels(before: dict, after: dict) -> None:
    """A branch may reserve more channels for the part-swap loss, never fewer or others: the ones a run has
    trained keep their part."""
    if not before:
        raise ValueError("this run trains the default reserved channels (part_swap.SWAP_CHANNELS); a branch cannot "
                         "change them")
    for part, layers in before.items():
        for layer, channels in layers.items():
            if not set(channels) <= set(after.get(part, {}).get(layer, ())):
                raise ValueError(f"a branch may add reserved channels but keeps the checkpoint's: {part}'s "
                                 f"{channels} at {layer} are not all in {after.get(part, {}).get(layer)}")


def train(run_dir: Path, config: TrainConfig | None, steps: int, *, device: str = "auto", resume: Path | None = None,
          sample_every: int = 250, checkpoint_every: int = 500, keep_every: int = 0, command: str = "",
          progress: bool = True, faces: Tensor | None = None, labels: Tensor | None = None,
          branch: Path | None = None, changes: dict | None = None) -> Trainer:
    """Train until `steps` steps in total, resuming from `resume` or RUN_DIR/latest.pt when there is one.

    A new RUN_DIR with `branch` continues that checkpoint's whole state (G, D, EMA, optimisers, step) under
    `changes` to its loss settings (BRANCH_SETTINGS); the same call later resumes the branch.

    Writes RUN_DIR/latest.pt every `checkpoint_every` steps, at the end and on SIGINT/SIGTERM, a copy that is
    kept, RUN_DIR/step-NNNNNN.pt, every `keep_every` steps (0: none), and RUN_DIR/grids/step-NNNNNN.png every
    `sample_every` steps. A resume keeps the checkpoint's config; `config`
    (None: the defaults for a fresh run) must then match it.
    """
    started = time.perf_counter()
    dev = resolve_device(device)
    run_dir = Path(run_dir)
    latest = run_dir / "latest.pt"
    if branch is not None and resume is not None:
        raise ValueError("name either a checkpoint to resume or one to branch from, not both")
    resume = resume if resume is not None else (latest if latest.exists() else None)
    if resume is not None and branch is not None:
        trainer = Trainer.load(Path(resume), faces, dev, cache=run_dir / "faces.npy", labels=labels)
        made = trainer.config
        if not made.branched_from.startswith(f"{branch} (") or any(getattr(made, k) != v
                                                                  for k, v in (changes or {}).items()):
            raise ValueError(f"{run_dir} already holds a run that is not this branch of {branch} "
                             f"(it {'branched from ' + made.branched_from if made.branched_from else 'began there'})"
                             "; pick a new --run-dir")
        tqdm.write(f"resumed the branch {resume} at step {trainer.step}")
    elif branch is not None:
        trainer = Trainer.load(Path(branch), faces, dev, cache=run_dir / "faces.npy", labels=labels,
                               changes=changes)
        tqdm.write(f"branched from {trainer.config.branched_from}; its config now: {trainer.config}")
    elif resume is not None:
        trainer = Trainer.load(Path(resume), faces, dev, cache=run_dir / "faces.npy", labels=labels)
        if config is not None and config != trainer.config:
            changed = {k: v for k, v in config.to_dict().items() if trainer.config.to_dict()[k] != v}
            raise ValueError(f"{resume} was trained with {trainer.config}; it cannot resume with {changed}. "
                             "Drop those flags to resume, or pick a new --run-dir")
        tqdm.write(f"resumed {resume} at step {trainer.step} ({trainer.images_seen / 1000:.1f} kimg); "
                   f"its config: {trainer.config}")
    else:
        config = config or TrainConfig()
        if faces is None:
            faces, labels = render_faces(config.n_faces, config.size, run_dir / "faces.npy")
        trainer = Trainer(config, faces, dev, labels)
        if config.init:
            trainer.start_from(config.init)
        if config.init_d:
            trainer.start_d_from(config.init_d)
    session = {"command": command, "hardware": f"{hardware(dev)}, {trainer.precision}", "start_step": trainer.step,
               "end_step": trainer.step, "wall_s": 0.0}
    trainer.sessions.append(session)
    wall_before = trainer.wall_time

    def checkpoint() -> None:
        elapsed = time.perf_counter() - started
        session.update(end_step=trainer.step, wall_s=elapsed)
        trainer.wall_time = wall_before + elapsed
        trainer.save(latest)

    flag, previous = _graceful_stop()
    bar = tqdm(total=steps, initial=trainer.step, disable=not progress, dynamic_ncols=True, mininterval=5,
               unit="step")
    recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=50))  # single-step GAN losses are too noisy
    try:
        while trainer.step < steps and flag["signal"] is None:
            t0 = time.perf_counter()
            stats = trainer.train_step()
            stats["s/step"] = time.perf_counter() - t0
            for k, v in stats.items():
                recent[k].append(v)
            running = {k: sum(v) / len(v) for k, v in recent.items()}
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in running.items()}, refresh=False)
            if trainer.step % sample_every == 0:
                trainer.sample_grid(run_dir / "grids" / f"step-{trainer.step:06d}.png")
                tqdm.write(f"step {trainer.step} kimg {trainer.images_seen / 1000:.1f} "
                           + " ".join(f"{k} {v:.4g}" for k, v in running.items()))
            keep = keep_every and trainer.step % keep_every == 0
            if keep or trainer.step % checkpoint_every == 0:
                checkpoint()
            if keep:
                shutil.copyfile(latest, run_dir / f"step-{trainer.step:06d}.pt")
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    checkpoint()
    if flag["signal"] is not None:
        tqdm.write(f"stopped by signal {flag['signal']} at step {trainer.step}; checkpoint {latest}")
    return trainer
