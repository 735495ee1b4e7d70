"""`python -m localedit tune`: choose each part's edit settings on tuning seeds, against transfer and leak.

The sequential query (Eq. 5) stays exactly the paper's; what is tuned are only its inputs, per part: whether
the toRGB styles take part, the threshold ρ/(1+ρ), which layer groups (coarse, middle, fine) get a budget, and
the base ε as a share of the ε at which that query saturates (`Catalog.epsilon_max`).

Every candidate edits the same (target, reference) pairs drawn from the tuning seeds (`evaluate.TUNING_SEEDS`,
which `evaluate` refuses to score) and is measured as in transfer.py. The rule, per part:
1. keep the candidates whose leak is at most `max_leak` (below the gate, for the seeds to come); when none
   is, the least leaky one is all there is, and it is taken;
2. among them, prefer those whose edit is visible in at least `min_visible` of the pairs whose parts differ;
3. take the largest transfer, colour plus shape, so a part whose look is its colour and one whose look is its
   outline are served by the same rule; ties go to the lower leak.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from localedit.catalog import Catalog
from localedit.edit import Editor
from localedit.evaluate import Samples, judged_parts, transfer_of, tuning_seeds
from localedit.judge import Judge
from localedit.parts import LAYER_GROUPS, Part
from localedit.transfer import Transfer, summarize

# The default search, sized to take minutes on a 2-core CPU; `tune --thresholds ... --shares ...` searches wider.
THRESHOLDS = (0.03, 0.05, 0.1, 0.2, 0.3)
PROFILES = tuple(p for p in itertools.product((0.0, 1.0), repeat=len(LAYER_GROUPS)) if any(p))
EPSILON_SHARES = (0.5, 1.0)
EXAMPLE_SEEDS = 6  # examples are ordered pairs of distinct seeds among the first few tuning seeds


@dataclass(frozen=True)
class Candidate:
    """One set of settings for a part."""

    torgb: bool
    threshold: float
    profile: tuple[float, ...]  # a weight per LAYER_GROUPS entry
    share: float  # base ε ÷ the ε at which this query saturates

    def describe(self) -> str:
        groups = "+".join(g for g, w in zip(LAYER_GROUPS, self.profile, strict=True) if w)
        return f"toRGB {'on ' if self.torgb else 'off'}  t {self.threshold:<5g}  {groups:<18}  ε {self.share:g}×max"

    def apply(self, catalog: Catalog, part: str) -> Part:
        """The catalog's part with these settings; ε resolved from the share (per-layer overrides dropped)."""
        p = replace(catalog.parts[part], torgb=self.torgb, threshold=self.threshold, epsilon_per_layer=(),
                    epsilon_profile=dict(zip(LAYER_GROUPS, self.profile, strict=True)))
        end = catalog.epsilon_max(p)
        return replace(p, epsilon=end if self.share == 1 else round(self.share * end, 2))


@dataclass(frozen=True)
class Trial:
    candidate: Candidate
    part: Part
    transfer: Transfer

    @property
    def score(self) -> float:
        """Colour plus shape transfer (the NaN ones left out)."""
        values = [v for v in (self.transfer.color, self.transfer.shape) if not math.isnan(v)]
        return sum(values) if values else -math.inf


def candidates(thresholds: Iterable[float] = THRESHOLDS, profiles: Iterable[Sequence[float]] = PROFILES,
               shares: Iterable[float] = EPSILON_SHARES) -> list[Candidate]:
    return [Candidate(torgb, float(t), tuple(map(float, p)), float(s))
            for torgb in (False, True) for t in thresholds for p in profiles for s in shares]


def choose(trials: Sequence[Trial], max_leak: float = 0.1, min_visible: float = 0.8) -> Trial | None:
    """The rule of the module docstring; None only when no trial has a leak at all (nothing changed)."""
    measured = [t for t in trials if not math.isnan(t.transfer.leak)]
    if not measured:
        return None
    local = [t for t in measured if t.transfer.leak <= max_leak]
    if not local:
        return min(measured, key=lambda t: (t.transfer.leak, -t.score))
    visible = [t for t in local if not math.isnan(t.transfer.visible) and t.transfer.visible >= min_visible]
    return max(visible or local, key=lambda t: (t.score, -t.transfer.leak))


def _with_part(catalog: Catalog, part: Part) -> Catalog:
    return replace(catalog, parts={**catalog.parts, part.name: part})


