"""What defines a training run (`TrainConfig`), stored in every checkpoint, and what a branch of a run may change
(`BRANCH_SETTINGS`, `branched`). train.py trains by it; train_run.py runs, resumes and branches runs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from localedit.faces import PARTS
from localedit.part_stats import STAT_PARTS
from localedit.part_swap import swap_parts
from localedit.stylegan2 import GeneratorConfig, from_known_keys


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


def branched(config: TrainConfig, changes: dict, source: str) -> TrainConfig:
    """A branch's config: `config` (its checkpoint's, `source` naming it) under `changes` ({setting: value}), which
    may name only BRANCH_SETTINGS and may add reserved channels but never drop or move one."""
    other = sorted(set(changes) - set(BRANCH_SETTINGS))
    if other:
        raise ValueError(f"a branch changes only {', '.join(BRANCH_SETTINGS)}; not {', '.join(other)} "
                         "(start a new run with --init for those)")
    out = replace(config, **changes, branched_from=source)
    if out.swap_channels != config.swap_channels:
        _check_added_channels(config.swap_channels, out.swap_channels)
    return out


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