def _tuning_pairs(generator, catalog: Catalog, judge: Judge, parts: Sequence[str] | None, pairs: int, batch: int,
                  progress: bool) -> tuple[list[str], Samples, Samples]:
    """The judged parts to tune (default: all), and `pairs` target and reference samples from the tuning seeds."""
    probe = Editor(generator, catalog)
    parts = list(parts or judged_parts(probe))
    unknown = sorted(set(parts) - set(judged_parts(probe)))
    if unknown:
        raise ValueError(f"can only tune parts the judge knows and the catalog names; not {unknown}")
    seeds, psi = tuning_seeds(2 * pairs), generator.config.truncation
    return (parts, Samples(probe, judge, seeds[0::2], psi, batch, progress),
            Samples(probe, judge, seeds[1::2], psi, batch, progress))


def tune(generator, catalog: Catalog, judge: Judge, parts: Sequence[str] | None = None, pairs: int = 32,
         batch: int = 48, grid: Sequence[Candidate] | None = None, progress: bool = True) -> dict[str, list[Trial]]:
    """Every candidate for every judged part (default: all of them) on `pairs` tuning pairs → {part: trials}.

    Candidates whose queries come out the same (a high threshold leaves no channel for any ε, say) are
    measured once."""
    grid = list(grid or candidates())
    out: dict[str, list[Trial]] = {}
    with torch.inference_mode():
        parts, targets, references = _tuning_pairs(generator, catalog, judge, parts, pairs, batch, progress)
        bar = tqdm(total=len(parts) * len(grid), desc="tune", disable=not progress)
        for part in parts:
            out[part] = []
            measured: dict[tuple, Transfer] = {}
            for candidate in grid:
                settings = candidate.apply(catalog, part)
                editor = Editor(generator, _with_part(catalog, settings))
                q = editor.query(editor.resolve_query(part))
                key = tuple((layer, v.numpy().tobytes()) for layer, v in sorted(q.items()) if v.any())
                if key not in measured:
                    measured[key] = summarize(transfer_of(editor, judge, targets, references, part, batch)[0])
                out[part].append(Trial(candidate, settings, measured[key]))
                bar.update()
        bar.close()
    return out


def ceiling(generator, catalog: Catalog, judge: Judge, parts: Sequence[str] | None = None, pairs: int = 48,
            batch: int = 48, progress: bool = True) -> dict[str, dict[str, Transfer]]:
    """What each layer group can deliver at all: transfer and leak when every channel of the group moves (q = 1,
    toRGB included), for each judged part → {part: {group: Transfer}}. A part whose look no group moves without a
    large leak cannot be edited locally on this generator, whatever the settings."""
    out: dict[str, dict[str, Transfer]] = {}
    with torch.inference_mode():
        parts, targets, references = _tuning_pairs(generator, catalog, judge, parts, pairs, batch, progress)
        for part in tqdm(parts, desc="ceiling", disable=not progress):
            out[part] = {}
            for group in LAYER_GROUPS:
                every = replace(catalog.parts[part], torgb=True, threshold=0.0, epsilon=1e4, epsilon_per_layer=(),
                                epsilon_profile={g: float(g == group) for g in LAYER_GROUPS})
                editor = Editor(generator, _with_part(catalog, every))
                out[part][group] = summarize(transfer_of(editor, judge, targets, references, part, batch)[0])
    return out


def with_choices(catalog: Catalog, choices: dict[str, Trial]) -> Catalog:
    """The catalog with each chosen part's settings in place."""
    for trial in choices.values():
        catalog = _with_part(catalog, trial.part)
    return catalog


def pick_examples(editor: Editor, parts: Sequence[str] | None = None, n_seeds: int = EXAMPLE_SEEDS,
                  progress: bool = True) -> dict[str, tuple[int, int]]:
    """For each part (default: all), the (target, reference) pair among the first `n_seeds` tuning seeds whose
    edit, at the part's settings, is the most plainly visible inside the part while local: the largest
    In-MSE / (1 + Out-MSE). Stored as `Catalog.examples`, they are what the app offers as examples."""
    seeds = tuning_seeds(n_seeds)
    pairs = [(t, r) for t in seeds for r in seeds if t != r]
    out = {}
    with torch.inference_mode():
        for part in tqdm(list(parts or editor.parts), desc="examples", disable=not progress):
            scores = []
            for t, r in pairs:
                e = editor.edit(t, r, part)
                score = e.in_mse / (1 + e.out_mse)
                scores.append(score if math.isfinite(score) else -math.inf)
            out[part] = pairs[max(range(len(pairs)), key=scores.__getitem__)]
    return out
